"""Learned human-preference scorers built on CLIP: PickScore and HPSv2.1.

- **PickScore** (Kirstain et al. 2023): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic preferences,
  loaded with transformers (``CLIPModel`` weights ``yuvalkirstain/PickScore_v1``, processor and
  tokenizer ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``, as its authors load it). Score =
  ``logit_scale.exp() * cos(image, prompt)`` (the learnt scale is ~100, so typical values are
  18-23). The paper turns the scores of one prompt's images into preference probabilities by a
  softmax: differences within a prompt are what it was trained on.
- **HPSv2.1** (Wu et al. 2023): open_clip ViT-H-14 with the ``HPS_v2.1_compressed.pt``
  checkpoint (``{"state_dict": ...}``, keys as open_clip's, a ``module.`` prefix from DDP
  stripped). Score = ``cos(image, prompt)`` as hpsv2 reports it (typically 0.2-0.35), comparable
  only between images of the same prompt.

Weights come from local files or folders (``checkpoint``) or hub ids; the weights' sha256 or id
is stored with every value. Offline without them the first image fails at once with what to get
and the setting to point at it. ImageReward is in :mod:`harness.metrics.image_reward`, the
VLM-based HPSv3 in :mod:`harness.metrics.vlm_reward`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from harness.errors import ConfigError
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, prompt_images
from harness.metrics.clip_score import pick_device, weights_sha256
from harness.metrics.hub import fetch_hub_file, hub_snapshot, require_hub_file, require_hub_model
from harness.toyworld.paths import resolve_path

log = logging.getLogger(__name__)


class _CLIPPreference(Metric):
    """Shared: lazy loading, batching, weights identity; subclasses load and say how to read."""

    per = "image"
    higher_is_better = True
    runtime = ("batch_size", "device")

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        if s.get("checkpoint") is not None and not resolve_path(s["checkpoint"]).exists():
            raise ConfigError(f"metrics.{name}.settings.checkpoint: no such file or folder: "
                              f"{s['checkpoint']}")
        if int(s["batch_size"]) < 1:
            raise ConfigError(f"metrics.{name}.settings.batch_size: must be >= 1, got {s['batch_size']}.")
        self.model_batch = int(s["batch_size"])
        self.batch_size = 4 * self.model_batch
        self._m: Any = None
        self._weights: str | None = None

    hub_setting: ClassVar[str] = "model"
    """The setting naming the weights on the hub when no local checkpoint is set."""

    def weights_id(self) -> str:
        """``sha256:<hex>`` of the local weights, else the hub id / tag that names them."""
        s = self.settings
        if s["checkpoint"] is not None:
            return "sha256:" + weights_sha256(resolve_path(s["checkpoint"]))
        return f"hf:{s[self.hub_setting]}"

    def identity(self) -> dict[str, Any]:
        if self._weights is None:
            self._weights = self.weights_id()
        d = super().identity()
        d["weights"] = self._weights
        if d.get("checkpoint") is not None:
            d["checkpoint"] = Path(str(d["checkpoint"])).name  # identified by content, not place
        return d

    def _load(self) -> Any:
        raise NotImplementedError

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        import torch

        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)
        good = prompt_images(items, out)
        if good:
            m = self._m or self._load()
            self._m = m
            for s in range(0, len(good), self.model_batch):
                chunk = good[s:s + self.model_batch]
                with torch.inference_mode():
                    img = torch.nn.functional.normalize(m.images([im for _, im, _ in chunk]).float(), dim=-1)
                    txt = torch.nn.functional.normalize(m.texts([t for _, _, t in chunk]).float(), dim=-1)
                    cos = (img * txt).sum(-1).cpu().tolist()
                for (i, _, _), c in zip(chunk, cos, strict=True):
                    out[i] = (m.scale * c, {"cos": c, "scale": m.scale, "device": m.device})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def close(self) -> None:
        self._m = None


class _Towers:
    def __init__(self, *, device: str, scale: float, images, texts) -> None:
        self.device, self.scale, self.images, self.texts = device, scale, images, texts


class PickScore(_CLIPPreference):
    """PickScore: logit_scale * cos(image, prompt) of the Pick-a-Pic CLIP."""

    kind = "pickscore"
    version = "1"
    defaults = {
        "model": "yuvalkirstain/PickScore_v1",
        "processor": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        "checkpoint": None,
        "batch_size": 16,
        "device": "auto",
    }
    """model: hub id of the CLIPModel weights. processor: hub id (or folder) of the tokenizer and
    image processor. checkpoint: a local save_pretrained folder holding the model (and, when it
    has them, the processor files) used instead of both hub ids."""

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale, and that it ranks images of one prompt."""
        return ReadingNotes(lines={"": (
            "PickScore: the Pick-a-Pic CLIP's logit_scale (learnt, ~100) x cos(image, prompt); typical "
            "values 18-23. Trained to rank images of the same prompt (a softmax over a prompt's images "
            f"gives preference probabilities): compare models prompt by prompt. Weights "
            f"{str(identity.get('weights'))[:23]}.")})

    def preflight(self) -> None:
        """The model (and, from the hub, the processor) cached or reachable; nothing downloaded."""
        s = self.settings
        if s["checkpoint"] is None:
            require_hub_model(self.name, str(s["model"]))
            if not resolve_path(str(s["processor"])).is_dir():
                require_hub_model(self.name, str(s["processor"]), setting="processor")

    def _load(self) -> _Towers:
        import torch
        from transformers import AutoProcessor, CLIPModel

        s = self.settings
        device = pick_device(str(s["device"]))
        # Local folders first; hub ids through the cache (offline: an error at once, no retries).
        folder = (resolve_path(s["checkpoint"]) if s["checkpoint"] is not None
                  else hub_snapshot(self.name, str(s["model"])))
        model = CLIPModel.from_pretrained(folder, local_files_only=True)
        try:  # a checkpoint folder may carry its processor; PickScore_v1 on the hub does not
            proc = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except Exception:  # noqa: BLE001 - fall back to the processor setting
            src = s["processor"]
            proc_folder = resolve_path(src) if resolve_path(src).is_dir() else hub_snapshot(
                self.name, str(src), setting="processor")
            proc = AutoProcessor.from_pretrained(proc_folder, local_files_only=True)
        model = model.to(device).eval()

        def feats(out):
            return out if isinstance(out, torch.Tensor) else out.pooler_output

        def images(ims):
            px = proc(images=ims, return_tensors="pt")["pixel_values"].to(device)
            return feats(model.get_image_features(pixel_values=px))

        def texts(ts):
            enc = proc(text=ts, padding=True, truncation=True, max_length=77, return_tensors="pt")
            return feats(model.get_text_features(input_ids=enc["input_ids"].to(device),
                                                 attention_mask=enc["attention_mask"].to(device)))

        scale = float(model.logit_scale.detach().exp())
        return _Towers(device=device, scale=scale, images=images, texts=texts)


