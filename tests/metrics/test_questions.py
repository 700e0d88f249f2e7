"""Question-based scoring on a tiny random Qwen2-VL built from config, against an independent
re-derivation: P(yes) of each question by a bare forward pass (one image, one question), then
the expected-answer flip, the DSG gating and the means computed by hand here."""

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

from harness.metrics.questions import CHOICE_TEMPLATE, QuestionScore, gate, normalise_questions  # noqa: E402
from harness.toyworld import questions as toyq  # noqa: E402
from harness.zoo import vlm  # noqa: E402

QUESTIONS = [
    {"id": "1", "question": "Is there a cat?", "category": "entity"},
    {"id": "2", "question": "Is the cat black?", "parents": ["1"], "category": "attribute"},
    {"id": "3", "question": "Is there a dog?", "answer": "no", "category": "entity"},
    {"id": "4", "question": "How many cats are there?", "answer": "two", "choices": ["one", "two"],
     "category": "count"},
]
WORDS = ["cat", "black", "dog", "How", "many", "cats", "are", "two", "one", "circle", "red", "exactly",
         "square", "top", "left", "sign", "say", "STOP", "Are", "three", "blue"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    texts = [q["question"] for q in QUESTIONS] + [CHOICE_TEMPLATE] + WORDS
    model, proc = vlm.build("qwen2_vl", vlm.words_of(texts), seed=3)
    return vlm.save(model, proc, tmp_path_factory.mktemp("qvlm"))


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 56, 3), dtype=np.uint8))


@functools.cache
def _bare(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder).eval()


def _bare_p_yes(folder, image, question) -> float:
    proc, model = _bare(folder)
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                  {"type": "text", "text": question}]}],
                                    add_generation_prompt=True, tokenize=False)
    with torch.no_grad():
        logits = model(**proc(text=[text], images=[image], return_tensors="pt")).logits[0, -1].double()
    v = proc.tokenizer.get_vocab()
    return float(torch.softmax(logits[[v["Yes"], v["No"]]], -1)[0])


def _metric(folder, **kw) -> QuestionScore:
    return QuestionScore(name="questions", settings={"checkpoint": str(folder), "device": "cpu",
                                                     "batch_size": 3, **kw})


def test_matches_hand_derivation_with_dependencies_no_answers_and_choices(folder):
    images = [_image(0), _image(1)]
    items = [ScoreInput(f"k{i}", "m", im, {"id": f"p{i}", "text": "two black cats",
                                           "meta": {"questions": QUESTIONS}}) for i, im in enumerate(images)]
    out = _metric(folder).score_images(items)
    for im, (value, extra) in zip(images, out, strict=True):
        asked = [QUESTIONS[0]["question"], QUESTIONS[1]["question"], QUESTIONS[2]["question"],
                 "How many cats are there? Is the answer 'two'? Please answer yes or no."]
        p_yes = [_bare_p_yes(folder, im, q) for q in asked]
        p = [p_yes[0], p_yes[1], 1 - p_yes[2], p_yes[3]]
        if p[0] < 0.5:  # the child of a failed parent counts 0
            p[1] = 0.0
        assert value["soft"] == pytest.approx(sum(p) / 4, abs=1e-5)
        assert value["hard"] == pytest.approx(sum(x >= 0.5 for x in p) / 4)
        want_gm = math.exp(sum(math.log(x) for x in p) / 4) if min(p) > 0 else 0.0
        assert value["soft_gm"] == pytest.approx(want_gm, abs=1e-5)
        rows = extra["questions"]
        assert [r["asked"] for r in rows] == asked
        assert [r["p_yes"] for r in rows] == pytest.approx(p_yes, abs=1e-5)
        assert extra["by_category"]["entity"] == pytest.approx((p[0] + p[2]) / 2, abs=1e-5)


def test_gate_follows_dsg_dependencies():
    qs = normalise_questions([{"id": "a", "question": "A?"}, {"id": "b", "question": "B?", "parents": ["a"]},
                              {"id": "c", "question": "C?", "parents": ["b"]},
                              {"id": "d", "question": "D?"}], "t")
    assert gate(qs, [0.4, 0.9, 0.9, 0.7]) == [(0.4, None), (0.0, "a"), (0.0, "b"), (0.7, None)]
    assert gate(qs, [0.6, 0.9, 0.8, 0.7]) == [(0.6, None), (0.9, None), (0.8, None), (0.7, None)]


def test_bad_question_sets_name_the_prompt_and_the_fix():
    with pytest.raises(ConfigError, match="'p1'.*depends on '9'"):
        normalise_questions([{"id": "1", "question": "A?", "parents": ["9"]}], "prompt 'p1'")
    with pytest.raises(ConfigError, match="appears twice"):
        normalise_questions([{"id": "1", "question": "A?"}, {"id": "1", "question": "B?"}], "p")
    with pytest.raises(ConfigError, match="needs a 'question'"):
        normalise_questions([{"id": "1"}], "p")


