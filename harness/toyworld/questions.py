"""Yes/no questions about toy-world images: DSG-style question sets for prompts (entity first,
then its attributes, each child depending on its parent), balanced true/false questions for
training the toy VLM, and the answers the rule-based checker reads from an image.

Every question carries a machine-readable ``check`` next to its words, so its true answer can be
computed from a scene (training data) or from the objects :func:`checker.read_objects` finds in
an image (the reference the toy VLM's answers are compared with).

Checks: ``{"exists": {"shape", "colour"?, "position"?}}`` (some object matches),
``{"count": {"shape", "colour", "n"}}`` (exactly n such objects), ``{"sign": true}``,
``{"word": "STOP"}`` (the sign says it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from harness.toyworld import world

VQA_TEMPLATE = "Does this figure show '{prompt}'? Please answer yes or no."
"""The VQAScore question (as :data:`harness.metrics.vqa.DEFAULT_TEMPLATE`)."""
DESCRIBE = "Describe this figure."
"""The captioning request the toy VLM also learns to answer (dense supervision for grounding)."""


def _plural(shape: str, n: int) -> str:
    return shape + ("s" if n != 1 else "")


def phrase(check: Mapping[str, Any]) -> str:
    """The question's words for a check."""
    if "exists" in check:
        e = check["exists"]
        what = " ".join(x for x in (e.get("colour"), e["shape"]) if x)
        where = f" in the {e['position']}" if e.get("position") else ""
        return f"Is there a {what}{where}?"
    if "count" in check:
        c = check["count"]
        n = int(c["n"])
        if n == 1:
            return f"Is there exactly one {c['colour']} {c['shape']}?"
        return f"Are there exactly {world.NUMBERS.get(n, n)} {c['colour']} {_plural(c['shape'], n)}?"
    if "sign" in check:
        return "Is there a sign?"
    if "word" in check:
        return f'Does the sign say "{check["word"]}"?'
    raise ValueError(f"unknown toy question check {dict(check)!r}")


def questions_for(attributes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The DSG-style questions for a toy-world prompt's attributes (all expect "yes").

    Objects: "Is there a circle?" -> "Is there a red circle?" -> "Is there a red circle in the top
    left?"; counts: "Is there a red circle?" -> "Are there exactly two red circles?"; words:
    "Is there a sign?" -> 'Does the sign say "STOP"?'. Ids are strings; ``parents`` name the
    questions that must be answered yes for a child to count."""
    out: list[dict[str, Any]] = []

    def add(check: dict[str, Any], category: str, parents: Sequence[str] = ()) -> str:
        qid = str(len(out) + 1)
        out.append({"id": qid, "question": phrase(check), "parents": list(parents), "answer": "yes",
                    "category": category, "check": check})
        return qid

    kind = attributes.get("kind")
    if kind == "word":
        s = add({"sign": True}, "entity")
        add({"word": attributes["word"]}, "text", [s])
    elif kind == "count":
        shape, colour = attributes["shape"], attributes["colour"]
        e = add({"exists": {"shape": shape, "colour": colour}}, "attribute")
        add({"count": {"shape": shape, "colour": colour, "n": int(attributes["count"])}}, "count", [e])
    else:
        for o in attributes.get("objects") or []:
            e = add({"exists": {"shape": o["shape"]}}, "entity")
            c = add({"exists": {"shape": o["shape"], "colour": o["colour"]}}, "attribute", [e])
            if o.get("position"):
                add({"exists": {"shape": o["shape"], "colour": o["colour"], "position": o["position"]}},
                    "spatial", [c])
    return out


# -- true answers -----------------------------------------------------------------------------

def scene_content(scene: world.Scene) -> dict[str, Any]:
    """What a scene shows, in the form :func:`answer` reads."""
    return {"objects": [{"shape": t.shape, "colour": t.colour, "position": t.position}
                        for t in scene.things],
            "sign": scene.kind == "word", "word": scene.word}


def image_content(image: Any) -> dict[str, Any]:
    """What the rule-based checker reads from an image (no sign or word reading: the checker
    reads shapes only)."""
    from harness.toyworld import checker

    found = checker.read_objects(image)
    return {"objects": [{"shape": f.shape, "colour": f.colour, "position": f.position} for f in found],
            "sign": None, "word": None}


def answer(check: Mapping[str, Any], content: Mapping[str, Any]) -> bool | None:
    """The true answer to a check on some content; None when the content can't tell (a sign
    question on checker-read content)."""
    objects = content["objects"]
    if "exists" in check:
        want = check["exists"]
        return any(all(o.get(k) == v for k, v in want.items() if v is not None) for o in objects)
    if "count" in check:
        c = check["count"]
        return sum(o["shape"] == c["shape"] and o["colour"] == c["colour"] for o in objects) == int(c["n"])
    if "sign" in check:
        return content["sign"]
    if "word" in check:
        return None if content["sign"] is None else bool(content["sign"]) and content["word"] == check["word"]
    raise ValueError(f"unknown toy question check {dict(check)!r}")


# -- training questions -------------------------------------------------------------------------

def random_check(rng: random.Random, scene: world.Scene) -> dict[str, Any]:
    """A check about this scene's content or a near miss (one attribute changed)."""
    colours, shapes, positions = list(world.COLOURS), list(world.SHAPES), list(world.POSITIONS)
    r = rng.random()
    if scene.kind == "word" and r < 0.6:
        word = scene.word if rng.random() < 0.5 else rng.choice(world.WORDS)
        return {"word": word}
    if r < 0.12:
        return {"sign": True}
    base = rng.choice(scene.things) if scene.things and rng.random() < 0.7 else None
    shape = base.shape if base else rng.choice(shapes)
    colour = base.colour if base else rng.choice(colours)
    if rng.random() < 0.5:  # a near miss: change one attribute
        which = rng.choice(["shape", "colour"])
        shape = rng.choice(shapes) if which == "shape" else shape
        colour = rng.choice(colours) if which == "colour" else colour
    kind = rng.random()
    if scene.kind == "count" or kind < 0.2:
        n = len(scene.things) if scene.kind == "count" and rng.random() < 0.6 else rng.randint(1, 3)
        return {"count": {"shape": shape, "colour": colour, "n": n}}
    if kind < 0.45:
        return {"exists": {"shape": shape}}
    if kind < 0.7 or scene.kind == "count":
        return {"exists": {"shape": shape, "colour": colour}}
    position = base.position if base and base.position and rng.random() < 0.6 else rng.choice(positions)
    return {"exists": {"shape": shape, "colour": colour, "position": position}}


