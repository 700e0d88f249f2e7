"""Training images for the toy VLM from the zoo generators: training-split captions drawn by
toy-unet and toy-dit, each labelled with what the rule-based checker reads from it.

Why: the VLM's scores are read on *generated* images (blurrier than renders, sometimes wrong), so
it also learns on such images. The labels are the checker's reading of the image (the same
reading :func:`harness.toyworld.questions.image_content` gives the quality benchmark), not the
prompt, so a drawing that missed its prompt teaches "no". Only training-split scenes are drawn
(their own seed, no unseen colour/shape pair); the held-out captions stay held out.

The images are a pure function of (generator weights, scenes, seeds, sampling settings): they are
generated once, in chunks that survive an interruption, and cached under the zoo cache folder.

Two pools of scenes: ``train`` (the generators' own training split: no unseen colour/shape pair)
and ``all`` (every colour/shape pair, its own seed stream). The judge needs the second: the
held-out captions the generators are measured on include the pairs they never saw, and a judge
that never saw a yellow triangle cannot say whether one was drawn. Neither pool is the held-out
set the quality benchmark reads (its own split and seed).
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
POOLS = {"train": ("train", SEED, 100_000),
         "all": ("reference", world.SPLIT_SEEDS["reference"] + 606, 300_000)}
"""Pool -> (world split its scenes are drawn from, scene seed, first sampling seed)."""
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
    doubtful: np.ndarray | None = None
    """Whether the checker's reading of each image hangs on a hair (:func:`checker.doubts`)."""

    def __len__(self) -> int:
        return len(self.images)


def _pool(pool: str) -> tuple[str, int, int]:
    if pool not in POOLS:
        from harness.errors import did_you_mean

        raise ValueError(f"no generated-image pool {pool!r}.{did_you_mean(pool, list(POOLS))}")
    return POOLS[pool]


def scenes(n: int, pool: str = "train") -> list[world.Scene]:
    """``n`` object scenes of a pool (single, pair and count in turn)."""
    split, seed, _ = _pool(pool)
    rng = random.Random(seed)
    return [world.sample_scene(rng, split, kind=KINDS[i % len(KINDS)]) for i in range(n)]


def prompts(sc: list[world.Scene], pool: str = "train") -> list[str]:
    """One caption template per scene (seeded: templates vary as in the rendered set)."""
    rng = random.Random(_pool(pool)[1] + 1)
    return [world.caption(s, rng) for s in sc]


def _cache(root: Path, name: str, n: int, pool: str = "train") -> Path:
    from harness.generators.diffusers_loading import folder_fingerprint
    from harness.toyworld.data import cache_root

    tag = "vlm-train" if pool == "train" else f"vlm-{pool}"  # "train" keeps its first name
    return cache_root() / f"{tag}-{name}-{folder_fingerprint(root / name)[:12]}-{n}.npz"


def generate(root: Path, name: str, n: int, device: str = "cpu", log=print,
             pool: str = "train") -> np.ndarray:
    """The ``n`` images of one generator and pool (cached; resumes a partial cache chunk by
    chunk)."""
    from harness.zoo import evaluate as E

    path = _cache(root, name, n, pool)
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
        sc = scenes(n, pool)
        ps = prompts(sc, pool)
        first = _pool(pool)[2]
        pipe = E.load_pipeline(root / name, device)
        cfg = E.SAMPLING[name]
        log(f"toy-vlm: generating {n - len(done)} training images ({pool} pool) with {name} "
            f"({len(done)} cached) -> {path.name}")
        while len(done) < n:
            s, e = len(done), min(n, len(done) + CHUNK)
            ims = E.generate(pipe, ps[s:e], [first + i for i in range(s, e)], steps=cfg["steps"],
                             guidance=cfg["guidance"])
            done = np.concatenate([done, np.stack([np.asarray(im.convert("RGB")) for im in ims])])
            tmp = partial.with_suffix(".tmp.npz")
            np.savez(tmp, images=done)
            tmp.replace(partial)
            log(f"toy-vlm: {name} ({pool}) {len(done)}/{n}")
    np.savez(path, images=done[:n])
    partial.unlink(missing_ok=True)
    return done[:n]


def pools(spec: int | dict[str, int]) -> dict[str, int]:
    """A generator's entry of the recipe (a count: the ``train`` pool; or pool -> count)."""
    return {"train": int(spec)} if isinstance(spec, int) else {p: int(n) for p, n in spec.items()}


def _readings(ims: np.ndarray, cache: Path) -> tuple[list[dict[str, Any]], list[bool]]:
    """The checker's reading of each image and whether it hangs on a hair, cached at
    ``cache`` (``*.contents.json``, ``*.doubts.json`` beside it): reading is pure Python."""
    from PIL import Image

    from harness.toyworld import checker, questions

    if cache.exists():
        got = json.loads(cache.read_text())
    else:
        got = [questions.image_content(Image.fromarray(a)) for a in ims]
        cache.write_text(json.dumps(got))
    doubt_path = cache.with_name(cache.name.replace(".contents.json", ".doubts.json"))
    if doubt_path.exists():
        doubts = json.loads(doubt_path.read_text())
    else:
        doubts = [bool(checker.doubts(Image.fromarray(a))) for a in ims]
        doubt_path.write_text(json.dumps(doubts))
    return got, doubts


WARP_PIXELS = 1.5
"""Spread of :func:`warp`'s displacement in the training copies (in their cache names)."""


