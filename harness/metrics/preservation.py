"""Edit preservation: how much of an instruction edit's source image stayed as it was, measured
against the source outside the region the edit may change (PSNR and SSIM through torchmetrics).

The source is the prompt's ``edit_image`` control (its stored path); the region is the prompt's
optional ``edit_region`` mask (a file next to the source image, white where the edit may change
pixels). Without a region both numbers cover the whole image, which for global edits (style,
background) is expected to be low: read them per edit type (``edit:*`` tags). The edited image
is compared at the source's size (bicubic resize when they differ). Higher is better for both:
PSNR in dB (identical pixels: capped at ``max_psnr``), SSIM in [-1, 1] (1: identical).
``changed`` is the mean absolute difference inside the region (0-1), so an editor that returns
the source untouched scores perfect preservation and changed 0 - read the two together.
Siblings: :mod:`harness.metrics.edit_similarity` (DINO / CLIP-I cosine of edit and source) and
:mod:`harness.metrics.edit_following` (a VLM asked whether the edit did what it was told).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb

OUTPUTS = {"psnr": True, "ssim": True, "changed": True}


def edit_source(prompt: Mapping[str, Any]) -> tuple[Path | None, Path | None]:
    """(source image, region mask or None) of a stored prompt; (None, None) when the prompt is
    no instruction edit. An SDEdit prompt (img2img denoised with the target caption, carrying its
    instruction in ``meta.instruction``, as suite=toy-editing does) is an edit of its init_image."""
    controls = prompt.get("controls") or ()
    src = next((c for c in controls if c.get("kind") == "edit_image"), None)
    if src is None and (prompt.get("meta") or {}).get("instruction"):
        src = next((c for c in controls if c.get("kind") == "init_image"), None)
    if src is None or not src.get("path"):
        return None, None
    path = Path(src["path"])
    region = (prompt.get("meta") or {}).get("edit_region")
    return path, (path.parent / region) if region else None


def masked_scores(edited: Any, source: Any, keep: Any | None, *, max_psnr: float = 100.0,
                  sigma: float = 1.5, kernel_size: int = 11) -> dict[str, float]:
    """PSNR and SSIM of ``edited`` against ``source`` over the pixels where ``keep`` is true
    (all pixels when None), and the mean absolute change where it is false.

    Args:
        edited, source: HxWx3 float arrays in [0, 1].
        keep: HxW bool array (True: the edit must leave this pixel), or None.
        max_psnr: PSNR reported for identical pixels (the formula gives infinity).
        sigma, kernel_size: SSIM's Gaussian window (Wang et al. 2004: 1.5 and 11).
    """
    import numpy as np
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    e = torch.from_numpy(np.ascontiguousarray(edited, dtype=np.float64)).permute(2, 0, 1)[None]
    s = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float64)).permute(2, 0, 1)[None]
    m = torch.ones(e.shape[-2:], dtype=torch.bool) if keep is None else torch.from_numpy(keep)
    if not bool(m.any()):
        raise ValueError("the edit region covers the whole image: nothing to preserve")
    sel_e, sel_s = e[0][:, m], s[0][:, m]
    if torch.equal(sel_e, sel_s):
        psnr = max_psnr
    else:
        psnr = min(max_psnr, float(peak_signal_noise_ratio(sel_e, sel_s, data_range=1.0)))
    _, ssim_map = structural_similarity_index_measure(
        e, s, gaussian_kernel=True, sigma=sigma, kernel_size=kernel_size, data_range=1.0,
        return_full_image=True)
    ssim = float(ssim_map[0].mean(0)[m].mean())
    inside = ~m
    changed = float((e - s).abs()[0][:, inside].mean()) if bool(inside.any()) else math.nan
    return {"psnr": psnr, "ssim": ssim, "changed": changed}


class EditPreservation(Metric):
    kind = "edit_preservation"
    per = "image"
    higher_is_better = True
    outputs = OUTPUTS
    defaults = {"max_psnr": 100.0, "sigma": 1.5, "kernel_size": 11}
    """max_psnr: PSNR given to pixel-identical regions. sigma, kernel_size: SSIM's Gaussian
    window."""

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale and caveats of the three outputs."""
        return ReadingNotes(lines={
            "psnr": "PSNR (dB) of the edit against its source outside the edit region; higher = "
                    "more preserved (30+ dB: hard to tell apart).",
            "ssim": "SSIM against the source outside the edit region (1 = identical structure).",
            "changed": "mean absolute change inside the edit region (0-1): an untouched source "
                       "preserves perfectly and changes nothing; read with psnr/ssim.",
            "": "Without an edit_region the whole image counts: low values are expected for "
                "style and background edits. Compared at the source's size.",
        })

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[dict | None, dict[str, Any]]]:
        import numpy as np
        from PIL import Image

        none = dict.fromkeys(OUTPUTS)
        out: list[tuple[dict | None, dict[str, Any]]] = []
        for it in items:
            src_path, region = edit_source(dict(it.prompt or {}))
            if src_path is None:
                out.append((dict(none), {"skipped": "not an instruction edit (no edit_image)"}))
                continue
            try:
                with Image.open(src_path) as im:
                    source = im.convert("RGB")
                keep = None
                if region is not None:
                    with Image.open(region) as mk:
                        mask = mk.convert("L").resize(source.size, Image.Resampling.NEAREST)
                    keep = np.asarray(mask) < 128
                edited = as_rgb(it.image)
            except OSError as e:
                out.append((dict(none), {"skipped": f"{type(e).__name__}: {e}"}))
                continue
            if edited.size != source.size:
                edited = edited.resize(source.size, Image.Resampling.BICUBIC)
            values = masked_scores(np.asarray(edited) / 255.0, np.asarray(source) / 255.0, keep,
                                   max_psnr=float(self.settings["max_psnr"]),
                                   sigma=float(self.settings["sigma"]),
                                   kernel_size=int(self.settings["kernel_size"]))
            if math.isnan(values["changed"]):
                values["changed"] = None
            out.append((values, {"region": region.name if region else None,
                                 "size": list(source.size)}))
        return out
