"""VQAScore on tiny random VLMs of two real transformers families (Qwen2-VL and LLaVA), built
from config, saved and loaded by folder, against an independent computation: the bare model's
forward on one image at a time and a softmax over the two answer token ids taken straight from
the vocabulary."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.metrics.clip_score import ModelUnavailable, weights_sha256  # noqa: E402
from harness.metrics.vqa import DEFAULT_TEMPLATE, VQAScore  # noqa: E402
from harness.zoo import vlm  # noqa: E402

PROMPTS = ["a red circle in the top left", "two blue squares", 'a sign that says "STOP"',
           "a green star and a yellow triangle", "one red square"]


def _images(n: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 6 * i, 48, 3), dtype=np.uint8))
            for i in range(n)]


def _items(images, prompts):
    return [ScoreInput(f"k{i}", "m", im, {"text": p})
            for i, (im, p) in enumerate(zip(images, prompts, strict=True))]


@pytest.fixture(scope="module", params=vlm.ARCHS)
def folder(request, tmp_path_factory):
    model, proc = vlm.build(request.param, vlm.words_of(PROMPTS + [DEFAULT_TEMPLATE]), seed=1)
    return vlm.save(model, proc, tmp_path_factory.mktemp(request.param))


def _metric(folder, **kw) -> VQAScore:
    return VQAScore(name="vqascore", settings={"checkpoint": str(folder), "device": "cpu",
                                               "batch_size": 2, **kw})


def _bare(folder, images, prompts, template=DEFAULT_TEMPLATE) -> list[float]:
    """P(yes) by hand: one image per forward pass (no padding), softmax over the two ids."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    yes, no = proc.tokenizer.get_vocab()["Yes"], proc.tokenizer.get_vocab()["No"]
    out = []
    for im, p in zip(images, prompts, strict=True):
        q = template.replace("{prompt}", p)
        text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": q}]}],
                                        add_generation_prompt=True, tokenize=False)
        enc = proc(text=[text], images=[im], return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0, -1].double()
        out.append(float(1 / (1 + torch.exp(logits[no] - logits[yes]))))
    return out


def test_matches_bare_forward_per_image(folder):
    images = _images()
    m = _metric(folder)
    out = m.score_images(_items(images, PROMPTS))  # 5 images in batches of 2, left padded
    want = _bare(folder, images, PROMPTS)
    assert [v for v, _ in out] == pytest.approx(want, abs=1e-5)
    assert len(set(round(v, 6) for v, _ in out)) > 1  # the images and prompts change the number
    e = out[0][1]
    vocab = m.judge().processor.tokenizer.get_vocab()
    assert e["yes_token"] == [vocab["Yes"], "Yes"] and e["no_token"] == [vocab["No"], "No"]
    assert e["question"] == DEFAULT_TEMPLATE.replace("{prompt}", PROMPTS[0])
    assert e["weights_sha256"] == weights_sha256(folder) and e["dtype"] == "float32"
    assert 0 < e["p_yes_vocab"] < 1
    # Decoding on threads ahead of the model or in this thread: the same numbers.
    again = _metric(folder, workers=0, batch_size=5).score_images(_items(images, PROMPTS))
    assert [v for v, _ in again] == pytest.approx(want, abs=1e-5)


def test_template_and_answers_change_the_number_and_the_hash(folder):
    images = _images(3)
    tpl = "Is this '{prompt}'? Answer yes or no."
    m = _metric(folder, template=tpl)
    out = m.score_images(_items(images, PROMPTS[:3]))
    assert [v for v, _ in out] == pytest.approx(_bare(folder, images, PROMPTS[:3], tpl), abs=1e-5)
    base = _metric(folder)
    assert m.settings_hash() != base.settings_hash()
    assert _metric(folder, batch_size=7, workers=0).settings_hash() == base.settings_hash()
    low = _metric(folder, answers=["yes", "no"]).score_images(_items(images[:1], PROMPTS[:1]))
    assert low[0][1]["yes_token"][1] == "yes" and low[0][0] != pytest.approx(out[0][0])


def test_describe_stores_weights_template_and_notes(folder, tmp_path):
    import shutil

    d = _metric(folder).describe()
    assert d["weights"] == "sha256:" + weights_sha256(folder)
    assert d["template"] == DEFAULT_TEMPLATE and d["answers"] == ["Yes", "No"] and d["dtype"] == "auto"
    assert "device" not in d and "batch_size" not in d and d["checkpoint"] == folder.name
    assert "P(yes)" in d["how_to_read"]["lines"][""]
    moved = tmp_path / folder.name
    shutil.copytree(folder, moved)
    assert _metric(moved).settings_hash() == _metric(folder).settings_hash()


def test_empty_prompts_and_unreadable_images_are_skipped_not_errors(folder, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    items = [ScoreInput("a", "m", _images(1)[0], {"text": ""}), ScoreInput("b", "m", str(bad), {"text": "x"}),
             ScoreInput("c", "m", _images(1)[0], {"text": PROMPTS[0]})]
    out = _metric(folder).score_images(items)
    assert out[0] == (None, {"skipped": "empty prompt"})
    assert out[1][0] is None and "unreadable image" in out[1][1]["skipped"]
    assert out[2][0] == pytest.approx(_bare(folder, _images(1), PROMPTS[:1])[0], abs=1e-5)


def test_construction_checks_settings_and_loads_nothing(tmp_path):
    with pytest.raises(ConfigError, match="set model"):
        VQAScore(name="v")
    with pytest.raises(ConfigError, match="no such folder"):
        VQAScore(name="v", settings={"checkpoint": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="prompt"):
        VQAScore(name="v", settings={"model": "a/b", "template": "Is it?"})
    with pytest.raises(ConfigError, match="dtype.*'float16'"):
        VQAScore(name="v", settings={"model": "a/b", "dtype": "fp16"})
    with pytest.raises(ConfigError, match="answers"):
        VQAScore(name="v", settings={"model": "a/b", "answers": ["Yes"]})
    m = VQAScore(name="v", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct", "revision": "main"})
    assert m._judge is None and m.describe()["weights"] == "hf:Qwen/Qwen2.5-VL-7B-Instruct@main"


def test_hub_model_offline_fails_fast_with_the_fix(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    m = VQAScore(name="vqascore", settings={"model": "Qwen/Qwen2.5-VL-7B-Instruct"})
    t = time.perf_counter()
    with pytest.raises(ModelUnavailable) as e:
        m.score_images(_items(_images(1), PROMPTS[:1]))
    assert time.perf_counter() - t < 1.0
    msg = str(e.value)
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in msg and "metrics.vqascore.settings.checkpoint=" in msg


def test_unknown_answer_word_names_the_setting(folder):
    m = _metric(folder, answers=["Absolutely", "No"])
    with pytest.raises(ConfigError, match="Absolutely"):
        m.score_images(_items(_images(1), PROMPTS[:1]))
