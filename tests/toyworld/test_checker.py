"""The attribute checker reads real toy images right (it judges generated ones)."""

import random

import numpy as np
from PIL import Image

from harness.toyworld.checker import check, read_objects
from harness.toyworld.world import Scene, Thing, render, sample_scene, scenes


def test_reads_real_toy_images_at_least_98_percent_right():
    for size in (64, 32):
        totals, counts = {}, {}
        for s in scenes("reference", 300, seed=5):
            if s.kind == "word":
                continue
            for k, v in check(render(s, size), s.attributes()).items():
                totals[k] = totals.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
        acc = {k: totals[k] / counts[k] for k in totals}
        assert set(acc) == {"colour", "shape", "position", "all", "count"}
        assert min(acc.values()) >= 0.98, (size, acc)


def test_wrong_images_are_caught():
    red_circle = Scene("single", (Thing("circle", "red", "top left", (0.27, 0.27), 0.15),))
    img = render(red_circle, 64)
    want = {"kind": "single", "objects": [{"shape": "square", "colour": "blue", "position": "bottom right"}]}
    assert check(img, want) == {"colour": 0.0, "shape": 0.0, "position": 0.0, "all": 0.0}
    assert check(img, red_circle.attributes())["all"] == 1.0
    blank = Image.new("RGB", (64, 64), (246, 244, 238))
    assert check(blank, red_circle.attributes())["all"] == 0.0
    assert read_objects(blank) == []


def test_noise_is_not_an_object():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert len(read_objects(noise)) <= 2


def test_counts():
    rng = random.Random(1)
    for _ in range(30):
        s = sample_scene(rng, "eval", kind="count")
        assert check(render(s, 64), s.attributes())["count"] == 1.0


def test_attribute_metric_uses_meta_or_tags_and_skips_the_rest():
    from harness.metrics.attributes import AttributeAccuracy
    from harness.metrics.base import ScoreInput
    from harness.toyworld.checker import spec_from_tags

    s = Scene("single", (Thing("star", "yellow", "top right", (0.73, 0.27), 0.15),))
    img = render(s, 64)
    m = AttributeAccuracy(name="attributes")
    items = [
        ScoreInput("a", "m", img, {"text": "x", "meta": {"attributes": s.attributes()}}),
        ScoreInput("b", "m", img, {"text": "a yellow star in the top right",
                                   "tags": ["colour:yellow", "shape:star", "position:top-right"]}),
        ScoreInput("c", "m", img, {"text": "a blue star", "tags": ["colour:blue", "shape:star"]}),
        ScoreInput("d", "m", img, {"text": "a cathedral", "tags": ["category:architecture"]}),
    ]
    (a, _), (b, _), (c, _), (d, extra) = m.score_images(items)
    assert a == {"colour": 1.0, "shape": 1.0, "position": 1.0, "all": 1.0, "count": None}
    assert b == a
    assert c == {"colour": 0.0, "shape": 1.0, "position": None, "all": 0.0, "count": None}
    assert set(d.values()) == {None} and "skipped" in extra
    assert spec_from_tags(["count:2", "colour:red", "shape:circle"]) == {
        "kind": "count", "colour": "red", "shape": "circle", "count": 2}
    assert spec_from_tags(["colour:red", "colour:blue", "shape:circle"]) is None


def test_doubts_name_readings_that_hang_on_a_hair_and_clean_renders_have_none():
    from PIL import ImageDraw

    from harness.toyworld.checker import MIN_SHAPE_IOU, doubts
    from harness.toyworld.world import BACKGROUND, COLOURS

    rng = random.Random(3)
    for _ in range(120):
        s = sample_scene(rng, "eval")
        if s.kind != "word":
            assert doubts(render(s, 64)) == [], s
    # A square with corners rounded half way: square and circle overlap it almost equally.
    img = Image.new("RGB", (64, 64), BACKGROUND)
    ImageDraw.Draw(img).rounded_rectangle((10, 10, 30, 30), radius=6, fill=COLOURS["blue"])
    (found,) = read_objects(img)
    (why,) = doubts(img)
    assert why.startswith("blue region at (0.31, 0.31): ") and found.shape in why and " vs " in why
    # A ragged blob just under the acceptance threshold: read as nothing, by a hair.
    ragged = Image.new("RGB", (64, 64), BACKGROUND)
    d = ImageDraw.Draw(ragged)
    for _ in range(200):  # pick a blob whose best overlap falls in the doubt band
        d.rectangle((0, 0, 63, 63), fill=BACKGROUND)
        pts = [(20 + rng.uniform(-9, 9) + 9 * np.cos(a), 20 + rng.uniform(-9, 9) + 9 * np.sin(a))
               for a in np.linspace(0, 2 * np.pi, 9)[:-1]]
        d.polygon(pts, fill=COLOURS["green"])
        why = doubts(ragged)
        if why and "threshold" in why[0]:
            break
    assert why and f"(threshold {MIN_SHAPE_IOU})" in why[0]
    best = float(why[0].split("overlaps ")[1].split(" ")[0])
    assert (best >= MIN_SHAPE_IOU) == bool(read_objects(ragged))
