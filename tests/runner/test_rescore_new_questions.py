"""Questions written for a suite after a run (``harness suite questions``) reach that run: the
next 'harness run' plans the prompts as they are now, and the ``questions`` value computed
without them is computed again (its stored input id no longer matches), while values that rest
on the same questions are kept."""

import json

from harness import cli
from harness.store import Store
from harness.suites.question_file import questions_path, text_hash
from harness.testing.fakes import prompt_png

SUITE = """\
name: later
prompts:
  - {id: ball, text: a red ball}
  - {id: cube, text: a blue cube}
"""
ARGS = ["suite.file=later.yaml", "suite.name=later", "models=[imported]", "metrics=[questions_toy]",
        "progress=false", "run.name=r", "report.html=false"]


def _values(store):
    return {(s.prompt_id, s.metric): (s.value, s.extra)
            for s in store.scores("r")}


def test_questions_added_after_a_run_are_scored_on_the_next_run(workdir):
    (workdir / "later.yaml").write_text(SUITE, encoding="utf-8")
    (workdir / "imports").mkdir()
    rows = ["prompt_id,sample,file"]
    for pid, text in (("ball", "a red ball"), ("cube", "a blue cube")):
        (workdir / "imports" / f"{pid}.png").write_bytes(prompt_png(text))
        rows.append(f"{pid},0,{pid}.png")
    (workdir / "imports" / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    cli.dispatch(cli.compose(["command=run", *ARGS]))
    store = Store(workdir / "store")
    first = _values(store)
    assert first[("ball", "questions_toy.soft")][0] is None
    assert first[("ball", "questions_toy.soft")][1]["skipped"] == "prompt has no questions"
    assert first[("ball", "questions_toy.soft")][1]["input_id"] == "none"

    # What 'harness suite questions' writes, for one prompt.
    line = {"prompt_id": "ball", "text_sha256": text_hash("a red ball"), "status": "ok",
            "questions": [{"id": "1", "question": "Is there a circle?", "parents": [],
                           "answer": "yes", "category": "entity", "skill": "whole"},
                          {"id": "2", "question": "Is the circle red?", "parents": ["1"],
                           "answer": "yes", "category": "attribute", "skill": "color"}],
            "generator": {"provider": "openai", "model": "gpt-5.4-mini", "template": "t",
                          "date": "2026-12-01T00:00:00Z"}}
    questions_path(workdir / "later.yaml").write_text(json.dumps(line) + "\n", encoding="utf-8")

    cli.dispatch(cli.compose(["command=run", *ARGS]))
    store = Store(workdir / "store")
    assert store.run_prompts("r")["ball"]["meta"]["questions"][1]["question"] == "Is the circle red?"
    second = _values(store)
    soft, extra = second[("ball", "questions_toy.soft")]
    assert soft is not None and 0.0 <= soft <= 1.0
    assert [q["question"] for q in extra["questions"]] == ["Is there a circle?", "Is the circle red?"]
    assert extra["input_id"] not in ("none", None)
    # The prompt still without questions kept its stored value (same input id): not recomputed.
    assert second[("cube", "questions_toy.soft")][1] == first[("cube", "questions_toy.soft")][1]
