"""Readers of the published question sets (TIFA v1.0, DSG-1k, GenEval 2) and GenAI-Bench, on
small files written here in each set's published format (rows shaped like the released files),
and the questions they produce scored by the question metric's own normalisation."""

from __future__ import annotations

import json

import pytest

from harness.metrics.questions import normalise_questions
from harness.suites import formats
from harness.suites.base import SuiteError

TIFA = [
    {"id": "coco_301091", "caption": "On a gray day a surfer carrying a white board walks on a beach.",
     "question": "is this a surfer?", "choices": ["yes", "no"], "answer": "yes",
     "answer_type": "animal/human", "element": "surfer", "coco_val_id": "380711"},
    {"id": "coco_301091", "caption": "On a gray day a surfer carrying a white board walks on a beach.",
     "question": "what color is the board?", "choices": ["white", "black", "red", "blue"],
     "answer": "white", "answer_type": "color", "element": "white", "coco_val_id": "380711"},
    {"id": "drawbench_12", "caption": "A red colored car.", "question": "is there a car?",
     "choices": ["yes", "no"], "answer": "yes", "answer_type": "object", "element": "car"},
]

DSG_HEADER = ["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
              "category_detailed", "tuple", "question_natural_language"]
DSG_ROWS = [
    ["whoops_5", "A rubix cube with ten squares of purple", "rubix cube", "1", "0", "entity", "whole",
     "entity - whole (rubix cube)", "Is there a rubix cube?"],
    ["whoops_5", "A rubix cube with ten squares of purple", "rubix cube, purple", "2", "1", "attribute",
     "color", "attribute - color (rubix cube, purple)", "Is the rubix cube purple?"],
    ["vrd_57", "bench near trees", "bench", "1", "0", "entity", "whole", "entity - whole (bench)",
     "Is there a bench?"],
    ["vrd_57", "bench near trees", "trees", "2", "0", "entity", "whole", "entity - whole (trees)",
     "Are there trees?"],
    ["vrd_57", "bench near trees", "bench, trees, near", "3", "1,2", "relation", "spatial",
     "relation - spatial (bench, trees, near)", "Is the bench near the trees?"],
]


def _dsg_csv(rows) -> str:
    """The rows as the published CSV writes them (comma separated, quoted where needed)."""
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([DSG_HEADER, *rows])
    return buf.getvalue()

GENEVAL2 = [
    {"prompt": "four white bicycles in front of three plastic cows", "atom_count": 7,
     "vqa_list": [["How many bicycles are in the image?", "four"], ["Are the bicycles white?", "Yes"],
                  ["Are there any bicycles in the image?", "Yes"]],
     "skills": ["count", "attribute", "object"]},
    {"prompt": "a dog", "atom_count": 1, "vqa_list": [["Are there any dogs in the image?", "Yes"]],
     "skills": ["object"]},
]


def _load(fmt, path):
    return formats()[fmt].load(path)


def test_tifa_groups_questions_by_text_id(tmp_path):
    p = tmp_path / "tifa_v1.0_question_answers.json"
    p.write_text(json.dumps(TIFA))
    parsed = _load("tifa", p)
    assert [x.id for x in parsed.prompts] == ["tifa-0000", "tifa-0001"]
    first = parsed.prompts[0]
    assert first.text.startswith("On a gray day") and "source:coco" in first.tags
    qs = normalise_questions(first.meta["questions"], "t")
    assert [(q["question"], q["answer"], q["category"]) for q in qs] == [
        ("is this a surfer?", "yes", "animal/human"), ("what color is the board?", "white", "color")]
    assert qs[1]["choices"] == ["white", "black", "red", "blue"] and first.meta["coco_val_id"] == "380711"


def test_dsg_reads_dependencies_as_parents(tmp_path):
    p = tmp_path / "dsg-1k-anns.csv"
    p.write_text(_dsg_csv(DSG_ROWS))
    assert p.read_text().splitlines()[5].endswith('"1,2",relation,spatial,"relation - spatial (bench, trees, '
                                                 'near)",Is the bench near the trees?')
    parsed = _load("dsg", p)
    assert [x.text for x in parsed.prompts] == ["A rubix cube with ten squares of purple", "bench near trees"]
    qs = normalise_questions(parsed.prompts[1].meta["questions"], "t")
    assert [q["parents"] for q in qs] == [[], [], ["1", "2"]]
    assert [q["category"] for q in qs] == ["entity", "entity", "relation"]
    assert parsed.prompts[1].tags == ("source:vrd",)


def test_dsg_dependency_on_a_later_row_is_an_error_with_the_line(tmp_path):
    p = tmp_path / "dsg.csv"
    p.write_text(_dsg_csv([DSG_ROWS[1], DSG_ROWS[0]]))
    with pytest.raises(SuiteError, match=r"dsg.csv:2: proposition 2 depends on 1"):
        _load("dsg", p)


def test_geneval2_keeps_answers_and_skills(tmp_path):
    p = tmp_path / "geneval2_data.jsonl"
    p.write_text("\n".join(json.dumps(o) for o in GENEVAL2) + "\n")
    parsed = _load("geneval2", p)
    first = parsed.prompts[0]
    assert first.tags == ("atoms:7",) and first.meta["atom_count"] == 7
    qs = normalise_questions(first.meta["questions"], "t")
    assert [(q["answer"], q["category"]) for q in qs] == [("four", "count"), ("Yes", "attribute"),
                                                          ("Yes", "object")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "vqa_list": [["q?", "Yes"]], "skills": []}) + "\n")
    with pytest.raises(SuiteError, match="bad.jsonl:1: skills has 0 entries for 1"):
        _load("geneval2", bad)


def test_genai_bench_reads_skills_beside_the_file_and_keeps_human_ratings(tmp_path):
    p = tmp_path / "genai_image.json"
    p.write_text(json.dumps({
        "00000": {"id": "00000", "prompt": "A baker pulling freshly baked bread out of an oven.",
                  "models": {"DALLE_3": [5, 5, 4], "SDXL_Turbo": [3, 4, 4]}},
        "00001": {"id": "00001", "prompt": "Three dogs but no cats.", "models": {"DALLE_3": [2, 2, 3]}}}))
    (tmp_path / "genai_skills.json").write_text(json.dumps({
        "action relation": ["00000"], "counting": ["00001"], "negation": ["00001"]}))
    parsed = _load("genai-bench", p)
    assert [x.id for x in parsed.prompts] == ["genai-00000", "genai-00001"]
    assert parsed.prompts[1].tags == ("skill:counting", "skill:negation")
    assert parsed.prompts[0].meta["human_alignment"]["DALLE_3"] == [5, 5, 4]


def test_formats_are_registered_with_their_sources():
    f = formats()
    for name in ("tifa", "dsg", "geneval2", "genai-bench"):
        assert name in f and "https://" in f[name].source or "hub dataset" in f[name].source
