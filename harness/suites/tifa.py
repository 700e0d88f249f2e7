"""TIFA v1.0 (Hu et al. 2023): ``tifa_v1.0_question_answers.json``, a JSON list with one object
per question.

Each object has ``id`` (the text id, e.g. ``coco_301091``), ``caption`` (the prompt),
``question``, ``choices``, ``answer``, ``answer_type`` (the element type: object, color,
counting, ...) and ``element``. Questions of one id become one prompt, in file order; its
questions go to ``Prompt.meta["questions"]`` (category = ``answer_type``) for the ``questions``
metric. TIFA questions are independent: no parents.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.suites.base import Parsed, located, numbered_prompt, read_text, register_format

SOURCE = ("tifa_v1.0_question_answers.json is in https://github.com/Yushi-Hu/tifa (tifa_v1.0/); "
          "set suite.file to its path.")


@register_format("tifa", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read TIFA questions: one prompt per text id (``tifa-0000`` in first-seen order), tag
    ``source:<coco|drawbench|partiprompt|paintskill>`` from the id's prefix."""
    try:
        rows = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise located(path, e.lineno, f"invalid JSON ({e.msg}); is this "
                                      "tifa_v1.0_question_answers.json?") from None
    if not isinstance(rows, list):
        raise located(path, None, "expected a JSON list of question objects (TIFA v1.0 format).")
    groups: dict[str, dict] = {}
    for n, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str)
                                                for k in ("id", "caption", "question")):
            raise located(path, None, f"item {n}: needs string id, caption and question, got {row!r:.200}.")
        g = groups.setdefault(row["id"], {"caption": row["caption"], "questions": [], "extra": {}})
        if row["caption"] != g["caption"]:
            raise located(path, None, f"item {n}: id {row['id']!r} has two captions.")
        g["questions"].append({
            "id": str(len(g["questions"]) + 1), "question": row["question"],
            "answer": str(row.get("answer", "yes")), "choices": list(row.get("choices") or []),
            "category": str(row.get("answer_type") or ""), "element": row.get("element")})
        for k in ("coco_val_id",):
            if k in row:
                g["extra"][k] = row[k]
    prompts = []
    for n, (tid, g) in enumerate(groups.items()):
        source = tid.split("_", 1)[0] if "_" in tid else ""
        prompts.append(numbered_prompt("tifa", n, 4, g["caption"], {"source": source},
                                       {"tifa_id": tid, "questions": g["questions"], **g["extra"]}, path, 0))
    return Parsed(tuple(prompts))
