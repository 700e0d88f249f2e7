"""Per-prompt diversity: how different a model's samples for the same prompt are.

Distilled and preference-tuned models often lose diversity (every sample of a prompt looks the
same) while their per-image scores stay high; these numbers show it. A model's images are grouped
by prompt; each prompt with at least two samples gets two numbers on L2-normalised image
embeddings (a chosen extractor: the toy CLIP offline, DINOv2 or a real CLIP otherwise), and the
model's value is their mean over prompts:

- vendi: the Vendi score (Friedman & Dieng, "The Vendi Score: A Diversity Evaluation Metric for
  Machine Learning", TMLR 2023) with the cosine-similarity kernel, ``exp(-sum(l_i log l_i))``
  over the eigenvalues l_i of K / n: the effective number of distinct samples, from 1 (all the
  same) to n (all orthogonal). It depends on n, so compare models at the same ``samples``.
- cosine_distance: 1 - the mean cosine similarity over the distinct pairs of samples (0 = all the
  same direction). Chosen as the second measure because it needs no weights beyond the
  embedding already computed, runs offline, does not grow with n (a mean over pairs), and reads
  directly; pixel measures such as MS-SSIM diversity would mostly count changes of layout and
  colour, not of content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import ReadingNotes, ScoreInput
from harness.metrics.cmmd import l2_normalize
from harness.metrics.features import FeatureError
from harness.metrics.fid import FID


def vendi_score(embeddings: np.ndarray) -> float:
    """Vendi score (order 1) of a set under the cosine-similarity kernel of its rows."""
    x = l2_normalize(embeddings)
    n = len(x)
    if n == 0:
        raise ValueError("Vendi score of an empty set")
    ev = np.linalg.eigvalsh((x @ x.T) / n)
    ev = ev[ev > 1e-12]  # 0 log 0 = 0; rounding leaves tiny negative eigenvalues
    return float(np.exp(-(ev * np.log(ev)).sum()))


def mean_cosine_distance(embeddings: np.ndarray) -> float:
    """1 - mean cosine similarity over the distinct pairs of rows (needs >= 2 rows)."""
    x = l2_normalize(embeddings)
    n = len(x)
    if n < 2:
        raise ValueError("pairwise diversity needs at least 2 samples")
    sim = x @ x.T
    off = (sim.sum() - np.trace(sim)) / (n * (n - 1))
    return float(1.0 - off)


def prompt_key(item: ScoreInput) -> str:
    """Which prompt an image answers: its prompt id, else its text."""
    p = item.prompt or {}
    return str(p.get("id") if p.get("id") is not None else p.get("text", ""))


class Diversity(FID):
    """Per-prompt diversity across samples (Vendi score, mean pairwise cosine distance)."""

    kind = "diversity"
    per = "set"
    higher_is_better = True
    version = "1"
    outputs = {"vendi": True, "cosine_distance": True}
    defaults = {
        "features": "dinov2",
        "mode": "clean",
        "weights": "facebook/dinov2-base",
        # Runtime only: they don't change the number.
        "device": "auto",
        "batch_size": 32,
        "cpu_streams": "auto",
    }
    """features: dinov2, clip_hf (transformers CLIP: zoo:toy-clip offline), clip (open_clip),
    efficientnet_lite0, inception; weights: hub id, folder or file as that extractor takes; mode:
    resize mode. No reference set: diversity is within each model's own samples."""
    runtime = ("device", "batch_size", "cpu_streams")

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        d.pop("reference_sha256", None)
        d["kernel"] = "cosine similarity of L2-normalised embeddings; mean over prompts with >= 2 samples"
        d["label"] = f"diversity across samples ({d['extractor'].get('name')} image embeddings)"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """What each output says, on which embedding, and why sample counts must match."""
        on = f"on `{identity.get('features')}` embeddings, mean over prompts with >= 2 samples"
        return ReadingNotes(table_title="Diversity across samples of a prompt", lines={
            "vendi": ("Vendi score: effective number of distinct samples per prompt, 1 (identical) to "
                      f"samples (all different); depends on samples, compare runs with equal samples; {on}"),
            "cosine_distance": ("1 - mean pairwise cosine similarity of a prompt's samples (0 = identical; "
                                f"higher = more diverse); {on}"),
        })

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[dict[str, float | None], dict[str, Any]]:
        none = dict.fromkeys(self.outputs)
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault(prompt_key(it), []).append(i)
        multi = {k: v for k, v in groups.items() if len(v) >= 2}
        if not multi:
            return none, {"n": len(items), "n_prompts": len(groups), "skipped": (
                "diversity needs at least 2 samples of a prompt, and every prompt has 1: run with "
                "samples=4 (or experiment=toy-diversity)")}
        self._dim()  # load first: missing weights stop the stage with their own message
        chosen = sorted(i for v in multi.values() for i in v)
        try:
            feats, n_cached = self._features([items[i] for i in chosen])
        except FeatureError as e:
            return none, {"n": len(items), "skipped": str(e)}
        row = {i: r for r, i in enumerate(chosen)}
        vendi, dist = [], []
        for idx in multi.values():
            f = feats[[row[i] for i in idx]]
            vendi.append(vendi_score(f))
            dist.append(mean_cosine_distance(f))
        sizes = sorted({len(v) for v in multi.values()})
        extra: dict[str, Any] = {"n": len(items), "mode": self.settings["mode"], "features_cached": n_cached,
                                 "n_prompts": len(multi), "samples_per_prompt": sizes,
                                 "vendi_min": float(min(vendi)), "vendi_max": float(max(vendi)),
                                 "cosine_distance_min": float(min(dist)),
                                 "cosine_distance_max": float(max(dist))}
        notes = []
        if len(multi) < len(groups):
            notes.append(f"{len(groups) - len(multi)} prompt(s) with a single sample left out")
        if len(sizes) > 1:
            notes.append(f"prompts have {sizes[0]}-{sizes[-1]} samples: Vendi scores grow with the "
                         "sample count")
        extra["notes"] = notes
        return {"vendi": float(np.mean(vendi)), "cosine_distance": float(np.mean(dist))}, extra