def position_check(rng: random.Random, content: Mapping[str, Any]) -> dict[str, Any] | None:
    """A question about where one object of ``content`` is: its colour and shape at its own
    position (half the time), at the left-right mirror of it, the top-bottom mirror or any other
    position; None when no object has a named position. :func:`random_check` rarely asks these
    (a position question with a wrong corner is about 1 in 300 of its questions, one with left
    and right swapped 1 in 1,000), so a judge trained on it alone learns "is there a red circle
    anywhere" and cannot tell left from right."""
    objects = [o for o in content["objects"] if o.get("position")]
    if not objects:
        return None
    o = rng.choice(objects)
    own = o["position"]
    u = rng.random()
    if u < 0.5:
        where = own
    else:
        if u < 0.75:
            where = world.mirror_position(own)
        elif u < 0.875:
            where = " ".join({"top": "bottom", "bottom": "top"}.get(w, w) for w in own.split())
        else:
            where = own
        if where == own:  # the centre mirrors onto itself
            where = rng.choice([p for p in world.POSITIONS if p != own])
    return {"exists": {"shape": o["shape"], "colour": o["colour"], "position": where}}


def training_question(rng: random.Random, scene: world.Scene, caption_share: float = 0.3,
                      position_share: float = 0.0) -> tuple[str, bool]:
    """One (question, true answer) about a scene, yes and no about equally often: an atomic
    question (:func:`phrase`) or, with probability ``caption_share``, the VQAScore question
    with this scene's caption or a near-miss scene's caption; or, with probability
    ``position_share`` (drawn first), a :func:`position_check` question."""
    if position_share and rng.random() < position_share:
        check = position_check(rng, scene_content(scene))
        if check is not None:
            return phrase(check), bool(answer(check, scene_content(scene)))
    want = rng.random() < 0.5
    if rng.random() < caption_share:
        caps = world.captions(scene)
        if want:
            return VQA_TEMPLATE.replace("{prompt}", rng.choice(caps)), True
        for _ in range(50):
            other = near_miss(rng, scene)
            if world.caption(other) not in caps:
                return VQA_TEMPLATE.replace("{prompt}", rng.choice(world.captions(other))), False
    content = scene_content(scene)
    for _ in range(200):
        check = random_check(rng, scene)
        if answer(check, content) == want:
            return phrase(check), want
    check = random_check(rng, scene)
    return phrase(check), bool(answer(check, content))


def near_miss(rng: random.Random, scene: world.Scene) -> world.Scene:
    """The scene with one thing changed (a colour, a shape, a position, the count or the word),
    or sometimes a different scene altogether."""
    from dataclasses import replace

    if rng.random() < 0.2:
        return world.sample_scene(rng, "eval")
    if scene.kind == "word":
        return replace(scene, word=rng.choice([w for w in world.WORDS if w != scene.word]))
    things = list(scene.things)
    if scene.kind == "count" and rng.random() < 0.4:
        n = rng.choice([k for k in (1, 2, 3) if k != len(things)])
        t = things[0]
        slots = [(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)][:n]
        return replace(scene, things=tuple(replace(t, xy=xy) for xy in slots))
    i = rng.randrange(len(things))
    t = things[i]
    what = rng.choice(["colour", "shape"] + (["position"] if t.position else []))
    if what == "colour":
        new = replace(t, colour=rng.choice([c for c in world.COLOURS if c != t.colour]))
    elif what == "shape":
        new = replace(t, shape=rng.choice([s for s in world.SHAPES if s != t.shape]))
    else:
        taken = {x.position for x in things}
        new = replace(t, position=rng.choice([p for p in world.POSITIONS if p not in taken]))
    if scene.kind == "count":
        return replace(scene, things=tuple(replace(x, colour=new.colour, shape=new.shape) for x in things))
    things[i] = new
    return replace(scene, things=tuple(things))


def all_question_texts() -> list[str]:
    """A sample of every kind of question and caption text (for the toy VLM's vocabulary)."""
    texts = [VQA_TEMPLATE, DESCRIBE]
    for c in world.COLOURS:
        for s in world.SHAPES:
            for n in (1, 2, 3):
                texts.append(phrase({"count": {"shape": s, "colour": c, "n": n}}))
            for p in world.POSITIONS:
                texts.append(phrase({"exists": {"shape": s, "colour": c, "position": p}}))
    texts += [phrase({"word": w}) for w in world.WORDS] + [phrase({"sign": True})]
    for split in ("train", "eval"):
        for scene in world.scenes(split, 2000, seed=0):
            texts.extend(world.captions(scene))
    return texts
