"""The attribute checker reads real toy images right (it judges generated ones)."""

import random

import numpy as np
from PIL import Image

from harness.zoo.checker import check, read_objects
from harness.zoo.world import Scene, Thing, render, sample_scene, scenes


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
