"""Instruction edits in the toy world, each with its exact expected result: recolour a shape,
move it to another named position, add a shape, change the word on a sign.

An :class:`Edit` holds the source scene, the instruction and the target scene (the source with
exactly the instructed change). :func:`check_edit` scores an edited image with the rule-based
reader of :mod:`~harness.toyworld.checker`: did the instructed change happen (``changed``) and
did every other object stay as it was (``kept``); ``all`` needs both. Word edits keep the
sign's colour (checked here) and change its text, which is OCR's job (the ocr metric reads
``expected_text``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

from PIL import Image

from harness.toyworld.checker import read_objects
from harness.toyworld.world import COLOURS, POSITIONS, SHAPES, WORDS, Scene, Thing, caption, sample_scene

EDIT_KINDS = ("recolour", "move", "add", "word")
SIZE = 0.16
"""Half extent of an added shape (as the world's single-object scenes draw them)."""


@dataclass(frozen=True)
class Edit:
    """One toy-world edit: the instruction and its exact expected result."""

    kind: str
    """recolour | move | add | word."""
    source: Scene
    """The picture to edit."""
    instruction: str
    """What the editor is told."""
    target: Scene
    """The source with exactly the instructed change."""
    index: int | None = None
    """Which of the target's things the edit touches (None for word edits)."""


def _thing_name(t: Thing) -> str:
    return f"the {t.colour} {t.shape}"


def _free_corners(scene: Scene) -> list[str]:
    """Corners no thing occupies: a centre object would touch a corner one (see the world's
    pair scenes), so edits place shapes in free corners only."""
    taken = {t.position for t in scene.things}
    return [p for p in POSITIONS if p != "centre" and p not in taken]


def make_edit(rng: random.Random, kind: str, split: str = "eval") -> Edit:
    """A random edit of ``kind`` on a freshly sampled scene (seeded by ``rng``)."""
    if kind == "word":
        src = sample_scene(rng, split, "word")
        word = rng.choice([w for w in WORDS if w != src.word])
        return Edit("word", src, f'Change the word on the sign to "{word}".',
                    replace(src, word=word))
    src = sample_scene(rng, split, rng.choice(["single", "pair"]))
    while any(t.position == "centre" for t in src.things) and kind == "add":
        src = sample_scene(rng, split, "single")
    things = list(src.things)
    if kind == "add":
        pos = rng.choice(_free_corners(src))
        shape = rng.choice(SHAPES)
        colour = rng.choice([c for c in COLOURS if (c, shape) not in {(t.colour, t.shape) for t in things}])
        new = Thing(shape, colour, pos, POSITIONS[pos], SIZE)
        target = replace(src, kind="pair" if len(things) == 1 else "triple", things=(*things, new))
        return Edit("add", src, f"Add a {colour} {shape} at the {pos}.", target, len(things))
    i = rng.randrange(len(things))
    t = things[i]
    if kind == "recolour":
        others = {(o.colour, o.shape) for j, o in enumerate(things) if j != i}
        colour = rng.choice([c for c in COLOURS if c != t.colour and (c, t.shape) not in others])
        things[i] = replace(t, colour=colour)
        instruction = f"Make {_thing_name(t)} {colour}."
    elif kind == "move":
        pos = rng.choice(_free_corners(src))
        things[i] = replace(t, position=pos, xy=POSITIONS[pos])
        instruction = f"Move {_thing_name(t)} to the {pos}."
    else:
        raise ValueError(f"unknown edit kind {kind!r}; valid: {', '.join(EDIT_KINDS)}")
    return Edit(kind, src, instruction, replace(src, things=tuple(things)), i)


def edits(n: int, seed: int = 0, split: str = "eval") -> Iterator[Edit]:
    """``n`` edits, the kinds in turn, reproducible from ``seed``."""
    rng = random.Random(seed)
    for k in range(n):
        yield make_edit(rng, EDIT_KINDS[k % len(EDIT_KINDS)], split)


def edit_meta(edit: Edit) -> dict:
    """What a correct edit shows and keeps, in the toy world's caption words, as an edit prompt's
    meta carries it (read by the edit_following metric): ``must_change`` (the touched thing's
    caption, or the target sign's), ``must_keep`` (the untouched things' captions; the sign's
    colour for word edits), ``target_caption`` (the whole target scene's canonical caption where
    the world has one: single and pair scenes, signs) and ``edit_type``."""
    target = edit.target
    if edit.kind == "word":
        return {"edit_type": "word", "must_change": caption(target),
                "must_keep": [f"a {target.sign_colour} sign"], "target_caption": caption(target)}

    def one(t: Thing) -> str:
        return caption(replace(target, kind="single", things=(t,)))

    kept = [one(t) for j, t in enumerate(target.things) if j != edit.index]
    return {"edit_type": edit.kind, "must_change": one(target.things[edit.index]), "must_keep": kept,
            "target_caption": caption(target) if target.kind in ("single", "pair") else None}


def _found(objs: list, t: Thing) -> bool:
    return any(o.colour == t.colour and o.shape == t.shape and o.position == t.position for o in objs)


def _sign_colour(image: Image.Image) -> str:
    """The palette colour covering most of the image (the sign board of a word scene)."""
    import numpy as np

    a = np.asarray(image.convert("RGB").resize((64, 64))).astype(np.float32).reshape(-1, 3)
    names = list(COLOURS)
    pal = np.array([COLOURS[c] for c in names], dtype=np.float32)
    d = np.linalg.norm(a[:, None] - pal[None], axis=-1)
    near = d.min(1) < 90
    counts = np.bincount(d.argmin(1)[near], minlength=len(names))
    return names[int(counts.argmax())]


def check_edit(image: Image.Image, edit: Edit) -> dict[str, float]:
    """Score an edited image against an edit's exact target.

    Returns ``changed`` (1 if the touched object has the target's colour, shape and position),
    ``kept`` (share of the untouched objects found unchanged), ``extra`` (1 if no object
    the target lacks is present) and ``all`` (changed and kept and no extra). Word edits return
    ``kept`` (the sign keeps its colour) only; the word itself is OCR's to read.
    """
    if edit.kind == "word":
        return {"kept": float(_sign_colour(image) == edit.target.sign_colour)}
    objs = read_objects(image)
    touched = edit.target.things[edit.index]
    others = [t for j, t in enumerate(edit.target.things) if j != edit.index]
    changed = float(_found(objs, touched))
    kept = sum(_found(objs, t) for t in others) / len(others) if others else 1.0
    wanted = {(t.colour, t.shape, t.position) for t in edit.target.things}
    extra = float(all((o.colour, o.shape, o.position) in wanted for o in objs))
    return {"changed": changed, "kept": kept, "extra": extra,
            "all": float(changed == 1.0 and kept == 1.0 and extra == 1.0)}
