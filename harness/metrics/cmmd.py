"""CMMD (Jayasumana et al., "Rethinking FID: Towards a Better Evaluation Metric for Image
Generation", CVPR 2024): the maximum mean discrepancy between a model's images and a reference
set in CLIP embedding space.

``CMMD = scale * (mean k(x, x') + mean k(y, y') - 2 mean k(x, y))`` over L2-normalised CLIP image
embeddings, with the Gaussian RBF kernel ``k(a, b) = exp(-|a - b|^2 / (2 sigma^2))``, the
published bandwidth sigma = 10 and scale = 1000 (google-research/cmmd ``distance.py``:
``_SIGMA = 10``, ``_SCALE = 1000``), and its minimum-variance (biased, V-statistic) estimator:
every mean includes the diagonal. The paper uses CLIP ViT-L/14 at 336 px
(openai/clip-vit-large-patch14-336); numbers on another CLIP (the toy CLIP) are comparable only
with each other. Unlike FID it assumes no distribution and is unbiased enough at small N to
compare sets of a few hundred images; lower is better, 0 for identical sets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.metrics.base import ReadingNotes, ScoreInput
from harness.metrics.features import FeatureError
from harness.metrics.fid import FID, HOW_TO_SET

SIGMA = 10.0
"""The published RBF bandwidth (google-research/cmmd)."""
SCALE = 1000.0
"""The published scale factor that makes the numbers readable."""


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def rbf_kernel_mean(a: np.ndarray, b: np.ndarray, gamma: float, block: int = 2048) -> float:
    """Mean of exp(-gamma |a_i - b_j|^2) over all pairs, in row blocks (10,000 x 10,000 pairs
    would otherwise hold several 800 MB matrices at once)."""
    bb = (b * b).sum(1)[None, :]
    total = 0.0
    for i in range(0, len(a), block):
        x = a[i : i + block]
        sq = (x * x).sum(1)[:, None] + bb - 2.0 * (x @ b.T)
        total += float(np.exp(-gamma * np.maximum(sq, 0.0)).sum())
    return total / (len(a) * len(b))


def cmmd(x: np.ndarray, y: np.ndarray, *, sigma: float = SIGMA, scale: float = SCALE) -> float:
    """scale * MMD^2 (biased estimator, RBF kernel of bandwidth ``sigma``) between two sets of
    embeddings (already normalised as the caller wants; :class:`CMMD` L2-normalises)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"need two (n, d) embedding sets of one d, got {x.shape} and {y.shape}")
    gamma = 1.0 / (2.0 * sigma * sigma)
    kxx, kyy, kxy = rbf_kernel_mean(x, x, gamma), rbf_kernel_mean(y, y, gamma), rbf_kernel_mean(x, y, gamma)
    return scale * (kxx + kyy - 2.0 * kxy)


class CMMD(FID):
    """CMMD of each model's images against a reference set, on CLIP image embeddings."""

    kind = "cmmd"
    per = "set"
    higher_is_better = False
    version = "1"
    outputs = {}
    defaults = {
        "features": "clip_hf",
        "mode": "clean",
        "weights": "openai/clip-vit-large-patch14-336",
        "reference": None,
        "sigma": SIGMA,
        "scale": SCALE,
        # Runtime only: they don't change the number.
        "device": "auto",
        "batch_size": 32,
        "cpu_streams": "auto",
    }
    """features: clip_hf (transformers CLIPModel) or clip (open_clip); weights: hub id, folder
    or zoo:toy-clip; mode: resize mode (as FID); reference: folder, ``suite``, or an .npz with
    ``features`` (CMMD needs the reference embeddings, not only their mean and covariance);
    sigma / scale: the kernel bandwidth and the scale (published: 10 and 1000)."""
    runtime = ("device", "batch_size", "cpu_streams")

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        for key in ("sigma", "scale"):
            v = self.settings[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"metrics.{name}.settings.{key}: must be a number > 0, got {v!r}.")

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        d["formula"] = "scale * MMD^2 (biased), RBF exp(-|x-y|^2 / (2 sigma^2)), L2-normalised embeddings"
        d["label"] = f"CMMD ({d['extractor'].get('name')} image embeddings)"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Direction, the kernel and which CLIP the number rests on."""
        return ReadingNotes(lines={"": (
            f"CMMD: {float(identity.get('scale', SCALE)):g} x MMD^2 between the model's and the reference's "
            f"CLIP embeddings (RBF, sigma {float(identity.get('sigma', SIGMA)):g}); lower is better, "
            "0 = same distribution. "
            f"Embeddings from {str((identity.get('extractor') or {}).get('weights_id', '?'))[:40]}: "
            "comparable to published CMMD only with CLIP ViT-L/14-336, sigma 10, scale 1000.")})

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[float | None, dict[str, Any]]:
        if self.settings["reference"] is None:
            return None, {"skipped": "no reference set configured: " + HOW_TO_SET.format(name=self.name)}
        if not items:
            return None, {"n": 0, "skipped": "no images"}
        ref = self.reference(items)  # loads the model: a missing weights file stops the stage here
        if ref.features is None:
            return None, {"n": len(items), "skipped": "the reference is an .npz without 'features': CMMD "
                          "needs the reference embeddings (use a folder or an .npz with 'features')"}
        try:
            feats, n_cached = self._features(items)
        except FeatureError as e:
            return None, {"n": len(items), "skipped": str(e)}
        s = self.settings
        value = cmmd(l2_normalize(feats), l2_normalize(ref.features), sigma=float(s["sigma"]),
                     scale=float(s["scale"]))
        return value, {"n": len(items), "mode": s["mode"], "features_cached": n_cached,
                       "n_reference": ref.n, "reference": ref.source, "reference_sha256": ref.sha256,
                       "reference_cached": ref.cached, "notes": list(ref.notes)}
