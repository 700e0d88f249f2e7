"""The toy VLM's generated training rows: answers re-derived from the checker's reading, the
caption share gated as questions_toy gates it, cached generated sets reused by prefix, and the
recipe's cosine learning-rate decay."""

import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.toyworld import questions as Q
from harness.toyworld import world
from harness.zoo import train as T
from harness.zoo import vlm_data as V


def _every_check() -> dict[str, dict]:
    """Question words -> check, for every atomic question of the toy world (to read rows back)."""
    out = {}
    for c in world.COLOURS:
        for s in world.SHAPES:
            out[Q.phrase({"exists": {"shape": s}})] = {"exists": {"shape": s}}
            out[Q.phrase({"exists": {"shape": s, "colour": c}})] = {"exists": {"shape": s, "colour": c}}
            for p in world.POSITIONS:
                chk = {"exists": {"shape": s, "colour": c, "position": p}}
                out[Q.phrase(chk)] = chk
            for n in (1, 2, 3):
                chk = {"count": {"shape": s, "colour": c, "n": n}}
                out[Q.phrase(chk)] = chk
    return out


@pytest.fixture(scope="module")
def renders_as_generated():
    """Renders of the generated set's scenes, read by the checker: a GeneratedSet without a generator."""
    scenes = V.scenes(24)
    images = [world.render(s, 64) for s in scenes]
    return V.GeneratedSet(np.stack([np.asarray(im) for im in images]), scenes,
                          [Q.image_content(im) for im in images], ["render"] * len(scenes))


def test_scenes_are_training_split_objects_and_reproducible():
    a, b = V.scenes(30), V.scenes(60)
    assert a == b[:30]  # a larger set starts with the smaller one
    assert {s.kind for s in b} == {"single", "pair", "count"}
    for s in b:
        for t in s.things:
            assert (t.colour, t.shape) not in world.UNSEEN


def test_caption_share_is_the_gated_share_of_dsg_questions():
    rng = random.Random(3)
    single = world.sample_scene(rng, "train", kind="single")
    content = Q.scene_content(single)
    assert T.caption_share(single, content) == 1.0
    t = single.things[0]
    other_colour = next(c for c in world.COLOURS if c != t.colour)
    wrong_colour = replace(single, things=(replace(t, colour=other_colour),))
    # Entity yes; colour no; position gated by the colour question: 1 of 3.
    assert T.caption_share(wrong_colour, content) == pytest.approx(1 / 3)
    other_shape = next(s for s in world.SHAPES if s != t.shape)
    assert T.caption_share(replace(single, things=(replace(t, shape=other_shape),)), content) == 0.0
    count = world.sample_scene(rng, "train", kind="count")
    n = len(count.things)
    more = replace(count, things=count.things + (count.things[0],) * (3 - n)) if n < 3 else None
    assert T.caption_share(count, Q.scene_content(count)) == 1.0
    if more is not None:  # right shape and colour, wrong number: 1 of 2
        assert T.caption_share(more, Q.scene_content(count)) == 0.5


def test_generated_rows_answer_what_the_checker_reads(renders_as_generated):
    g = renders_as_generated
    checks = _every_check()
    r = random.Random(0)
    n_vqa = n_atomic = 0
    for _ in range(400):
        k = r.randrange(len(g))
        state = r.getstate()
        q, t = T.generated_question(r, g, k)
        if q.startswith("Does this figure show"):
            n_vqa += 1
            assert 0.0 <= t <= 1.0
            continue
        n_atomic += 1
        assert t in (0.0, 1.0)
        assert t == float(bool(Q.answer(checks[q], g.contents[k]))), (q, state)
    assert n_vqa > 60 and n_atomic > 200
    # The prompt's own caption on a faithful render: every DSG question holds.
    own = [T.caption_share(s, c) for s, c in zip(g.scenes, g.contents, strict=True)]
    assert np.mean(own) > 0.9


