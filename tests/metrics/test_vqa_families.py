"""The VLM judge (VQAScore and question scoring) on tiny random models of thirteen more
transformers families (Qwen2.5-VL, Qwen3-VL, Qwen3.5, LLaVA-NeXT, LLaVA-OneVision, InternVL,
Mistral 3, PaliGemma, Gemma 3, Gemma 4, Idefics2, Idefics3, SmolVLM), each built from config,
saved with ``save_pretrained`` and loaded by the metric from the folder through the generic Auto
classes. The reference is independent of the metric's code: a fresh
``AutoProcessor`` / ``AutoModelForImageTextToText`` load, the family's own chat template (or, for
PaliGemma, the bare question the processor prefixes itself), one image per forward pass with no
padding, and a softmax over the two answer ids read from the vocabulary."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image

from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.metrics.questions import QuestionScore  # noqa: E402
from harness.metrics.vqa import DEFAULT_TEMPLATE, VQAScore  # noqa: E402
from harness.zoo import vlm  # noqa: E402
from tests.metrics import vlm_families  # noqa: E402

PROMPTS = ["a red circle in the top left", "two blue squares", 'a sign that says "STOP"']
QUESTIONS = [{"id": "1", "question": "Is there a red circle?"},
             {"id": "2", "question": "Is the circle red?", "parents": ["1"]},
             {"id": "3", "question": "Is there a blue square?", "answer": "no"}]
CLASSES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen3_vl": "Qwen3VLForConditionalGeneration",
           "llava_onevision": "LlavaOnevisionForConditionalGeneration",
           "internvl": "InternVLForConditionalGeneration", "paligemma": "PaliGemmaForConditionalGeneration",
           "gemma3": "Gemma3ForConditionalGeneration", "idefics3": "Idefics3ForConditionalGeneration",
           "smolvlm": "SmolVLMForConditionalGeneration", "qwen3_5": "Qwen3_5ForConditionalGeneration",
           "llava_next": "LlavaNextForConditionalGeneration", "mistral3": "Mistral3ForConditionalGeneration",
           "idefics2": "Idefics2ForConditionalGeneration", "gemma4": "Gemma4ForConditionalGeneration"}


def _images(n: int) -> list[Image.Image]:
    # Different sizes: tiling / native-resolution families give each a different number of image
    # tokens, so a batch is really left padded.
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 9 * i, 48 - 4 * i, 3), dtype=np.uint8))
            for i in range(n)]


FAMILIES = sorted(vlm_families.FAMILIES)
# Question scoring goes through the same judge (prompt, inputs, forward) as VQAScore; by default
# it runs on the families whose inputs differ most (no chat template, images counted per sample,
# a linear-attention decoder), on the rest under -m slow.
QUESTION_FAMILIES = ("paligemma", "gemma3", "qwen3_5")
_built: dict[str, object] = {}


def _folder(name: str, tmp_path_factory):
    if name == "smolvlm":
        pytest.importorskip("num2words", reason="SmolVLMProcessor needs num2words")
    if name not in _built:
        texts = PROMPTS + [DEFAULT_TEMPLATE] + [q["question"] for q in QUESTIONS]
        model, proc = vlm_families.build(name, vlm.words_of(texts), seed=FAMILIES.index(name))
        _built[name] = vlm.save(model, proc, tmp_path_factory.mktemp(name))
    return _built[name]


@functools.cache
def _loaded(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder).eval()


def _bare_p_yes(name: str, folder, image, question: str) -> float:
    proc, model = _loaded(folder)
    if name in vlm_families.NO_CHAT:
        text = question
    else:
        text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                      {"type": "text", "text": question}]}],
                                        add_generation_prompt=True, tokenize=False)
    enc = proc(text=[text], images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits[0, -1].double()
    v = proc.tokenizer.get_vocab()
    return float(torch.softmax(logits[[v["Yes"], v["No"]]], -1)[0])


def _settings(name, folder, **kw):
    return {"checkpoint": str(folder), "device": "cpu", "chat": name not in vlm_families.NO_CHAT, **kw}


@pytest.mark.parametrize("name", FAMILIES)
def test_vqascore_matches_a_bare_forward(name, tmp_path_factory):
    folder = _folder(name, tmp_path_factory)
    images = _images(len(PROMPTS))
    m = VQAScore(name="vqascore", settings=_settings(name, folder, batch_size=2))
    out = m.score_images([ScoreInput(f"k{i}", "m", im, {"text": p})
                          for i, (im, p) in enumerate(zip(images, PROMPTS, strict=True))])
    want = [_bare_p_yes(name, folder, im, DEFAULT_TEMPLATE.replace("{prompt}", p))
            for im, p in zip(images, PROMPTS, strict=True)]
    assert [v for v, _ in out] == pytest.approx(want, abs=1e-5)
    assert len({round(v, 6) for v, _ in out}) == len(out)  # image and prompt reach the number
    j = m.judge()
    assert type(j.model).__name__ == CLASSES[name]
    vocab = j.processor.tokenizer.get_vocab()
    assert out[0][1]["yes_token"] == [vocab["Yes"], "Yes"] and out[0][1]["no_token"] == [vocab["No"], "No"]


@pytest.mark.parametrize("name", [n if n in QUESTION_FAMILIES else pytest.param(n, marks=pytest.mark.slow)
                                  for n in FAMILIES])
def test_questions_use_the_same_judge(name, tmp_path_factory):
    folder = _folder(name, tmp_path_factory)
    image = _images(1)[0]
    m = QuestionScore(name="questions", settings=_settings(name, folder, batch_size=2))
    value, extra = m.score_images([ScoreInput("k", "m", image, {"id": "p", "text": "x",
                                                                "meta": {"questions": QUESTIONS}})])[0]
    p_yes = [_bare_p_yes(name, folder, image, q["question"]) for q in QUESTIONS]
    assert [r["p_yes"] for r in extra["questions"]] == pytest.approx(p_yes, abs=1e-5)
    p = [p_yes[0], p_yes[1] if p_yes[0] >= 0.5 else 0.0, 1 - p_yes[2]]
    assert value["soft"] == pytest.approx(sum(p) / 3, abs=1e-5)
