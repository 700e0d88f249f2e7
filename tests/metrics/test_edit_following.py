"""Edit following (VQAScore questions on what an edit must change and keep) on tiny random VLMs
of two real transformers families, built from config and loaded by folder, against an
independent computation: the bare model's forward on one image and one question at a time,
a softmax over the two answer token ids taken straight from the vocabulary, and the outputs'
formulas by hand. On the zoo's toy VLM, exact toy-world edits must beat returning the source."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.metrics.edit_following import EditFollowing, edit_claims  # noqa: E402
from harness.metrics.vqa import DEFAULT_TEMPLATE  # noqa: E402
from harness.toyworld.edits import edit_meta, edits  # noqa: E402
from harness.toyworld.world import render  # noqa: E402
from harness.zoo import vlm  # noqa: E402

CLAIMS = ["a red hat on the cat", "the cat's face", "the background", "a sign that says OPEN",
          "the post", "a blue box"]


@pytest.fixture(scope="module", params=vlm.ARCHS)
def folder(request, tmp_path_factory):
    model, proc = vlm.build(request.param, vlm.words_of(CLAIMS + [DEFAULT_TEMPLATE]), seed=2)
    return vlm.save(model, proc, tmp_path_factory.mktemp(request.param))


@functools.cache
def _loaded(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder).eval()


def _bare(folder, image, claim) -> float:
    """P(yes) by hand: one image and one question per forward pass."""
    proc, model = _loaded(folder)
    yes, no = proc.tokenizer.get_vocab()["Yes"], proc.tokenizer.get_vocab()["No"]
    q = DEFAULT_TEMPLATE.replace("{prompt}", claim)
    msg = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
    text = proc.apply_chat_template(msg, add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        logits = model(**proc(text=[text], images=[image], return_tensors="pt")).logits[0, -1].double()
    return float(1 / (1 + torch.exp(logits[no] - logits[yes])))


def _prompt(tmp_path, name, meta, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / f"{name}.png"
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(path)
    return {"id": name, "text": "edit it", "meta": meta,
            "controls": [{"kind": "edit_image", "path": str(path), "sha256": "x", "params": {}}]}


def test_claims_from_meta():
    assert edit_claims({"must_change": " a hat ", "must_keep": "the face, fur; the background;"}) == (
        "a hat", ["the face, fur", "the background"])
    assert edit_claims({"target_caption": "a red circle", "must_keep": ["a", " "]}) == ("a red circle", ["a"])
    assert edit_claims({"edit_type": "add"}) == (None, [])


def test_matches_bare_forward_per_question(folder, tmp_path):
    p1 = _prompt(tmp_path, "cat", {"must_change": CLAIMS[0], "must_keep": f"{CLAIMS[1]}; {CLAIMS[2]}"}, 0)
    p2 = _prompt(tmp_path, "sign", {"must_change": CLAIMS[3], "must_keep": [CLAIMS[4]]}, 1)
    p3 = _prompt(tmp_path, "box", {"target_caption": CLAIMS[5]}, 2)  # no must_keep
    rng = np.random.default_rng(9)
    ims = [Image.fromarray(rng.integers(0, 256, (40 + 4 * k, 40, 3), dtype=np.uint8)) for k in range(4)]
    items = [ScoreInput("a", "m", ims[0], p1), ScoreInput("b", "m", ims[1], p2),
             ScoreInput("c", "m", ims[2], p3),
             ScoreInput("d", "m2", ims[3], p1),  # another model's edit of the same source
             ScoreInput("e", "m", ims[0], {"id": "t2i", "text": "a cat"}),
             ScoreInput("f", "m", ims[0], {**p1, "meta": {"edit_type": "add"}})]
    m = EditFollowing(name="edit_following", settings={"checkpoint": str(folder), "device": "cpu",
                                                       "batch_size": 3, "dtype": "float32"})
    out = m.score_images(items)

    def src(p):
        return Image.open(p["controls"][0]["path"]).convert("RGB")

    for (values, extra), im, p in zip(out[:4], ims, [p1, p2, p3, p1], strict=True):
        change, keeps = edit_claims(p["meta"])
        follow = _bare(folder, im, change)
        before = _bare(folder, src(p), change)
        kept = [_bare(folder, im, k) for k in keeps]
        keep = sum(kept) / len(kept) if kept else None
        assert values["follow"] == pytest.approx(follow, abs=1e-5)
        assert values["lift"] == pytest.approx(follow - before, abs=1e-5)
        if keep is None:
            assert values["keep"] is None and values["overall"] is None
            assert "no meta.must_keep" in extra["note"]
        else:
            assert values["keep"] == pytest.approx(keep, abs=1e-5)
            assert values["overall"] == pytest.approx(math.sqrt(follow * keep), abs=1e-5)
        rows = extra["questions"]
        assert [r["role"] for r in rows] == ["change", "change"] + ["keep"] * len(keeps)
        assert rows[1]["image"] == "source"
        assert rows[0]["question"] == DEFAULT_TEMPLATE.replace("{prompt}", change)
        assert [r["p_yes"] for r in rows[2:]] == pytest.approx(kept, abs=1e-5)
    assert out[0][0] != out[3][0]  # two edits of one source: their own numbers, one source answer
    assert out[0][1]["questions"][1]["p_yes"] == out[3][1]["questions"][1]["p_yes"]
    assert out[4][0] == dict.fromkeys(("overall", "follow", "keep", "lift"))
    assert "no edit_image" in out[4][1]["skipped"]
    assert "must_change" in out[5][1]["skipped"]
    # The source, returned as the edit, gains nothing.
    (same, _), = m.score_images([ScoreInput("g", "m", src(p2), p2)])
    assert same["lift"] == pytest.approx(0.0, abs=1e-6)


def test_settings_are_checked_and_identified(folder):
    with pytest.raises(ConfigError, match="template"):
        EditFollowing(name="x", settings={"checkpoint": str(folder), "template": "no slot"})
    with pytest.raises(ConfigError, match="set model"):
        EditFollowing(name="x")
    a = EditFollowing(name="x", settings={"checkpoint": str(folder)})
    b = EditFollowing(name="x", settings={"checkpoint": str(folder), "template": "Is this '{prompt}'?"})
    assert a.settings_hash() != b.settings_hash()
    d = a.describe()
    assert d["weights"].startswith("sha256:") and d["outputs"][0] == ["overall", True] and "how_to_read" in d


def test_zoo_toy_vlm_credits_exact_toy_edits_over_the_source(tmp_path):
    from harness.toyworld.paths import resolve_path

    if not resolve_path("zoo:toy-vlm").is_dir():
        pytest.skip("zoo toy-vlm not present")
    perfect, copy = [], []
    for k, e in enumerate(edits(12, seed=3)):
        path = tmp_path / f"src{k}.png"
        render(e.source).save(path)
        prompt = {"id": f"e{k}", "text": e.instruction, "meta": edit_meta(e),
                  "controls": [{"kind": "edit_image", "path": str(path), "sha256": "x", "params": {}}]}
        perfect.append(ScoreInput(f"t{k}", "perfect", render(e.target), prompt))
        copy.append(ScoreInput(f"s{k}", "copy", Image.open(path), prompt))
    m = EditFollowing(name="edit_following_toy", settings={"checkpoint": "zoo:toy-vlm", "dtype": "float32",
                                                           "device": "cpu", "batch_size": 32})
    a, b = m.score_images(perfect), m.score_images(copy)
    assert all(v["lift"] == pytest.approx(0.0, abs=1e-6) for v, _ in b)
    # The exact edit shows what had to change more often than the untouched source does.
    assert np.mean([v["follow"] for v, _ in a]) > np.mean([v["follow"] for v, _ in b]) + 0.1
    assert np.mean([v["lift"] for v, _ in a]) > 0.1


def test_hub_model_offline_fails_in_preflight_with_the_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from harness.metrics.clip_score import ModelUnavailable

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    m = EditFollowing(name="edit_following", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct"})
    with pytest.raises(ModelUnavailable, match="metrics.edit_following.settings.checkpoint="):
        m.preflight()
