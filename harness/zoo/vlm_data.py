"""Training images for the toy VLM from the zoo generators: training-split captions drawn by
toy-unet and toy-dit, each labelled with what the rule-based checker reads from it.

Why: the VLM's scores are read on *generated* images (blurrier than renders, sometimes wrong), so
it also learns on such images. The labels are the checker's reading of the image (the same
reading :func:`harness.toyworld.questions.image_content` gives the quality benchmark), not the
prompt, so a drawing that missed its prompt teaches "no". Only training-split scenes are drawn
(their own seed, no unseen colour/shape pair); the held-out captions stay held out.

The images are a pure function of (generator weights, scenes, seeds, sampling settings): they are
generated once, in chunks that survive an interruption, and cached under the zoo cache folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.toyworld import world

GENERATORS = ("toy-unet", "toy-dit")
KINDS = ("single", "pair", "count")
SEED = world.SPLIT_SEEDS["train"] + 505
"""Seed of the generated set's scenes (its own stream, so the rendered training set is unchanged)."""
CHUNK = 128


@dataclass
class GeneratedSet:
    """Generated images with the scene each was prompted with and the checker's reading of it."""

    images: np.ndarray
    """uint8, (n, 64, 64, 3)."""
    scenes: list[world.Scene]
    contents: list[dict[str, Any]]
    """:func:`questions.image_content` of each image."""
    sources: list[str]
    """The generator of each image."""

    def __len__(self) -> int:
        return len(self.images)


def scenes(n: int) -> list[world.Scene]:
    """``n`` training-split object scenes (single, pair and count in turn)."""
    rng = random.Random(SEED)
    return [world.sample_scene(rng, "train", kind=KINDS[i % len(KINDS)]) for i in range(n)]


def prompts(sc: list[world.Scene]) -> list[str]:
    """One caption template per scene (seeded: templates vary as in the rendered set)."""
    rng = random.Random(SEED + 1)
    return [world.caption(s, rng) for s in sc]


def _cache(root: Path, name: str, n: int) -> Path:
    from harness.generators.diffusers_loading import folder_fingerprint
    from harness.toyworld.data import cache_root

    return cache_root() / f"vlm-train-{name}-{folder_fingerprint(root / name)[:12]}-{n}.npz"


def generate(root: Path, name: str, n: int, device: str = "cpu", log=print) -> np.ndarray:
    """The ``n`` images of one generator (cached; resumes a partial cache chunk by chunk)."""
    from harness.zoo import evaluate as E

    path = _cache(root, name, n)
    if path.exists():
        return np.load(path)["images"]
    # Scenes and seeds go by index, so any cached set of the same weights (finished or not)
    # holds the first images of this one.
    done = np.zeros((0, 64, 64, 3), np.uint8)
    for other in sorted(path.parent.glob(path.name.rsplit("-", 1)[0] + "-*.npz")):
        if other.name.endswith((".tmp.npz", ".contents.json")):
            continue
        got = np.load(other)["images"]
        if len(got) > len(done):
            done = got[:n]
    if len(done) == n:
        np.savez(path, images=done)
        return done
    partial = path.with_suffix(".partial.npz")
    if len(done) < n:
        sc = scenes(n)
        ps = prompts(sc)
        pipe = E.load_pipeline(root / name, device)
        cfg = E.SAMPLING[name]
        log(f"toy-vlm: generating {n - len(done)} training images with {name} "
            f"({len(done)} cached) -> {path.name}")
        while len(done) < n:
            s, e = len(done), min(n, len(done) + CHUNK)
            ims = E.generate(pipe, ps[s:e], [100_000 + i for i in range(s, e)], steps=cfg["steps"],
                             guidance=cfg["guidance"])
            done = np.concatenate([done, np.stack([np.asarray(im.convert("RGB")) for im in ims])])
            tmp = partial.with_suffix(".tmp.npz")
            np.savez(tmp, images=done)
            tmp.replace(partial)
            log(f"toy-vlm: {name} {len(done)}/{n}")
    np.savez(path, images=done[:n])
    partial.unlink(missing_ok=True)
    return done[:n]


def load(root: Path, counts: dict[str, int], device: str = "cpu", log=print) -> GeneratedSet:
    """Each generator's images of the first ``counts[generator]`` scenes, with checker readings
    (cached next to the images: reading is pure Python and takes a while)."""
    from PIL import Image

    from harness.toyworld import questions

    images, sc, contents, sources = [], [], [], []
    for name, n in counts.items():
        ims = generate(root, name, n, device, log)
        read = _cache(root, name, n).with_suffix(".contents.json")
        if read.exists():
            got = json.loads(read.read_text())
        else:
            got = [questions.image_content(Image.fromarray(a)) for a in ims]
            read.write_text(json.dumps(got))
        images.append(ims)
        sc += scenes(n)
        contents += got
        sources += [name] * len(ims)
    return GeneratedSet(np.concatenate(images), sc, contents, sources)


def main() -> None:
    """``python -m harness.zoo.vlm_data N``: generate (and cache) N images per generator ahead
    of training."""
    import sys

    import torch

    from harness.toyworld.paths import ZOO_DIR

    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    g = load(ZOO_DIR, dict.fromkeys(GENERATORS, n))
    print(f"{len(g)} generated training images ready")


if __name__ == "__main__":
    main()
