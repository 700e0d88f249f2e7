"""Build the toy-editing prompt suite: toy-world edits (recolour, move, add, change the word),
each with its source picture rendered by the world, as SDEdit (img2img) prompts any
text-to-image diffusion model can run.

SDEdit (Meng et al., 2022) edits with a plain text-to-image model: the source is noised to
``strength`` (0 keeps it, 1 draws afresh) and denoised with the caption of the wanted result.
So a prompt's text is the target scene's caption, its ``init_image`` control the source, and
the instruction (what a person or an instruction editor would be told) rides in the metadata
with everything the checker needs to score the result exactly (``toy_edit``: the source and
target scenes, see :func:`edit_record`). Only edits whose target the world can caption are
drawn (adds go to single-object scenes), since the caption is the whole instruction SDEdit gets.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from harness.toyworld.edits import EDIT_KINDS, Edit, edit_meta, make_edit
from harness.toyworld.world import Scene, Thing, render

PER_KIND = 8
"""Edits of each kind in the built-in suite (32 in all: about 15 s per zoo model on 2 cores)."""
STRENGTH = 0.8
"""SDEdit strength of the built-in suite (the init_image control's ``strength``): the best of
0.5-0.9 on the zoo models, see harness/data/suites/toy-editing.yaml's header."""
IMAGE_SIZE = 64
"""Side of the rendered sources: the zoo models' size."""
SUITE_NAME = "toy-editing"


def _scene_record(scene: Scene) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": scene.kind}
    if scene.kind == "word":
        d |= {"word": scene.word, "sign_colour": scene.sign_colour}
    else:
        d["things"] = [{"shape": t.shape, "colour": t.colour, "position": t.position,
                        "xy": [round(v, 4) for v in t.xy], "size": round(t.size, 4)}
                       for t in scene.things]
    return d


def _scene_from(d: dict[str, Any]) -> Scene:
    things = tuple(Thing(t["shape"], t["colour"], t["position"], tuple(t["xy"]), t["size"])
                   for t in d.get("things") or ())
    return Scene(kind=d["kind"], things=things, word=d.get("word"), sign_colour=d.get("sign_colour"))


def edit_record(edit: Edit) -> dict[str, Any]:
    """An edit as plain data (a prompt's ``meta.toy_edit``): kind, instruction, the touched
    thing's index and the source and target scenes (centres and sizes rounded to 4 places)."""
    return {"kind": edit.kind, "instruction": edit.instruction, "index": edit.index,
            "source": _scene_record(edit.source), "target": _scene_record(edit.target)}


def edit_from_record(d: dict[str, Any]) -> Edit:
    """The :class:`Edit` a ``meta.toy_edit`` record describes (inverse of :func:`edit_record`).

    Raises:
        ValueError: the record lacks a key or names an unknown kind (says which).
    """
    missing = [k for k in ("kind", "instruction", "source", "target") if k not in d]
    if missing:
        raise ValueError(f"toy_edit record lacks {', '.join(missing)}; rebuild the suite with "
                         "harness.toyworld.edit_suite.write_toy_editing_suite")
    if d["kind"] not in EDIT_KINDS:
        raise ValueError(f"toy_edit kind {d['kind']!r} is not one of {', '.join(EDIT_KINDS)}")
    return Edit(d["kind"], _scene_from(d["source"]), d["instruction"], _scene_from(d["target"]),
                d.get("index"))


def suite_edits(seed: int = 0, per_kind: int = PER_KIND) -> list[Edit]:
    """``per_kind`` edits of each kind whose target the world can caption, kinds in turn,
    reproducible from ``seed``."""
    rng = random.Random(seed)
    out: list[Edit] = []
    seen: set[str] = set()
    while len(out) < per_kind * len(EDIT_KINDS):
        kind = EDIT_KINDS[len(out) % len(EDIT_KINDS)]
        e = make_edit(rng, kind)
        if edit_meta(e)["target_caption"] is None or e.instruction + repr(e.source) in seen:
            continue
        seen.add(e.instruction + repr(e.source))
        out.append(e)
    return out


def toy_editing_prompts(seed: int = 0, per_kind: int = PER_KIND, strength: float = STRENGTH,
                        image_dir: str = SUITE_NAME) -> tuple[list[dict], dict[str, Any]]:
    """(prompts in the own suite format, {image file name: PIL image}) of the toy-editing suite.

    Each prompt: ``text`` the target caption, ``controls.init_image`` the source (path relative
    to the suite file, ``strength``), ``expected_text`` for word edits, tags ``edit:<kind>``, and
    in its metadata the instruction, :func:`~harness.toyworld.edits.edit_meta` (``edit_type``,
    ``must_change``, ``must_keep``, ``target_caption``) and ``toy_edit`` (:func:`edit_record`).
    """
    prompts, images = [], {}
    counts = dict.fromkeys(EDIT_KINDS, 0)
    for drawn in suite_edits(seed, per_kind):
        # The stored record rounds centres and sizes: render what it says, so the committed
        # picture and the scene the checker scores against are one and the same.
        e = edit_from_record(edit_record(drawn))
        counts[e.kind] += 1
        pid = f"{e.kind}-{counts[e.kind]:02d}"
        meta = edit_meta(e)
        file = f"{pid}.png"
        images[file] = render(e.source, IMAGE_SIZE)
        p: dict[str, Any] = {"id": pid, "text": meta["target_caption"],
                             "tags": [f"edit:{e.kind}", f"source:{e.source.kind}"],
                             "controls": {"init_image": {"path": f"{image_dir}/{file}",
                                                         "strength": strength}}}
        if e.kind == "word":
            p["expected_text"] = e.target.word
        p |= {"instruction": e.instruction, **meta, "toy_edit": edit_record(e)}
        prompts.append(p)
    return prompts, images


def write_toy_editing_suite(path: Path, seed: int = 0, per_kind: int = PER_KIND,
                            strength: float = STRENGTH) -> Path:
    """Write the suite YAML to ``path`` and its source images to the folder beside it
    (``<stem>/<id>.png``); returns ``path``."""
    path = Path(path)
    folder = path.parent / path.stem
    prompts, images = toy_editing_prompts(seed, per_kind, strength, image_dir=path.stem)
    folder.mkdir(parents=True, exist_ok=True)
    for name, im in images.items():
        im.save(folder / name, optimize=False)
    doc = {
        "name": SUITE_NAME,
        "version": "1",
        "description": (f"{len(prompts)} toy-world edits (recolour, move, add, change the word) "
                        "with exact expected results, as SDEdit prompts: the target caption with "
                        "the source as init_image."),
        "prompts": prompts,
    }
    header = (
        f"# Generated by harness.toyworld.edit_suite.write_toy_editing_suite(seed={seed}, "
        f"per_kind={per_kind}, strength={strength});\n"
        "# edit the generator, not this file (or its images).\n"
        "# SDEdit: text is the TARGET caption and init_image the source, noised to `strength`\n"
        "# and denoised with that caption, so any text-to-image diffusion model edits. The\n"
        "# instruction is what a person (or an instruction editor) would be told.\n"
        "# toy_edit holds the source and target scenes the edit_check metric scores against;\n"
        "# edit_type/must_change/must_keep/target_caption are read by edit_following.\n"
        "# Strength 0.8 (the default) from a sweep of the zoo U-Net and DiT over 32 other toy\n"
        "# edits: recolour/move/add exactly right 0.29 at 0.6 (DiT 0.21: too little changes),\n"
        "# 0.37 at 0.8 (both models), and at 0.9 no better while signs lose their colour.\n")
    path.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100),
                    encoding="utf-8")
    return path
