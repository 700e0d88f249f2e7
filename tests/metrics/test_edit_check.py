"""edit_check against check_edit (the independent reference: the toy world's own renderer draws
the exact target and the untouched source)."""

from pathlib import Path

import pytest

from harness.metrics.base import ScoreInput
from harness.metrics.edit_check import ToyEditCheck
from harness.suites import load_suite
from harness.toyworld.edit_suite import edit_from_record
from harness.toyworld.world import render


@pytest.fixture(scope="module")
def prompts():
    suite = load_suite({"name": "toy-editing", "file": "toy-editing.yaml"})
    return [{"text": p.text, "tags": list(p.tags), "meta": dict(p.meta)} for p in suite.prompts]


def score(images, prompts):
    m = ToyEditCheck(name="edit_check")
    return m.score_images([ScoreInput(key=str(i), model="m", image=im, prompt=p)
                           for i, (im, p) in enumerate(zip(images, prompts, strict=True))])


def test_exact_targets_score_one_and_sources_miss_the_change(prompts):
    edits = [edit_from_record(p["meta"]["toy_edit"]) for p in prompts]
    on_target = score([render(e.target, 64) for e in edits], prompts)
    on_source = score([render(e.source, 64) for e in edits], prompts)
    for e, (t, te), (s, _) in zip(edits, on_target, on_source, strict=True):
        assert te["edit_type"] == e.kind and te["instruction"] == e.instruction
        if e.kind == "word":
            assert t == {"all": None, "changed": None, "kept": 1.0, "extra": None}
            assert "OCR" in te["note"]
            continue
        assert t == {"all": 1.0, "changed": 1.0, "kept": 1.0, "extra": 1.0}, e.instruction
        # The unedited source: the instructed change is not there, so the edit is not right.
        assert s["changed"] == 0.0 and s["all"] == 0.0, e.instruction
        if e.kind != "add":  # an add keeps everything the source had
            assert s["kept"] == 1.0


def test_a_wrong_edit_and_a_non_edit_prompt(prompts):
    from dataclasses import replace

    p = next(p for p in prompts if p["meta"]["edit_type"] == "recolour"
             and len(p["meta"]["toy_edit"]["target"]["things"]) == 2)
    e = edit_from_record(p["meta"]["toy_edit"])
    other = 1 - e.index
    things = list(e.target.things)
    things[other] = replace(things[other], colour=next(c for c in ("red", "green", "blue", "yellow")
                                                       if c != things[other].colour))
    ((v, _),) = score([render(replace(e.target, things=tuple(things)), 64)], [p])
    assert v == {"all": 0.0, "changed": 1.0, "kept": 0.0, "extra": 0.0}
    ((v, extra),) = score([render(e.target, 64)], [{"text": "a red circle", "meta": {}}])
    assert v == dict.fromkeys(("all", "changed", "kept", "extra")) and "skipped" in extra


def test_input_id_follows_the_edit_record(prompts):
    m = ToyEditCheck(name="edit_check")
    ids = {m.input_id(p) for p in prompts}
    assert len(ids) == len(prompts) and m.input_id({"meta": {}}) is None


def test_sdedit_prompts_are_edits_of_their_init_image():
    """The edit metrics (preservation, similarity, following) read an SDEdit prompt's source
    from its init_image; a plain img2img prompt (no instruction) is no edit."""
    from harness.metrics.preservation import edit_source

    suite = load_suite({"name": "toy-editing", "file": "toy-editing.yaml"})
    p = suite.prompts[0]
    stored = {"controls": [{"kind": "init_image", "path": p.controls[0].path}], "meta": dict(p.meta)}
    assert edit_source(stored) == (Path(p.controls[0].path), None)
    assert edit_source({**stored, "meta": {}}) == (None, None)
