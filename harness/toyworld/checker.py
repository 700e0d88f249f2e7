"""Read colour, shape, position and count back from a toy-world image.

A rule-based reader, independent of any trained model: pixels are labelled with the nearest
palette colour, each colour's connected regions become objects, an object's shape is the
toy-world shape whose rendering best overlaps it (IoU against templates drawn by the world's
own renderer at the object's size) and its position is the nearest named position. It is the
judge behind the attribute-accuracy metric, so it is itself tested on real toy images.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from harness.toyworld.world import BACKGROUND, COLOURS, POSITIONS, SHAPES, Scene, Thing, render

_PALETTE_NAMES = [*COLOURS, "background", "ink", "paper"]
_PALETTE = np.array([*COLOURS.values(), BACKGROUND, (15, 15, 15), (250, 250, 250)], dtype=np.float32)
MAX_COLOUR_DISTANCE = 90.0
"""Pixels farther than this (RGB Euclidean) from every palette colour count as no colour."""
MIN_AREA = 0.015
"""Smallest object, as a fraction of the image area. Real toy objects are >= 0.018."""
MIN_SHAPE_IOU = 0.62
"""A region must overlap its best shape template this much to count as an object. Real toy
objects reach >= 0.66 even at 32 px; blobs in noise images mostly stay below (median 0.5)."""
WORK_SIZE = 64


@dataclass(frozen=True)
class Found:
    """One object read from an image."""

    colour: str
    shape: str
    position: str
    xy: tuple[float, float]
    area: float
    """Fraction of the image area."""
    shape_iou: float
    """Overlap with the best shape template (how confident the shape reading is)."""


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """4-connected regions of a boolean mask, as arrays of (y, x) indices."""
    h, w = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    out = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        q = deque([(y0, x0)])
        seen[y0, x0] = True
        pts = []
        while q:
            y, x = q.popleft()
            pts.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        out.append(np.array(pts))
    return out


@lru_cache(maxsize=256)
def _template(shape: str, box: int) -> np.ndarray:
    """Mask of a shape rendered by the world, cropped to its bounding box, resized to box x box."""
    size = 128
    scene = Scene(kind="single", things=(Thing(shape, "red", "centre", (0.5, 0.5), 0.3),))
    img = np.asarray(render(scene, size, supersample=2)).astype(np.float32)
    mask = np.linalg.norm(img - np.array(COLOURS["red"], dtype=np.float32), axis=-1) < 90
    ys, xs = np.nonzero(mask)
    crop = mask[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
    resized = Image.fromarray(crop.astype(np.uint8) * 255).resize((box, box), Image.BILINEAR)
    return np.asarray(resized) > 127


def _shape_ious(pts: np.ndarray) -> dict[str, float]:
    """Overlap of a region with each shape's template, best first."""
    ys, xs = pts[:, 0], pts[:, 1]
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    box = int(max(h, w, 8))
    local = np.zeros((h, w), dtype=np.uint8)
    local[ys - ys.min(), xs - xs.min()] = 255
    obj = np.asarray(Image.fromarray(local).resize((box, box), Image.BILINEAR)) > 127
    ious = {}
    for shape in SHAPES:
        t = _template(shape, box)
        ious[shape] = float((obj & t).sum() / max((obj | t).sum(), 1))
    return dict(sorted(ious.items(), key=lambda kv: -kv[1]))  # stable: SHAPES order on ties


def _shape_of(pts: np.ndarray) -> tuple[str, float]:
    shape, iou = next(iter(_shape_ious(pts).items()))
    return shape, iou


def _regions(image: Image.Image):
    """(colour, region pixels) of every object-sized single-colour region."""
    img = image.convert("RGB")
    if img.size != (WORK_SIZE, WORK_SIZE):
        img = img.resize((WORK_SIZE, WORK_SIZE), Image.BICUBIC)
    a = np.asarray(img).astype(np.float32)
    dist = np.linalg.norm(a[:, :, None, :] - _PALETTE[None, None], axis=-1)
    label = dist.argmin(-1)
    label[dist.min(-1) > MAX_COLOUR_DISTANCE] = -1
    n = WORK_SIZE * WORK_SIZE
    for ci, colour in enumerate(COLOURS):
        for pts in _components(label == ci):
            if len(pts) / n >= MIN_AREA:
                yield colour, pts


DOUBT_OBJECT = (MIN_SHAPE_IOU - 0.1, MIN_SHAPE_IOU + 0.05)
"""A region whose best shape overlap falls in this band is read as an object or not by a hair."""
DOUBT_SHAPE = 0.05
"""A region whose two best shape overlaps are this close is read as one shape or the other by a hair."""


