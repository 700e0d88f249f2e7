"""A procedural, seeded toy world: simple shapes in named colours at named positions, counts of
shapes, and short words on signs, each image with templated natural captions.

Every image is determined by its :class:`Scene`; scenes are drawn from a seeded generator, so a
split (``train``, ``reference``, ``eval``) is reproducible bit for bit. A few colour/shape
combinations never appear in ``train``: prompts built from them test generalisation to unseen
combinations.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 70),
    "blue": (45, 85, 215),
    "yellow": (240, 200, 30),
}
POSITIONS = {  # name -> centre as a fraction of the image side
    "top left": (0.27, 0.27),
    "top right": (0.73, 0.27),
    "centre": (0.5, 0.5),
    "bottom left": (0.27, 0.73),
    "bottom right": (0.73, 0.73),
}
WORDS = (
    "STOP", "GO", "YES", "NO", "HI", "OPEN", "SALE", "EXIT", "CAT", "DOG", "SUN", "MOON",
    "TOY", "BUS", "CAR", "BIG", "UP", "TEA", "MAP", "ART", "FUN", "ZOO", "KEY", "BOX",
    "RUN", "SKY", "ICE", "RED", "JAM", "OWL",
)
NUMBERS = {1: "one", 2: "two", 3: "three"}
BACKGROUND = (246, 244, 238)
UNSEEN = frozenset({("yellow", "triangle"), ("green", "star"), ("blue", "circle"), ("red", "square")})
"""Colour/shape pairs held out of the training split."""
SPLIT_SEEDS = {"train": 0, "reference": 1_000_003, "eval": 2_000_003}
KINDS = ("single", "pair", "count", "word")


@dataclass(frozen=True)
class Thing:
    shape: str
    colour: str
    position: str | None
    """Named position, or None for count scenes (placed freely)."""
    xy: tuple[float, float]
    """Centre as a fraction of the side."""
    size: float
    """Radius-like half extent as a fraction of the side."""


@dataclass(frozen=True)
class Scene:
    kind: str
    things: tuple[Thing, ...] = ()
    word: str | None = None
    sign_colour: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def attributes(self) -> dict:
        """What an image of this scene must show (for attribute-accuracy checks)."""
        if self.kind == "word":
            return {"kind": "word", "word": self.word}
        if self.kind == "count":
            t = self.things[0]
            return {"kind": "count", "shape": t.shape, "colour": t.colour, "count": len(self.things)}
        return {"kind": self.kind, "objects": [
            {"shape": t.shape, "colour": t.colour, "position": t.position} for t in self.things]}


def _thing_phrase(t: Thing, with_position: bool = True) -> str:
    base = f"a {t.colour} {t.shape}"
    return f"{base} in the {t.position}" if with_position and t.position else base


def captions(scene: Scene) -> list[str]:
    """Every templated caption of a scene (the first is the canonical one)."""
    if scene.kind == "word":
        w = scene.word
        return [f'a sign that says "{w}"', f'a {scene.sign_colour} sign that says "{w}"',
                f'the word "{w}" on a sign', f'a sign reading "{w}"']
    if scene.kind == "count":
        t, n = scene.things[0], len(scene.things)
        noun = t.shape + ("s" if n > 1 else "")
        return [f"{NUMBERS[n]} {t.colour} {noun}", f"{n} {t.colour} {noun}",
                f"{NUMBERS[n]} {noun}, all {t.colour}"]
    if scene.kind == "single":
        t = scene.things[0]
        return [_thing_phrase(t), f"a {t.colour} {t.shape} at the {t.position}",
                f"{t.position}: a {t.colour} {t.shape}"]
    a, b = scene.things
    return [f"{_thing_phrase(a)} and {_thing_phrase(b)}",
            f"{_thing_phrase(b)} and {_thing_phrase(a)}"]


def caption(scene: Scene, rng: random.Random | None = None) -> str:
    """The canonical caption, or a random template when ``rng`` is given."""
    options = captions(scene)
    return options[0] if rng is None else rng.choice(options)


def _pick_pair(rng: random.Random, split: str) -> tuple[str, str]:
    while True:
        pair = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
        if split != "train" or pair not in UNSEEN:
            return pair


def sample_scene(rng: random.Random, split: str = "train", kind: str | None = None) -> Scene:
    """Draw one scene. ``train`` never contains the UNSEEN colour/shape pairs."""
    kind = kind or rng.choices(KINDS, weights=(4, 2, 2, 2))[0]
    jitter = 0.04
    if kind == "word":
        return Scene(kind="word", word=rng.choice(WORDS), sign_colour=rng.choice(list(COLOURS)))
    if kind in ("single", "pair"):
        # Pairs use two corners: a centre object would touch a corner one, and two touching
        # objects of one colour read as one blob.
        corners = [p for p in POSITIONS if p != "centre"]
        places = rng.sample(list(POSITIONS), 1) if kind == "single" else rng.sample(corners, 2)
        things = []
        for p in places:
            colour, shape = _pick_pair(rng, split)
            cx, cy = POSITIONS[p]
            things.append(Thing(shape, colour, p, (cx + rng.uniform(-jitter, jitter),
                                                   cy + rng.uniform(-jitter, jitter)),
                                rng.uniform(0.13, 0.17)))
        return Scene(kind=kind, things=tuple(things))
    colour, shape = _pick_pair(rng, split)
    n = rng.randint(1, 3)
    # Count scenes use the four corners, so even 32 px images show separate shapes.
    slots = rng.sample([(0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73)], n)
    size = rng.uniform(0.11, 0.14)
    return Scene(kind="count", things=tuple(Thing(shape, colour, None, xy, size) for xy in slots))


def mirror_position(position: str) -> str:
    """A named position seen in a mirror: left and right swapped ("centre" stays)."""
    swap = {"left": "right", "right": "left"}
    return " ".join(swap.get(w, w) for w in position.split())


def mirror(scene: Scene) -> Scene:
    """The scene seen in a mirror: what a left-right flip of its image shows. Every toy shape is
    symmetric about its vertical axis, so only positions change (names and centres)."""
    if scene.kind == "word":
        raise ValueError("a word scene does not mirror: its sign's letters would read backwards")
    return replace(scene, things=tuple(
        replace(t, position=t.position and mirror_position(t.position), xy=(1 - t.xy[0], t.xy[1]))
        for t in scene.things))


def scenes(split: str, n: int, seed: int = 0) -> Iterator[Scene]:
    """``n`` scenes of a split, reproducible from (split, seed)."""
    rng = random.Random(SPLIT_SEEDS[split] + 7919 * seed)
    for _ in range(n):
        yield sample_scene(rng, split)


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    pts = []
    for i in range(10):
        rad = r if i % 2 == 0 else r * 0.45
        a = -math.pi / 2 + i * math.pi / 5
        pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
    return pts


@lru_cache(maxsize=8)
def _font(px: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def render(scene: Scene, size: int = 64, supersample: int = 4) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` x ``size`` (antialiased by supersampling)."""
    big = size * supersample
    img = Image.new("RGB", (big, big), BACKGROUND)
    d = ImageDraw.Draw(img)
    if scene.kind == "word":
        w, h = big * 0.86, big * 0.5
        x0, y0 = (big - w) / 2, (big - h) / 2
        d.rounded_rectangle((x0, y0, x0 + w, y0 + h), radius=big * 0.05,
                            fill=COLOURS[scene.sign_colour], outline=(40, 40, 40),
                            width=max(1, big // 64))
        inner = (x0 + w * 0.08, y0 + h * 0.12, x0 + w * 0.92, y0 + h * 0.88)
        box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), scene.word, font=_font(100))
        scale = min((inner[2] - inner[0]) / (box[2] - box[0]), (inner[3] - inner[1]) / (box[3] - box[1]))
        font = _font(max(8, int(100 * scale)))
        tb = d.textbbox((0, 0), scene.word, font=font)
        tx = (big - (tb[2] - tb[0])) / 2 - tb[0]
        ty = (big - (tb[3] - tb[1])) / 2 - tb[1]
        d.rectangle(inner, fill=(250, 250, 250))
        d.text((tx, ty), scene.word, fill=(15, 15, 15), font=font)
    else:
        for t in scene.things:
            cx, cy, r = t.xy[0] * big, t.xy[1] * big, t.size * big
            fill = COLOURS[t.colour]
            if t.shape == "circle":
                d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            elif t.shape == "square":
                s = r * 0.9
                d.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
            elif t.shape == "triangle":
                d.polygon([(cx, cy - r), (cx + r * 1.05, cy + r * 0.8), (cx - r * 1.05, cy + r * 0.8)],
                          fill=fill)
            else:
                d.polygon(_star(cx, cy, r * 1.15), fill=fill)
    return img.resize((size, size), Image.LANCZOS) if supersample > 1 else img
