"""Precision, recall, density and coverage (Naeem et al., "Reliable Fidelity and Diversity
Metrics for Generative Models", ICML 2020) of each model's images against a reference set, on
image features (k-nearest-neighbour balls in feature space, Euclidean distance):

- precision: share of generated images inside some real image's k-NN ball (fidelity);
- recall: share of real images inside some generated image's k-NN ball (diversity; Kynkäänniemi
  et al. 2019's definition, as Naeem et al. and the ``prdc`` package use it);
- density: how many real k-NN balls hold each generated image, divided by k and averaged (can
  exceed 1; robust to real outliers, unlike precision);
- coverage: share of real images whose k-NN ball holds at least one generated image.

The k-NN radius of a point is the distance to its k-th nearest other point of the same set; a
point is inside a ball when its distance is strictly smaller than the radius. All four are 0..1
(density 0..n/k) with higher better. Naeem et al. recommend equal set sizes and k = 5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.metrics.base import ReadingNotes, ScoreInput
from harness.metrics.features import FeatureError
from harness.metrics.fid import FID, HOW_TO_SET


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (float64), computed in blocks of
    the squared-norm expansion and clipped at 0 before the square root."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    d = pairwise_distances(x, x)
    np.fill_diagonal(d, np.inf)  # a point is not its own neighbour
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def prdc(real: np.ndarray, fake: np.ndarray, *, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` features."""
    real = np.asarray(real, dtype=np.float64)
    fake = np.asarray(fake, dtype=np.float64)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} features per set, got "
                         f"{len(real)} real and {len(fake)} generated")
    r_radii = knn_radii(real, k)
    f_radii = knn_radii(fake, k)
    d = pairwise_distances(real, fake)  # (n_real, n_fake)
    in_real_ball = d < r_radii[:, None]
    return {
        "precision": float(in_real_ball.any(axis=0).mean()),
        "recall": float((d < f_radii[None, :]).any(axis=1).mean()),
        "density": float(in_real_ball.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < r_radii).mean()),
    }


class PRDC(FID):
    """Precision / recall / density / coverage of each model's images against a reference set."""

    kind = "prdc"
    per = "set"
    higher_is_better = True
    version = "1"
    outputs = {"precision": True, "recall": True, "density": True, "coverage": True}
    defaults = {
        "features": "dinov2",
        "mode": "clean",
        "weights": "facebook/dinov2-large",
        "reference": None,
        "nearest_k": 5,
        # Runtime only: they don't change the number.
        "device": "auto",
        "batch_size": 32,
        "cpu_streams": "auto",
    }
    """features / weights / mode / reference: as FID (the reference needs features, not only
    statistics); nearest_k: k of the k-NN balls (Naeem et al.: 5)."""
    runtime = ("device", "batch_size", "cpu_streams")

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        k = self.settings["nearest_k"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"metrics.{name}.settings.nearest_k: must be an integer >= 1, got {k!r}.")

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        d["label"] = f"precision / recall / density / coverage ({d['extractor'].get('name')} features)"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """What each output measures, on which features, with which k."""
        on = (f"k={identity.get('nearest_k')} nearest neighbours on `{identity.get('features')}` features; "
              "set sizes matter: compare models with the same number of images")
        return ReadingNotes(table_title="Precision / recall / density / coverage", lines={
            "precision": f"share of generated images in a real image's k-NN ball (fidelity, 0-1); {on}",
            "recall": f"share of real images in a generated image's k-NN ball (diversity, 0-1); {on}",
            "density": (f"real k-NN balls around each generated image / k (fidelity, ~1 = like real, "
                        f"can exceed 1); {on}"),
            "coverage": f"share of real images with a generated image in their k-NN ball (0-1); {on}",
        })

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[dict[str, float | None], dict[str, Any]]:
        none = dict.fromkeys(self.outputs)
        k = int(self.settings["nearest_k"])
        if self.settings["reference"] is None:
            return none, {"skipped": "no reference set configured: " + HOW_TO_SET.format(name=self.name)}
        if len(items) <= k:
            return none, {"n": len(items), "skipped": f"PRDC with nearest_k={k} needs more than {k} "
                          f"images per model, got {len(items)}"}
        ref = self.reference(items)
        if ref.features is None:
            return none, {"n": len(items), "skipped": "the reference is an .npz without 'features': PRDC "
                          "needs the reference features (use a folder or an .npz with 'features')"}
        if len(ref.features) <= k:
            return none, {"n": len(items), "skipped": f"the reference has {len(ref.features)} images; "
                          f"PRDC with nearest_k={k} needs more than {k}"}
        try:
            feats, n_cached = self._features(items)
        except FeatureError as e:
            return none, {"n": len(items), "skipped": str(e)}
        values = prdc(ref.features, feats, k=k)
        extra: dict[str, Any] = {"n": len(items), "mode": self.settings["mode"], "features_cached": n_cached,
                                 "n_reference": ref.n, "reference": ref.source,
                                 "reference_sha256": ref.sha256, "reference_cached": ref.cached,
                                 "notes": list(ref.notes)}
        if len(items) != len(ref.features):
            extra["notes"].append(f"{len(items)} generated vs {len(ref.features)} reference images: "
                                  "PRDC is defined for any sizes but Naeem et al. compare equal ones")
        return values, extra