def test_a_cached_larger_set_serves_a_smaller_one(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    big = np.random.default_rng(0).integers(0, 255, size=(5, 64, 64, 3), dtype=np.uint8)
    path = V._cache(T.ZOO_DIR, "toy-dit", 8)
    np.savez(path.with_suffix(".partial.npz"), images=big)  # an interrupted run of 8
    got = V.generate(T.ZOO_DIR, "toy-dit", 3, log=lambda *_: None)  # no pipeline is loaded
    assert np.array_equal(got, big[:3])
    assert V._cache(T.ZOO_DIR, "toy-dit", 3).exists()


def test_load_reads_each_pool_and_flags_images_whose_checker_reading_is_doubtful(tmp_path, monkeypatch):
    """Readings and doubts are computed once per cached set, per pool, in recipe order; the
    trainer oversamples the doubtful ones by ``doubt_weight``."""
    from PIL import ImageDraw

    from harness.toyworld import checker

    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    clean = [np.asarray(world.render(s, 64)) for s in V.scenes(2, "all")]
    rounded = Image.new("RGB", (64, 64), world.BACKGROUND)  # square and circle overlap it alike
    ImageDraw.Draw(rounded).rounded_rectangle((10, 10, 30, 30), radius=6, fill=world.COLOURS["blue"])
    np.savez(V._cache(T.ZOO_DIR, "toy-dit", 3, "all"), images=np.stack([*clean, np.asarray(rounded)]))
    np.savez(V._cache(T.ZOO_DIR, "toy-dit", 2), images=np.stack(clean))
    g = V.load(T.ZOO_DIR, {"toy-dit": {"train": 2, "all": 3}}, log=lambda *_: None)
    assert len(g) == 5 and g.scenes == V.scenes(2) + V.scenes(3, "all")
    assert g.doubtful.tolist() == [False, False, False, False, True]
    assert g.doubtful.tolist() == [bool(checker.doubts(Image.fromarray(a))) for a in g.images]
    again = V.load(T.ZOO_DIR, {"toy-dit": {"train": 2, "all": 3}}, log=lambda *_: None)  # from the cache
    assert again.doubtful.tolist() == g.doubtful.tolist() and again.contents == g.contents
    assert len(list(tmp_path.glob("zoo/*.doubts.json"))) == 2


def test_the_all_pool_covers_every_colour_shape_pair_the_benchmark_never_sees():
    """The judge must know the pairs the generators' training split leaves out (their held-out
    prompts use them): the ``all`` pool draws every pair, reproducibly, apart from the ``train``
    pool and from the quality benchmark's held-out scenes, and caches under its own name."""
    import importlib.util

    a, b = V.scenes(300, "all"), V.scenes(600, "all")
    assert a == b[:300]
    pairs = {(t.colour, t.shape) for s in b for t in s.things}
    assert pairs >= world.UNSEEN and len(pairs) == len(world.COLOURS) * len(world.SHAPES)
    assert {s.kind for s in b} == {"single", "pair", "count"}
    assert V.scenes(50, "train") != a[:50] and V.prompts(a[:5], "all") == V.prompts(b[:5], "all")
    repo = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("vlm_quality", repo / "benchmarks" / "vlm_quality.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    held = bench.held_out(96)
    assert not set(held) & (set(b) | set(V.scenes(600)))  # scenes carry their jittered positions
    assert V._cache(T.ZOO_DIR, "toy-dit", 8, "all").name.startswith("vlm-all-toy-dit-")
    assert V._cache(T.ZOO_DIR, "toy-dit", 8).name.startswith("vlm-train-toy-dit-")  # as before
    assert V.pools(5) == {"train": 5} and V.pools({"all": 3}) == {"all": 3}
    with pytest.raises(ValueError, match="no generated-image pool 'al'.*all"):
        V.scenes(3, "al")


def test_lr_decays_by_cosine_to_the_floor_at_the_target():
    recipe = T.RECIPES["toy-vlm"]
    prog = T.Progress(name="toy-vlm")
    f = T._lr_lambda(10, recipe, prog, total=1000)
    assert f(0) == pytest.approx(0.1)  # warmup still applies
    prog.step = 0
    assert f(50) == pytest.approx(1.0)
    prog.step = 500
    assert f(50) == pytest.approx(recipe.lr_floor + (1 - recipe.lr_floor) * 0.5)
    prog.step = 1000
    assert f(50) == pytest.approx(recipe.lr_floor)
    prog.step = 250
    assert f(50) == pytest.approx(recipe.lr_floor + (1 - recipe.lr_floor) * 0.5 * (1 + math.cos(math.pi / 4)))
    # Recipes without a floor keep the constant rate after warmup.
    g = T._lr_lambda(10, T.RECIPES["toy-unet"], prog, total=1000)
    assert g(50) == 1.0


def test_mirror_adds_each_image_flipped_read_again_by_the_checker(tmp_path, monkeypatch):
    """``mirror``: twice the generated images at no sampling cost; the flipped copies carry the
    mirrored scene (the prompt, as the training rows use it) and the checker's reading of the
    flipped pixels, cached beside the originals' readings."""
    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    sc = V.scenes(6, "all")
    ims = np.stack([np.asarray(world.render(s, 64)) for s in sc])
    np.savez(V._cache(T.ZOO_DIR, "toy-dit", 6, "all"), images=ims)
    plain = V.load(T.ZOO_DIR, {"toy-dit": {"all": 6}}, log=lambda *_: None)
    g = V.load(T.ZOO_DIR, {"toy-dit": {"all": 6}}, log=lambda *_: None, mirror=True)
    assert len(plain) == 6 and len(g) == 12 and g.sources == ["toy-dit"] * 12
    assert np.array_equal(g.images[:6], ims) and np.array_equal(g.images[6:], ims[:, :, ::-1])
    assert g.scenes == sc + [world.mirror(s) for s in sc] and g.contents[:6] == plain.contents
    assert g.contents[6:] == [Q.image_content(Image.fromarray(a)) for a in g.images[6:]]
    for s, c in zip(sc, g.contents[6:], strict=True):  # the checker sees left and right swapped
        if s.kind != "count":
            assert sorted(o["position"] for o in c["objects"]) == sorted(
                world.mirror_position(t.position) for t in s.things)
    assert len(list(tmp_path.glob("zoo/*-mirror.contents.json"))) == 1
    assert len(list(tmp_path.glob("zoo/*-mirror.doubts.json"))) == 1


def test_generated_position_rows_answer_what_the_checker_reads(renders_as_generated):
    g = renders_as_generated
    checks = _every_check()
    r = random.Random(1)
    placed = 0
    for _ in range(300):
        k = r.randrange(len(g))
        q, t = T.generated_question(r, g, k, position_share=0.6)
        if q.startswith("Does this figure show"):
            continue
        assert t == float(bool(Q.answer(checks[q], g.contents[k]))), q
        placed += " in the " in q
    assert placed > 150


def test_warps_add_wobbled_copies_read_again_by_the_checker(tmp_path, monkeypatch):
    """A warp moves pixels by a pixel or two along a smooth field: no spread leaves the image as
    it is, a seed gives the same field again, a shape stays where it was, and each copy carries
    the checker's reading of its own pixels (near a threshold the wobble flips it)."""
    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    sc = V.scenes(6, "all")
    ims = np.stack([np.asarray(world.render(s, 64)) for s in sc])
    assert np.array_equal(V.warp(ims, 1, pixels=0.0), ims)
    w1, w2 = V.warp(ims, 1), V.warp(ims, 2)
    assert np.array_equal(w1, V.warp(ims, 1)) and not np.array_equal(w1, w2)
    change = np.abs(w1.astype(int) - ims).mean()
    assert 0.5 < change < 15
    np.savez(V._cache(T.ZOO_DIR, "toy-dit", 6, "all"), images=ims)
    g = V.load(T.ZOO_DIR, {"toy-dit": {"all": 6}}, log=lambda *_: None, mirror=True, warps=2)
    assert len(g) == 24 and g.scenes == sc + [world.mirror(s) for s in sc] + sc + sc
    assert np.array_equal(g.images[12:18], w1) and np.array_equal(g.images[18:], w2)
    assert g.contents[12:] == [Q.image_content(Image.fromarray(a)) for a in g.images[12:]]
    assert g.doubtful.tolist()[12:] == [bool(checker_doubts(a)) for a in g.images[12:]]
    for s, c in zip(sc, g.contents[12:18], strict=True):  # a wobble, not a move
        if s.kind == "single":
            assert [o["position"] for o in c["objects"]] in ([], [s.things[0].position])
    assert len(list(tmp_path.glob("zoo/*-warp*.contents.json"))) == 2


def checker_doubts(a):
    from harness.toyworld import checker

    return checker.doubts(Image.fromarray(a))


def test_shifts_add_moved_copies_of_originals_and_mirrors_read_again(tmp_path, monkeypatch):
    """A shift copies pixels by a whole offset of at most SHIFT_PIXELS, border repeated: no
    offset returns the image, a seed gives the same offsets again, inside the image every pixel
    is the original's moved; each copy (of the originals and of the mirrored images) carries the
    checker's reading of its own pixels, which keeps the objects a render has."""
    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    sc = V.scenes(6, "all")
    ims = np.stack([np.asarray(world.render(s, 64)) for s in sc])
    assert np.array_equal(V.shift(ims, 1, pixels=0), ims)
    s1 = V.shift(ims, 1)
    assert np.array_equal(s1, V.shift(ims, 1)) and not np.array_equal(s1, V.shift(ims, 2))
    p = V.SHIFT_PIXELS
    for a, b in zip(ims, s1, strict=True):  # some whole offset maps the inside exactly
        moved = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)
                 if np.array_equal(b[p + dy:64 - p + dy, p + dx:64 - p + dx], a[p:64 - p, p:64 - p])]
        assert moved
    np.savez(V._cache(T.ZOO_DIR, "toy-dit", 6, "all"), images=ims)
    g = V.load(T.ZOO_DIR, {"toy-dit": {"all": 6}}, log=lambda *_: None, mirror=True, shifts=2)
    mirrored = [world.mirror(s) for s in sc]
    assert len(g) == 36 and g.scenes == sc + mirrored + sc + mirrored + sc + mirrored
    assert np.array_equal(g.images[12:18], V.shift(ims, 1000)) and np.array_equal(
        g.images[18:24], V.shift(np.ascontiguousarray(ims[:, :, ::-1]), 1001))
    assert g.contents[12:] == [Q.image_content(Image.fromarray(a)) for a in g.images[12:]]
    assert g.doubtful.tolist()[12:] == [bool(checker_doubts(a)) for a in g.images[12:]]
    count = [len(c["objects"]) for c in g.contents]
    assert count[12:18] == count[:6] and count[18:24] == count[6:12]
    assert len(list(tmp_path.glob("zoo/*-shift*.contents.json"))) == 4