def hps_state_dict(path: str | Path) -> dict[str, Any]:
    """The open_clip state dict inside an HPS checkpoint: the ``state_dict`` entry (or the whole
    file), with DDP's ``module.`` prefix stripped. Keys are otherwise open_clip's own."""
    import torch

    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    sd = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    return {k.removeprefix("module."): v for k, v in sd.items()}


class HPSv2(_CLIPPreference):
    """HPSv2.1: cos(image, prompt) of open_clip ViT-H-14 with the HPS checkpoint."""

    kind = "hpsv2"
    version = "1"
    defaults = {
        "model": "ViT-H-14",
        "checkpoint": None,
        "hub_file": "xswu/HPSv2/HPS_v2.1_compressed.pt",
        "batch_size": 16,
        "device": "auto",
    }
    """model: open_clip architecture. checkpoint: the local HPS checkpoint file. hub_file:
    ``org/repo/file`` fetched from the hub when checkpoint is not set."""

    hub_setting = "hub_file"

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale, and that it is comparable only within a prompt."""
        return ReadingNotes(lines={"": (
            "HPSv2.1: cos(image, prompt) of the HPS-tuned open_clip ViT-H-14 (as hpsv2 reports it; "
            "typically 0.2-0.35). Trained on pairs of images of one prompt: comparable only between "
            f"images of the same prompt, so compare models prompt by prompt. Weights "
            f"{str(identity.get('weights'))[:23]}.")})

    def preflight(self) -> None:
        """The HPS checkpoint cached or reachable (one metadata request; nothing downloaded)."""
        if self.settings["checkpoint"] is None:
            require_hub_file(self.name, str(self.settings["hub_file"]), "checkpoint")

    def _load(self) -> _Towers:
        import open_clip

        s = self.settings
        device = pick_device(str(s["device"]))
        path = (resolve_path(s["checkpoint"]) if s["checkpoint"] is not None
                else fetch_hub_file(self.name, str(s["hub_file"]), "checkpoint"))
        model, _, preprocess = open_clip.create_model_and_transforms(s["model"], pretrained=None,
                                                                     device="cpu")
        try:
            missing, unexpected = model.load_state_dict(hps_state_dict(path), strict=False)
            problem = f"missing {missing[:5]}, unexpected {unexpected[:5]}" if missing or unexpected else ""
        except RuntimeError as e:  # shapes that differ
            problem = str(e).splitlines()[0][:300]
        if problem:
            raise ConfigError(f"metrics.{self.name}: {path} does not fit open_clip {s['model']} ({problem}); "
                              f"set metrics.{self.name}.settings.model to the checkpoint's architecture.")
        model = model.to(device).eval()
        tokenizer = open_clip.get_tokenizer(s["model"])

        import torch

        def images(ims):
            return model.encode_image(torch.stack([preprocess(im) for im in ims]).to(device))

        def texts(ts):
            return model.encode_text(tokenizer(ts).to(device))

        return _Towers(device=device, scale=1.0, images=images, texts=texts)