def test_toy_world_attributes_give_dsg_questions_and_prompts_without_any_are_skipped(folder):
    attrs = {"kind": "pair", "objects": [{"shape": "circle", "colour": "red", "position": "top left"},
                                         {"shape": "square", "colour": "blue", "position": "top right"}]}
    qs = toyq.questions_for(attrs)
    assert [q["question"] for q in qs[:3]] == ["Is there a circle?", "Is there a red circle?",
                                               "Is there a red circle in the top left?"]
    assert [q["parents"] for q in qs[:3]] == [[], ["1"], ["2"]]
    items = [ScoreInput("a", "m", _image(2), {"text": "x", "meta": {"attributes": attrs}}),
             ScoreInput("b", "m", _image(2), {"text": "x", "meta": {}})]
    out = _metric(folder).score_images(items)
    assert len(out[0][1]["questions"]) == 6 and out[0][0]["soft"] is not None
    assert out[1] == ({"soft": None, "hard": None, "soft_gm": None}, {"skipped": "prompt has no questions"})
    off = _metric(folder, from_attributes=False).score_images(items[:1])
    assert off[0][0]["soft"] is None


def test_toy_question_answers_follow_the_scene():
    from harness.toyworld import world

    scene = next(s for s in world.scenes("eval", 50) if s.kind == "count" and len(s.things) == 2)
    t = scene.things[0]
    content = toyq.scene_content(scene)
    assert toyq.answer({"count": {"shape": t.shape, "colour": t.colour, "n": 2}}, content) is True
    assert toyq.answer({"count": {"shape": t.shape, "colour": t.colour, "n": 3}}, content) is False
    assert toyq.answer({"sign": True}, content) is False
    for q in toyq.questions_for(scene.attributes()):
        assert toyq.answer(q["check"], content) is True
    # Training questions are balanced and their answers true of the scene.
    import random

    rng = random.Random(0)
    scenes = list(world.scenes("train", 200))
    qa = [toyq.training_question(rng, s, caption_share=0.0) for s in scenes]
    assert 0.4 < np.mean([y for _, y in qa]) < 0.6


def test_describe_lists_outputs_and_notes(folder):
    d = _metric(folder).describe()
    assert d["outputs"] == [["soft", True], ["hard", True], ["soft_gm", True]]
    assert set(d["how_to_read"]["lines"]) == {"soft", "hard", "soft_gm"}
    assert "batch_size" not in d and d["weights"].startswith("sha256:")


def test_rater_agreement_reads_the_new_metrics_directions(folder):
    """The leaderboard's metric-vs-rater agreement takes each metric's stored names and
    directions: vqascore and every questions output appear, each judged in its direction."""
    import pandas as pd

    from harness.leaderboard.agreement import metric_agreement
    from harness.metrics.vqa import VQAScore

    directions = {**_metric(folder).stored_names(),
                  **VQAScore(name="vqascore_toy", settings={"checkpoint": str(folder)}).stored_names()}
    assert directions == {"questions.soft": True, "questions.hard": True, "questions.soft_gm": True,
                          "vqascore_toy": True}
    votes = pd.DataFrame([{"prompt_id": f"p{i}", "left": "a", "right": "b", "choice": c,
                           "rater": "r", "left_key": f"a{i}", "right_key": f"b{i}"}
                          for i, c in enumerate(["left", "left", "right"])])
    pairs = [(0.9, 0.2), (0.8, 0.1), (0.7, 0.3)]
    scores = pd.DataFrame([(f"{m}{i}", name, v) for name in directions for i, (va, vb) in enumerate(pairs)
                           for m, v in (("a", va), ("b", vb))], columns=["key", "metric", "value"])
    t = metric_agreement(votes, scores, directions, n_boot=200).set_index("metric")
    assert sorted(t.index) == sorted(directions)
    assert list(t["agreement"]) == pytest.approx([2 / 3] * 4) and list(t["n"]) == [3] * 4


def test_position_questions_ask_the_own_place_or_its_mirrors_answered_from_the_content():
    """The training rows that teach a judge where things are: half at the object's own place,
    a quarter at its left-right mirror (the place a judge blind to left and right confuses)."""
    import random
    from collections import Counter

    from harness.toyworld import world

    rng = random.Random(0)
    content = {"objects": [{"shape": "star", "colour": "red", "position": "top left"}],
               "sign": None, "word": None}
    asked = Counter()
    for _ in range(2000):
        check = toyq.position_check(rng, content)
        e = check["exists"]
        assert (e["shape"], e["colour"]) == ("star", "red")
        asked[e["position"]] += 1
        assert toyq.answer(check, content) is (e["position"] == "top left")
    assert 0.45 < asked["top left"] / 2000 < 0.55
    assert 0.2 < asked["top right"] / 2000 < 0.3
    assert asked["bottom left"] > asked["bottom right"] > 0 and asked["centre"] > 0
    # The centre mirrors onto itself: its contrasts are other places.
    centre = {"objects": [{"shape": "circle", "colour": "blue", "position": "centre"}]}
    places = Counter(toyq.position_check(rng, centre)["exists"]["position"] for _ in range(400))
    assert 0.4 < places["centre"] / 400 < 0.6 and len(places) == 5
    # Count scenes place things freely (no named position): nothing to ask.
    count = next(s for s in world.scenes("train", 50) if s.kind == "count")
    assert toyq.position_check(rng, toyq.scene_content(count)) is None
    # Training questions draw them at the share asked, answered from the scene.
    scenes = [s for s in world.scenes("train", 400) if s.kind in ("single", "pair")]
    qa = [toyq.training_question(rng, s, caption_share=0.0, position_share=0.5) for s in scenes]
    placed = [(q, y) for q, y in qa if " in the " in q]
    assert len(placed) > 0.45 * len(qa)
    assert 0.35 < np.mean([y for _, y in qa]) < 0.65