def doubts(image: Image.Image) -> list[str]:
    """Where this reader's reading of an image hangs on a hair (empty on clean renders): an
    object-sized region whose best shape overlap is within :data:`DOUBT_OBJECT` of the acceptance
    threshold (counted as an object or as nothing by a small margin), or whose two best shapes
    overlap within :data:`DOUBT_SHAPE` of each other. For reading agreement figures: a judge
    that disagrees with the reader there may be seeing what a person would."""
    out = []
    for colour, pts in _regions(image):
        (s1, i1), (s2, i2) = list(_shape_ious(pts).items())[:2]
        cy, cx = pts.mean(0) / WORK_SIZE
        where = f"{colour} region at ({cx:.2f}, {cy:.2f})"
        if DOUBT_OBJECT[0] <= i1 < DOUBT_OBJECT[1]:
            out.append(f"{where}: best shape {s1} overlaps {i1:.2f} (threshold {MIN_SHAPE_IOU})")
        elif i1 >= MIN_SHAPE_IOU and i1 - i2 < DOUBT_SHAPE:
            out.append(f"{where}: {s1} {i1:.2f} vs {s2} {i2:.2f}")
    return out


def read_objects(image: Image.Image) -> list[Found]:
    """Every coloured object in a toy-world image, largest first."""
    found = []
    n = WORK_SIZE * WORK_SIZE
    for colour, pts in _regions(image):
        shape, iou = _shape_of(pts)
        if iou < MIN_SHAPE_IOU:
            continue
        cy, cx = pts.mean(0) / WORK_SIZE
        pos = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
        found.append(Found(colour, shape, pos, (float(cx), float(cy)), len(pts) / n, iou))
    return sorted(found, key=lambda f: -f.area)


def check(image: Image.Image, spec: dict) -> dict[str, float]:
    """Score an image against a scene's attributes (:meth:`Scene.attributes`).

    Returns fractions in [0, 1]: ``colour``, ``shape``, ``position`` and ``all`` for object
    scenes (each expected object is matched to the found object agreeing on most attributes;
    an attribute given as None is not checked); ``count`` (and ``colour``/``shape``) for count
    scenes. Word scenes are OCR's job: {}.
    """
    objs = read_objects(image)
    if spec["kind"] == "word":
        return {}
    if spec["kind"] == "count":
        same = [o for o in objs if spec.get("colour") in (None, o.colour)
                and spec.get("shape") in (None, o.shape)]
        out = {"count": float(len(same) == spec["count"])}
        for attr in ("colour", "shape"):
            if spec.get(attr):
                out[attr] = float(any(getattr(o, attr) == spec[attr] for o in objs))
        return out
    expected = spec["objects"]
    attrs = [a for a in ("colour", "shape", "position") if any(w.get(a) for w in expected)]
    scores = dict.fromkeys([*attrs, "all"], 0.0)
    for want in expected:
        given = [a for a in attrs if want.get(a)]

        def agree(o: Found, want=want, given=given) -> tuple[int, float]:
            return sum(getattr(o, a) == want[a] for a in given), o.area

        best = max(objs, key=agree, default=None)
        hits = {a: best is not None and getattr(best, a) == want[a] for a in given}
        for a in given:
            scores[a] += hits[a] / sum(bool(w.get(a)) for w in expected)
        scores["all"] += all(hits.values()) / len(expected)
    return scores


def spec_from_tags(tags: list[str] | tuple[str, ...]) -> dict | None:
    """Expected attributes from toy-suite tags (``colour:red``, ``shape:circle``,
    ``position:top-left``, ``count:2``), when they describe one kind of object unambiguously."""
    by: dict[str, list[str]] = {}
    for t in tags:
        if ":" in t:
            k, v = t.split(":", 1)
            by.setdefault(k, []).append(v.replace("-", " "))
    colours, shapes, places = by.get("colour", []), by.get("shape", []), by.get("position", [])
    if not (colours or shapes) or len(colours) > 1 or len(shapes) > 1 or len(places) > 1:
        return None
    colour = colours[0] if colours else None
    shape = shapes[0] if shapes else None
    if by.get("count"):
        return {"kind": "count", "colour": colour, "shape": shape, "count": int(by["count"][0])}
    return {"kind": "single", "objects": [
        {"colour": colour, "shape": shape, "position": places[0] if places else None}]}
