"""Rendered toy-world datasets for training: images as a uint8 array plus every caption.

A dataset is fully determined by (split, n, size, seed), so it is rendered once and cached as an
``.npz`` under the cache folder; training draws a random caption template per image per step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.toyworld import world


def cache_root() -> Path:
    raw = os.environ.get("HARNESS_ZOO_CACHE") or os.environ.get("HARNESS_MODEL_CACHE")
    root = Path(raw).expanduser() / "zoo" if raw else Path.home() / ".cache" / "harness" / "zoo"
    root.mkdir(parents=True, exist_ok=True)
    return root


@dataclass
class ToyData:
    images: np.ndarray
    """uint8, (n, size, size, 3)."""
    captions: list[list[str]]
    """Every templated caption of each image (the first is the canonical one)."""
    scenes: list[world.Scene]

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """A random batch: images, one random caption template each, and their indices."""
        idx = rng.integers(0, len(self.images), size=n)
        caps = [self.captions[i][rng.integers(0, len(self.captions[i]))] for i in idx]
        return self.images[idx], caps, idx


def load(split: str, n: int, size: int = 64, seed: int = 0, progress: bool = True) -> ToyData:
    """The first ``n`` scenes of a split rendered at ``size`` px (cached after the first call)."""
    scenes = list(world.scenes(split, n, seed=seed))
    caps = [world.captions(s) for s in scenes]
    path = cache_root() / f"{split}-{n}-{size}px-seed{seed}.npz"
    if path.exists():
        images = np.load(path)["images"]
        if images.shape == (n, size, size, 3):
            return ToyData(images, caps, scenes)
    from tqdm import tqdm

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, s in enumerate(tqdm(scenes, desc=f"render {split}", unit="img", disable=not progress,
                               mininterval=2.0)):
        images[i] = np.asarray(world.render(s, size))
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images)
    os.replace(tmp, path)
    return ToyData(images, caps, scenes)
