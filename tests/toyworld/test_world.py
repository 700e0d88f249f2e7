"""The toy world: reproducible splits, held-out combinations, captions that match scenes."""

import io
import random

import numpy as np

from harness.toyworld.world import COLOURS, POSITIONS, SHAPES, UNSEEN, captions, render, sample_scene, scenes


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_splits_are_reproducible_and_differ():
    a = [_png(render(s, 32)) for s in scenes("eval", 12)]
    assert a == [_png(render(s, 32)) for s in scenes("eval", 12)]
    assert a != [_png(render(s, 32)) for s in scenes("reference", 12)]
    assert a != [_png(render(s, 32)) for s in scenes("eval", 12, seed=1)]


def test_train_never_shows_unseen_pairs_but_eval_does():
    def pairs(split):
        return {(t.colour, t.shape) for s in scenes(split, 3000) for t in s.things}

    assert not pairs("train") & UNSEEN
    assert pairs("eval") & UNSEEN


def test_captions_name_what_is_drawn():
    rng = random.Random(3)
    for _ in range(200):
        s = sample_scene(rng, "eval")
        for cap in captions(s):
            if s.kind == "word":
                assert f'"{s.word}"' in cap
            else:
                for t in s.things:
                    assert t.colour in cap and t.shape in cap
                    if s.kind != "count":
                        assert t.position in cap


def test_render_draws_the_colour_where_the_shape_is():
    rng = random.Random(0)
    s = sample_scene(rng, "eval", kind="single")
    img = np.asarray(render(s, 64)).astype(int)
    t = s.things[0]
    cx, cy = (int(v * 64) for v in t.xy)
    assert np.abs(img[cy, cx] - np.array(COLOURS[t.colour])).max() < 30
    assert t.shape in SHAPES and t.position in POSITIONS
    corner = img[2, 2]
    assert np.abs(corner - np.array([246, 244, 238])).max() < 5


def test_toy_world_suite_file_is_what_the_generator_makes(tmp_path):
    from harness.suites import BUILTIN_SUITES_DIR, load_suite
    from harness.toyworld.suite import MIX, write_toy_world_suite

    fresh = write_toy_world_suite(tmp_path / "toy-world.yaml")
    assert fresh.read_text() == (BUILTIN_SUITES_DIR / "toy-world.yaml").read_text()
    suite = load_suite({"name": "toy-world", "file": "toy-world.yaml"})
    assert len(suite.prompts) == sum(MIX.values())
    unseen = [p for p in suite.prompts if "split:unseen" in p.tags]
    assert len(unseen) >= MIX["single-unseen"]
    words = [p for p in suite.prompts if "category:word" in p.tags]
    assert all(p.expected_text and f'"{p.expected_text}"' in p.text for p in words)
    assert all(p.meta["attributes"]["kind"] for p in suite.prompts)


def test_a_mirrored_scene_renders_as_the_flipped_image_with_left_and_right_swapped():
    import pytest

    from harness.toyworld.world import mirror, mirror_position

    assert [mirror_position(p) for p in POSITIONS] == [
        "top right", "top left", "centre", "bottom right", "bottom left"]
    rng = random.Random(4)
    for kind in ("single", "pair", "count"):
        for _ in range(6):
            s = sample_scene(rng, "eval", kind=kind)
            m = mirror(s)
            assert [(t.shape, t.colour) for t in m.things] == [(t.shape, t.colour) for t in s.things]
            for a, b in zip(s.things, m.things, strict=True):
                assert b.xy == (1 - a.xy[0], a.xy[1])
                assert b.position == (a.position and mirror_position(a.position))
            # Every toy shape is symmetric about its vertical axis: the flipped render is the
            # mirrored scene's render (up to antialiasing at the edges).
            flipped = np.asarray(render(s, 64))[:, ::-1].astype(int)
            again = np.asarray(render(m, 64)).astype(int)
            assert np.abs(flipped - again).mean() < 1.0
            assert [t.position for t in mirror(m).things] == [t.position for t in s.things]
            assert np.allclose([t.xy for t in mirror(m).things], [t.xy for t in s.things])
    with pytest.raises(ValueError, match="word scene"):
        mirror(sample_scene(rng, "eval", kind="word"))