def warp(images: np.ndarray, seed: int, pixels: float = WARP_PIXELS, grid: int = 5) -> np.ndarray:
    """Each image displaced by its own smooth random field (normal, ``pixels`` px of spread, on a
    ``grid`` x ``grid`` lattice spline-interpolated over the image; bilinear resampling, edges
    repeated): outlines wobble a little, as a generator's do, so shapes near the checker's
    thresholds cross them both ways. Reproducible from ``seed``."""
    import torch
    import torch.nn.functional as F

    n, h, w, _ = images.shape
    g = torch.Generator().manual_seed(seed)
    field = torch.randn(n, 2, grid, grid, generator=g) * pixels
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    # Sampling positions in grid_sample's [-1, 1] coordinates (pixel centres, align_corners=True).
    gx = (xs + field[:, 0]) / (w - 1) * 2 - 1
    gy = (ys + field[:, 1]) / (h - 1) * 2 - 1
    out = []
    for s in range(0, n, 512):
        x = torch.from_numpy(images[s:s + 512]).permute(0, 3, 1, 2).float()
        grid_ = torch.stack([gx[s:s + 512], gy[s:s + 512]], -1)
        y = F.grid_sample(x, grid_, mode="bilinear", padding_mode="border", align_corners=True)
        out.append(y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out) if out else images.copy()


SHIFT_PIXELS = 3
"""Largest offset of :func:`shift`'s copies, in pixels (in their cache names)."""


def shift(images: np.ndarray, seed: int, pixels: int = SHIFT_PIXELS) -> np.ndarray:
    """Each image moved by its own whole-pixel offset (each axis uniform in ``-pixels..pixels``,
    reproducible from ``seed``), the border's pixels repeated into the gap. Pixels are copied, not
    resampled: every drawn outline stays exactly as the generator drew it, only where it falls on
    a vision tower's patch grid changes (a patch-8 tower sees each shape at new sub-patch
    offsets). Unlike :func:`warp`, the checker's reading of a copy keeps its objects (the same
    mean count per image on the zoo's generated images); a shape may change place near a
    boundary, and the checker's reading of the copy says so."""
    n, h, w, _ = images.shape
    off = np.random.default_rng(seed).integers(-pixels, pixels + 1, size=(n, 2))
    pad = np.pad(images, ((0, 0), (pixels, pixels), (pixels, pixels), (0, 0)), mode="edge")
    out = np.empty_like(images)
    for i, (dy, dx) in enumerate(off):
        out[i] = pad[i, pixels - dy:pixels - dy + h, pixels - dx:pixels - dx + w]
    return out


def load(root: Path, counts: dict[str, int | dict[str, int]], device: str = "cpu", log=print,
         mirror: bool = False, warps: int = 0, shifts: int = 0) -> GeneratedSet:
    """Each generator's images of the first ``n`` scenes of each pool (``counts``: generator ->
    n of the ``train`` pool, or -> {pool: n}), with checker readings (cached next to the images:
    reading is pure Python and takes a while).

    ``mirror`` adds each pool's images flipped left to right, prompted (as far as the training
    rows go) by the mirrored scene and read again by the checker: twice the generated images at
    no sampling cost, and the same drawing with left and right swapped, which a judge must tell
    apart (the checker reads the flipped image itself, so its labels hold whatever the flip does
    to a shape).

    ``warps`` adds that many copies of each pool's images (not of the mirrored ones), each
    :func:`warp`-ed with its own seed and read again by the checker: near its thresholds a wobble
    of a pixel flips a reading, and pairs of nearly equal images read differently teach a judge
    where the checker draws the line.

    ``shifts`` adds that many :func:`shift`-ed copies of each pool's images and, with ``mirror``,
    of the mirrored ones (each copy its own seed), read again by the checker: the same drawing at
    other offsets to the vision tower's patch grid, so a judge learns shapes, not where their
    edges fall on the grid."""
    images, sc, contents, sources, doubtful = [], [], [], [], []
    for name, spec in counts.items():
        for pool, n in pools(spec).items():
            ims = generate(root, name, n, device, log, pool)
            read = _cache(root, name, n, pool).with_suffix(".contents.json")
            variants = [(ims, read, scenes(n, pool))]

            def named(kind: str, read: Path = read) -> Path:
                return read.with_name(read.name.replace(".contents.json", f"-{kind}.contents.json"))

            if mirror:
                variants.append((np.ascontiguousarray(ims[:, :, ::-1]), named("mirror"),
                                 [world.mirror(s) for s in scenes(n, pool)]))
            for k in range(1, warps + 1):
                variants.append((warp(ims, seed=k), named(f"warp{k}-{WARP_PIXELS:g}px"), scenes(n, pool)))
            for k in range(1, shifts + 1):
                for j, (base, tag, scs) in enumerate(variants[:1 + mirror]):
                    variants.append((shift(base, seed=1000 * k + j),
                                     tag.with_name(tag.name.replace(".contents.json",
                                                                    f"-shift{k}-{SHIFT_PIXELS}px.contents.json")),
                                     scs))
            for imgs, cache, scs in variants:
                got, doubts = _readings(imgs, cache)
                images.append(imgs)
                sc += scs
                contents += got
                doubtful += doubts
                sources += [name] * len(imgs)
    return GeneratedSet(np.concatenate(images), sc, contents, sources, np.array(doubtful, bool))


def main() -> None:
    """``python -m harness.zoo.vlm_data N [POOL [GENERATOR]]``: generate (and cache) N images per
    generator (or of one) of a pool ahead of training (one generator per process runs two on
    two cores)."""
    import sys

    import torch

    from harness.toyworld.paths import ZOO_DIR

    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    pool = sys.argv[2] if len(sys.argv) > 2 else "train"
    gens = sys.argv[3:] or list(GENERATORS)
    g = load(ZOO_DIR, {name: {pool: n} for name in gens})
    print(f"{len(g)} generated training images ready")


if __name__ == "__main__":
    main()
