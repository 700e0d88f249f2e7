"""The questions file next to a suite: DSG-style questions written for its prompts by an LLM.

``harness suite questions`` (:mod:`harness.suites.cli`) asks an LLM for the questions of each
prompt that has none and appends one JSON line per answer to ``<suite stem>.questions.jsonl``
beside the suite file, as soon as the answer arrives (the file is the journal of paid calls: a
prompt answered once is never asked again unless told to). A line::

    {"prompt_id": "p1", "text_sha256": "...", "status": "ok",
     "questions": [{"id": "1", "question": "Is there a cat?", "parents": [], "answer": "yes",
                    "category": "entity", "skill": "whole"}, ...],
     "generator": {"provider": "openai", "model": "gpt-5.4-mini", "served_model": "...",
                   "template": "<sha256 of the instructions and schema, 16 hex>",
                   "date": "2026-12-01T10:00:00Z"},
     "usage": {"prompt_tokens": 310, "completion_tokens": 120}}

``status`` is ``ok``, ``refused`` (the model declined; a result, not retried) or ``invalid``
(the answer failed validation: ``error`` says why, ``raw`` holds the text). The last line of a
prompt wins. :func:`attach` (called by :func:`harness.suites.load_suite`) puts the ``ok``
questions into ``Prompt.meta["questions"]`` of prompts whose file carries none, with the
generator in ``meta["questions_source"]``; a line whose prompt text changed since is left out.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.suites.base import located, read_text, text_lines
from harness.types import Prompt, sha256_hex

log = logging.getLogger(__name__)

SUFFIX = ".questions.jsonl"
STATUSES = ("ok", "refused", "invalid")
CATEGORIES = ("entity", "attribute", "relation", "global", "other")
"""DSG's broad categories (Cho et al. 2024, ``category_broad``)."""


def questions_path(suite_path: Path | str) -> Path:
    """The questions file of a suite file (or folder): ``<stem>.questions.jsonl`` beside it."""
    p = Path(suite_path)
    return p.parent / (p.name + SUFFIX) if p.is_dir() else p.with_name(p.stem + SUFFIX)


def text_hash(text: str) -> str:
    """The hash a line keeps of its prompt's text, to notice a prompt changed since."""
    return sha256_hex(text.strip())[:16]


@dataclass(frozen=True)
class Entry:
    """One line of a questions file."""

    prompt_id: str
    text_sha256: str
    status: str
    questions: tuple[dict[str, Any], ...]
    generator: Mapping[str, Any]
    line: int
    """Line in the file (1-based), for messages."""
    error: str = ""

    @property
    def model(self) -> str:
        return str(self.generator.get("model") or "")

    @property
    def template(self) -> str:
        return str(self.generator.get("template") or "")


class QuestionError(ValueError):
    """An LLM answer that is not a usable question set; the message says what is wrong."""


def check_questions(raw: Any) -> list[dict[str, Any]]:
    """Validate a question set and return it with parents first (topological, stable).

    Checks: a non-empty list of objects, each with a non-empty ``id`` and ``question``,
    ``parents`` a list of ids of this set, a known ``category``; ids unique; no cycles (a
    question that depends on itself, directly or through others).

    Raises:
        QuestionError: What is wrong, naming the question id.
    """
    if not isinstance(raw, list) or not raw:
        raise QuestionError(f"expected a non-empty list of questions, got {_short(raw)}")
    out: dict[str, dict[str, Any]] = {}
    for n, q in enumerate(raw, 1):
        if not isinstance(q, Mapping):
            raise QuestionError(f"question {n}: expected an object, got {_short(q)}")
        qid = str(q.get("id") or "").strip()
        text = q.get("question")
        if not qid:
            raise QuestionError(f"question {n}: no id")
        if qid in out:
            raise QuestionError(f"question id {qid!r} appears twice")
        if not isinstance(text, str) or not text.strip():
            raise QuestionError(f"question {qid!r}: no question text")
        parents = q.get("parents", [])
        if not isinstance(parents, list) or not all(isinstance(p, (str, int)) for p in parents):
            raise QuestionError(f"question {qid!r}: parents must be a list of ids, got {_short(parents)}")
        category = str(q.get("category") or "other").strip().lower()
        if category not in CATEGORIES:
            raise QuestionError(f"question {qid!r}: category {category!r} is not one of "
                                f"{', '.join(CATEGORIES)}")
        answer = str(q.get("answer", "yes")).strip().lower()
        if answer not in ("yes", "no"):
            raise QuestionError(f"question {qid!r}: answer must be yes or no, got {answer!r}")
        out[qid] = {"id": qid, "question": text.strip(),
                    "parents": list(dict.fromkeys(str(p).strip() for p in parents)),
                    "answer": answer, "category": category,
                    "skill": str(q.get("skill") or "").strip()}
    for q in out.values():
        for p in q["parents"]:
            if p not in out:
                raise QuestionError(f"question {q['id']!r} depends on {p!r}, which is not a "
                                    f"question of this set (ids: {', '.join(out)})")
    return _parents_first(out)


