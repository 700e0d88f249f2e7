"""Edit similarity: the cosine between the image embeddings of an instruction edit and its source
(DINOv2: MagicBrush's "DINO"; a CLIP image tower: its "CLIP-I"), as the sibling of
:mod:`harness.metrics.preservation`'s pixel measures.

The source is the prompt's ``edit_image`` control. The edited image is first brought to the
source's size (bicubic, as edit_preservation does), then both go through the extractor's own
preprocessing (:mod:`harness.metrics.features`: PIL bicubic to its square input, no crop, its
mean/std). ``region: whole`` embeds the whole images (MagicBrush's convention); ``region:
outside`` first paints the prompt's ``edit_region`` mid-grey in both, so only what the edit had to
keep counts (prompts without a region then compare the whole images, and say so). Higher is
better: 1 = the same embedding. Without weights (the offline default of ``edit_similarity``)
every value is a recorded skip saying which setting to fill; ``edit_similarity_toy`` runs the
toy CLIP of the zoo offline (comparable only with itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb
from harness.metrics.features import FeatureError, FeatureExtractor, build_extractor
from harness.metrics.preservation import edit_source

FEATURES = {"dinov2": "DINO", "clip_hf": "CLIP-I"}
"""Extractors this metric takes -> the name the editing literature gives the cosine."""
REGIONS = ("whole", "outside")
GREY = (128, 128, 128)


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors (float64); 0 when either is all zeros."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def grey_out(image: Any, mask: Any) -> Any:
    """A copy of an RGB PIL image with the pixels where ``mask`` (an ``L`` PIL image, white = the
    edit region) is at least 128 painted mid-grey."""
    from PIL import Image

    region = mask.point(lambda v: 255 if v >= 128 else 0)
    out = image.copy()
    out.paste(Image.new("RGB", image.size, GREY), (0, 0), region)
    return out


class EditSimilarity(Metric):
    """Cosine of the edited image's and its source's embeddings (DINOv2 or CLIP)."""

    kind = "edit_similarity"
    per = "image"
    higher_is_better = True
    version = "1"
    defaults = {
        "features": "dinov2",
        "weights": None,
        "region": "whole",
        # Runtime only: they don't change the number.
        "device": "auto",
        "batch_size": 16,
    }
    """features: dinov2 (transformers Dinov2Model, CLS token) or clip_hf (a transformers CLIPModel's
    projected image embedding). weights: hub id, a save_pretrained folder or ``zoo:toy-clip``;
    null: every value is skipped with the reason. region: whole (both images as they are) or
    outside (the prompt's edit_region painted grey in both first). device, batch_size: where and
    how many images per forward pass."""
    runtime = ("device", "batch_size")

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        if s["features"] not in FEATURES:
            raise ConfigError(f"metrics.{name}.settings.features: {s['features']!r} is not an image "
                              f"tower this metric takes." + did_you_mean(str(s["features"]), list(FEATURES)))
        if s["region"] not in REGIONS:
            raise ConfigError(f"metrics.{name}.settings.region: {s['region']!r} unknown."
                              + did_you_mean(str(s["region"]), list(REGIONS)))
        bs = s["batch_size"]
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ConfigError(f"metrics.{name}.settings.batch_size: must be an integer >= 1, got {bs!r}.")
        self.extractor: FeatureExtractor | None = None
        if s["weights"] is not None:
            device = None if s["device"] in (None, "auto") else str(s["device"])
            self.extractor = build_extractor(str(s["features"]), weights=str(s["weights"]), device=device)
            self.extractor.setting = f"metrics.{name}.settings.weights"  # errors name the real key
            self.extractor.batch_size = int(bs)
        self._sources: dict[tuple[str, str | None], Any] = {}

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        # The extractor's description carries the weights' content hash (not the path) and its
        # input size and resize filter, all of which change the number.
        d["extractor"] = self.extractor.describe() if self.extractor is not None else None
        d["label"] = FEATURES[str(self.settings["features"])]
        d["formula"] = "cos(embed(edit resized to the source's size), embed(source))"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale, the embedding it rests on and what it may be compared with."""
        fx = identity.get("extractor") or {}
        where = ("outside the edit region (painted grey in both)" if identity.get("region") == "outside"
                 else "over the whole image")
        return ReadingNotes(lines={"": (
            f"{identity.get('label')}: cosine (-1..1) of the edit's and its source's "
            f"{identity.get('features')} embeddings {where}; higher = more of the source kept. "
            f"Weights {str(fx.get('weights_id', 'none'))[:30]}: comparable only with the same weights. "
            "An editor that returns the source scores 1: read it with an instruction-following metric.")})

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        from PIL import Image

        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)
        todo: list[tuple[int, Any, tuple[str, str | None], Any]] = []  # (item, edit, source key, source)
        for i, it in enumerate(items):
            src_path, region = edit_source(dict(it.prompt or {}))
            if src_path is None:
                out[i] = (None, {"skipped": "not an instruction edit (no edit_image)"})
                continue
            if self.extractor is None:
                cls = "Dinov2Model" if self.settings["features"] == "dinov2" else "CLIPModel"
                out[i] = (None, {"skipped": f"no weights: set metrics.{self.name}.settings.weights= a "
                                            f"save_pretrained folder or hub id of a {cls} "
                                            "(edit_similarity_toy runs the toy CLIP offline)"})
                continue
            use_region = region if self.settings["region"] == "outside" else None
            try:
                with Image.open(src_path) as im:
                    source = im.convert("RGB")
                edited = as_rgb(it.image)
                if edited.size != source.size:
                    edited = edited.resize(source.size, Image.Resampling.BICUBIC)
                if use_region is not None:
                    with Image.open(use_region) as mk:
                        mask = mk.convert("L").resize(source.size, Image.Resampling.NEAREST)
                    source, edited = grey_out(source, mask), grey_out(edited, mask)
            except OSError as e:
                out[i] = (None, {"skipped": f"{type(e).__name__}: {e}"})
                continue
            todo.append((i, edited, (str(src_path), str(use_region) if use_region else None), source))
        if todo:
            try:
                self._embed(todo, out)
            except FeatureError as e:
                for i, *_ in todo:
                    out[i] = (None, {"skipped": str(e)})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def _embed(self, todo: list[tuple[int, Any, tuple[str, str | None], Any]],
               out: list[tuple[float | None, dict[str, Any]] | None]) -> None:
        assert self.extractor is not None
        # Many edits (and every model) share a few sources: each is embedded once per metric.
        new = {key: src for _, _, key, src in todo if key not in self._sources}
        if new:
            feats = self.extractor.extract(list(new.values()))
            self._sources.update(zip(new, feats, strict=True))
        bs = max(1, int(self.settings["batch_size"]))
        for s in range(0, len(todo), bs):
            chunk = todo[s:s + bs]
            feats = self.extractor.extract([e for _, e, _, _ in chunk])
            for (i, _, key, _), f in zip(chunk, feats, strict=True):
                out[i] = (cosine(f, self._sources[key]),
                          {"region": "outside" if key[1] else "whole",
                           "weights_id": self.extractor.weights_id})

    def preflight(self) -> None:
        """A weights folder must exist and hold weights (a hub id is resolved when first used)."""
        if self.extractor is not None:
            _ = self.extractor.weights_id  # FeatureError (a ConfigError) naming the setting

    def close(self) -> None:
        if self.extractor is not None:
            self.extractor.close()
        self._sources.clear()
