"""DSG-1k (Cho et al. 2024, Davidsonian Scene Graph): ``dsg-1k-anns.csv``, one row per question.

Columns: ``item_id``, ``text`` (the prompt), ``keywords``, ``proposition_id``, ``dependency``
(parent proposition ids, comma separated; ``0`` for none), ``category_broad`` (entity,
attribute, relation, global, other), ``category_detailed``, ``tuple`` and
``question_natural_language``. Rows of one item become one prompt; its questions (ids =
proposition ids, parents from ``dependency``) go to ``Prompt.meta["questions"]``, so a child
counts only when its parents are answered yes.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.suites.base import Parsed, located, numbered_prompt, read_table, register_format

SOURCE = "dsg-1k-anns.csv is in https://github.com/j-min/DSG; set suite.file to its path."
COLUMNS = {"item_id": ("item_id",), "text": ("text",), "proposition_id": ("proposition_id",),
           "dependency": ("dependency",), "category_broad": ("category_broad",),
           "category_detailed": ("category_detailed",), "tuple": ("tuple",),
           "question": ("question_natural_language",)}


@register_format("dsg", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read DSG-1k: one prompt per item (``dsg-0000`` in first-seen order), tags
    ``source:<prefix of item_id>``; questions with DSG parents in meta."""
    groups: dict[str, dict] = {}
    for line, row in read_table(path, delimiter=",", quoting=csv.QUOTE_MINIMAL, columns=COLUMNS,
                                optional=("category_detailed", "tuple")):
        g = groups.setdefault(row["item_id"], {"text": row["text"], "line": line, "questions": []})
        if row["text"] != g["text"]:
            raise located(path, line, f"item {row['item_id']!r} has two different texts.")
        pid = row["proposition_id"].strip()
        known = {q["id"] for q in g["questions"]}
        parents = [p.strip() for p in row["dependency"].split(",") if p.strip() not in ("", "0")]
        for p in parents:
            if p not in known:
                raise located(path, line, f"proposition {pid} depends on {p}, which is not an earlier "
                                          f"proposition of item {row['item_id']!r}.")
        if not row["question"].strip():
            raise located(path, line, "empty question_natural_language.")
        g["questions"].append({"id": pid, "question": row["question"].strip(), "parents": parents,
                               "answer": "yes", "category": row["category_broad"].strip(),
                               "detail": row["category_detailed"].strip(), "tuple": row["tuple"].strip()})
    prompts = []
    for n, (item, g) in enumerate(groups.items()):
        source = item.rsplit("_", 1)[0] if "_" in item else ""
        prompts.append(numbered_prompt("dsg", n, 4, g["text"], {"source": source},
                                       {"dsg_id": item, "questions": g["questions"]}, path, g["line"]))
    return Parsed(tuple(prompts))