def _parents_first(qs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Kahn's algorithm, taking the earliest ready question each time (so a well-ordered set
    keeps its order); a question left over sits on a cycle."""
    placed: list[dict[str, Any]] = []
    done: set[str] = set()
    left = list(qs.values())
    while left:
        ready = next((q for q in left if all(p in done for p in q["parents"])), None)
        if ready is None:
            cycle = _cycle(qs, {q["id"] for q in left})
            raise QuestionError(f"dependencies form a cycle: {' -> '.join(cycle)}")
        placed.append(ready)
        done.add(ready["id"])
        left.remove(ready)
    return placed


def _cycle(qs: dict[str, dict[str, Any]], stuck: set[str]) -> list[str]:
    """One cycle among the questions that could not be placed (for the message)."""
    start = min(stuck)
    path, seen = [start], {start}
    node = start
    while True:
        node = next(p for p in qs[node]["parents"] if p in stuck)
        if node in seen:
            return path[path.index(node):] + [node]
        path.append(node)
        seen.add(node)


def _short(obj: Any) -> str:
    text = json.dumps(obj, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def read_entries(path: Path) -> dict[str, Entry]:
    """The last line of each prompt in a questions file (an absent file: none).

    Raises:
        SuiteError: A line that is not a JSON object of this format (path:line and the fix).
    """
    if not path.exists():
        return {}
    out: dict[str, Entry] = {}
    text = read_text(path)
    lines = list(text_lines(text))
    for number, line in lines:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            torn = number == lines[-1][0] and not text.endswith("\n")
            hint = (" It is cut short (a run stopped while writing it): delete this line and run "
                    "'harness suite questions' again to ask for that prompt's questions."
                    if torn else " Each line must hold one complete JSON object.")
            raise located(path, number, f"invalid JSON ({e.msg} at column {e.colno}).{hint}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt_id"), str) \
                or obj.get("status") not in STATUSES:
            raise located(path, number, "expected an object with prompt_id and status (one of "
                                        f"{', '.join(STATUSES)}); was the file edited by hand?")
        questions: tuple[dict[str, Any], ...] = ()
        if obj["status"] == "ok":
            try:
                questions = tuple(check_questions(obj.get("questions")))
            except QuestionError as e:
                raise located(path, number, f"prompt {obj['prompt_id']!r}: {e}.") from None
        out[obj["prompt_id"]] = Entry(obj["prompt_id"], str(obj.get("text_sha256") or ""),
                                      obj["status"], questions, dict(obj.get("generator") or {}),
                                      number, str(obj.get("error") or ""))
    return out


def append_entry(path: Path, entry: Mapping[str, Any]) -> None:
    """Append one line and make it durable before returning (it records a paid answer)."""
    data = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size:
            # A file cut short mid-line (a crash) would glue this line onto the torn one.
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def attach(prompts: Sequence[Prompt], suite_path: Path) -> tuple[Prompt, ...]:
    """The prompts with the questions file's ``ok`` questions in ``meta`` (see the module doc).

    Prompts that carry questions in the suite file keep them; a line written for another text
    of the prompt is left out with a warning (``harness suite questions`` asks again).
    """
    path = questions_path(suite_path)
    entries = read_entries(path)
    if not entries:
        return tuple(prompts)
    out, stale = [], []
    for p in prompts:
        e = entries.get(p.id)
        if e is None or e.status != "ok" or p.meta.get("questions") is not None:
            out.append(p)
            continue
        if e.text_sha256 != text_hash(p.text):
            stale.append(p.id)
            out.append(p)
            continue
        meta = {**p.meta, "questions": [dict(q) for q in e.questions],
                "questions_source": {"file": path.name, **{k: e.generator.get(k) for k in
                                                           ("provider", "model", "template", "date")}}}
        out.append(replace(p, meta=meta))
    if stale:
        log.warning("%s: the text of %d prompt(s) changed since their questions were written "
                    "(%s); they have no questions until 'harness suite questions' asks again.",
                    path, len(stale), ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))
    return tuple(out)