def test_resize_vision_interpolates_positions_and_keeps_every_other_weight(tmp_path):
    """Same size: the same model (bicubic onto the same grid is the identity), logits equal.
    Twice the size: the processor hands the tower 4x the patches, the position grid is the old
    one interpolated (class token kept, the grid's mean kept), every other weight is copied; the
    result saves and loads through the Auto classes like any VLM. Other families refuse."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from harness.errors import ConfigError
    from harness.zoo import vlm

    model, proc = vlm.build("llava", ["red", "circle"], image_size=32, patch=8)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))

    def logits(m, p):
        enc = p(images=[image], text=["USER: <image>\nIs there a red circle? ASSISTANT:"],
                return_tensors="pt")
        with torch.no_grad():
            return m(**enc).logits[0, -1], enc["input_ids"].shape[1]

    before, n_before = logits(model, proc)
    same, proc = vlm.resize_vision(model, proc, 32)
    after, _ = logits(same, proc)
    assert torch.allclose(before, after, atol=1e-5)
    big, proc = vlm.resize_vision(model, proc, 64)
    out, n_after = logits(big, proc)
    assert n_after - n_before == 64 - 16 and out.shape == before.shape
    old = model.model.vision_tower.embeddings.position_embedding.weight.detach()
    new = big.model.vision_tower.embeddings.position_embedding.weight.detach()
    assert new.shape == (8 * 8 + 1, old.shape[1]) and torch.equal(new[0], old[0])
    assert torch.allclose(new[1:].mean(0), old[1:].mean(0), atol=0.02)
    a, b = model.state_dict(), big.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "position" not in k)
    vlm.save(big, proc, tmp_path / "m")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert loaded.config.vision_config.image_size == 64
    assert AutoProcessor.from_pretrained(tmp_path / "m").image_processor.crop_size["height"] == 64
    with pytest.raises(ConfigError, match="whole number of 8 px patches"):
        vlm.resize_vision(model, proc, 60)
    qwen, qproc = vlm.build("qwen2_vl", ["red"], image_size=32)
    with pytest.raises(ConfigError, match="only llava"):
        vlm.resize_vision(qwen, qproc, 64)


def test_deepen_adds_blocks_and_units_that_change_nothing_until_trained(tmp_path):
    """Blocks added to the vision tower and the decoder and widened MLPs: the logits are the old
    model's exactly, every old weight sits where it was, the added parts train (a step moves the
    logits), and the result saves and loads through the Auto classes. Fewer than the model has,
    or another family, refuse."""
    import torch
    from transformers import AutoModelForImageTextToText

    from harness.errors import ConfigError
    from harness.zoo import vlm

    model, proc = vlm.build("llava", ["red", "circle"], image_size=32, patch=8)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    enc = proc(images=[image], text=["USER: <image>\nIs there a red circle? ASSISTANT:"],
               return_tensors="pt")
    vc, tc = model.config.vision_config, model.config.text_config
    big = vlm.deepen(model, vision_layers=vc.num_hidden_layers + 2, vision_mlp=vc.intermediate_size * 2,
                     text_layers=tc.num_hidden_layers + 1, text_mlp=tc.intermediate_size + 8)
    assert len(big.model.vision_tower.encoder.layers) == vc.num_hidden_layers + 2
    assert len(big.model.language_model.layers) == tc.num_hidden_layers + 1
    with torch.no_grad():
        before, after = model(**enc).logits, big(**enc).logits
    assert torch.equal(before, after)
    a, b = model.state_dict(), big.state_dict()
    for k, v in a.items():
        assert torch.equal(b[k][tuple(slice(0, n) for n in v.shape)], v), k
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in model.parameters())
    big.train()
    opt = torch.optim.SGD(big.parameters(), lr=0.5)
    for _ in range(2):  # the zero output weights move first, the rest of an added block after
        opt.zero_grad()
        big(**enc).logits[0, -1].logsumexp(-1).backward()
        opt.step()
    added = big.model.vision_tower.encoder.layers[-1]
    assert added.mlp.fc2.weight.abs().sum() > 0 and added.mlp.fc1.weight.grad.abs().sum() > 0
    vlm.save(big.eval(), proc, tmp_path / "m")
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "m")
    assert loaded.config.text_config.intermediate_size == tc.intermediate_size + 8
    same = vlm.deepen(model)
    with torch.no_grad():
        assert torch.equal(same(**enc).logits, before)
    with pytest.raises(ConfigError, match="fewer than the model's"):
        vlm.deepen(model, text_layers=1)
    qwen, _ = vlm.build("qwen2_vl", ["red"], image_size=32)
    with pytest.raises(ConfigError, match="only llava"):
        vlm.deepen(qwen, text_layers=9)


def test_stages_pick_the_latest_curve_begun_and_stop_at_the_next():
    """``grow`` and ``restarts`` of the toy VLM's recipe: the curve in force is the latest stage
    begun; a session stops where the next one begins; a restart warms up from its own step even
    when the scheduler carries on from the saved state."""
    recipe = T.RECIPES["toy-vlm"]
    grow = dict(at=100, size=128, lr=recipe.lr / 4, warmup=30, span=500)
    restarts = [dict(at=400, lr=recipe.lr / 10, warmup=20, span=900)]
    fake = type("t", (), {"grow": grow, "restarts": restarts, "recipe": recipe,
                          "to_grow": lambda self: {"size": 128}})()
    vlm_trainer = T.TRAINERS["vlm"]
    assert vlm_trainer.stage_end(fake, 0) == 100 and vlm_trainer.stage_end(fake, 100) == 400
    assert vlm_trainer.stage_end(fake, 400) is None
    assert vlm_trainer.schedule(fake, 50) == {"warmup": recipe.warmup}
    assert vlm_trainer.schedule(fake, 399) == {"warmup": 30, "start": 100, "peak": 0.25, "span": 500}
    assert vlm_trainer.schedule(fake, 400) == {"warmup": 20, "start": 400, "peak": 0.1, "span": 900}
    prog = T.Progress(name="toy-vlm", step=405)
    f = T._lr_lambda(recipe=recipe, prog=prog, total=10_000, **vlm_trainer.schedule(fake, 400))
    cos = recipe.lr_floor + (1 - recipe.lr_floor) * 0.5 * (1 + math.cos(math.pi * 5 / 900))
    assert f(300) == pytest.approx(0.1 * 6 / 20 * cos)  # the scheduler is 300 steps in, the stage 5
    prog.step = 500
    assert f(400) == pytest.approx(0.1 * (recipe.lr_floor + (1 - recipe.lr_floor) * 0.5
                                          * (1 + math.cos(math.pi * 100 / 900))))
    # Grown already: the grow boundary no longer stops a session.
    grown = type("t", (), {"grow": grow, "restarts": [], "recipe": recipe, "to_grow": lambda self: {}})()
    assert vlm_trainer.stage_end(grown, 0) is None
