"""Toy-world edit check: did an edit make exactly the instructed change?

The judge is the rule-based reader behind :func:`harness.toyworld.edits.check_edit` (1.00 on
exact renders of every edit kind, tested), independent of any trained model. The edit comes
from the prompt's ``meta.toy_edit`` (the toy-editing suite carries it: source and target
scenes, see :mod:`harness.toyworld.edit_suite`). Per image:

- ``all`` (headline): the touched object is right, every other object is unchanged and nothing
  else appeared (recolour, move and add edits);
- ``changed``: the touched object shows the target's colour, shape and position;
- ``kept``: share of the untouched objects found unchanged (word edits: the sign keeps its
  colour);
- ``extra``: 1 when no object the target lacks is present.

Word edits get ``kept`` only: the new word is OCR's to read (the ocr metric reads the prompt's
``expected_text``). Prompts without ``meta.toy_edit`` get no value (recorded as skipped).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb

OUTPUTS = ("all", "changed", "kept", "extra")
"""The first is the headline."""


class ToyEditCheck(Metric):
    """Exact scoring of toy-world edits against their target scene."""

    kind = "toy_edit_check"
    per = "image"
    outputs = dict.fromkeys(OUTPUTS, True)
    defaults = {"judge": "toy-world rule-based checker v2"}
    """judge: which reader decides; changing the checker's rules bumps it."""

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """What each output says (shares of images, 0-1)."""
        return ReadingNotes(lines={
            "all": ("Share of recolour/move/add edits exactly right (the touched object right, the "
                    "others unchanged, nothing extra), read by the rule-based toy-world checker; "
                    "word edits are left out (their word is OCR's)."),
            "changed": "Share of edits whose touched object shows the target's colour, shape and position.",
            "kept": ("Mean share of untouched objects found unchanged (word edits: the sign kept its "
                     "colour)."),
            "extra": "Share of edits with no object the target lacks.",
        })

    def input_id(self, prompt: Mapping[str, Any]) -> str | None:
        """The value rests on the prompt's ``meta.toy_edit``: its short hash."""
        rec = (prompt.get("meta") or {}).get("toy_edit")
        if rec is None:
            return None
        return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:12]

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[Any, dict[str, Any]]]:
        from harness.toyworld.edit_suite import edit_from_record
        from harness.toyworld.edits import check_edit

        out = []
        for it in items:
            values = dict.fromkeys(OUTPUTS)
            rec = (it.prompt.get("meta") or {}).get("toy_edit")
            if rec is None:
                out.append((values, {"skipped": "not a toy-world edit (no meta.toy_edit)"}))
                continue
            edit = edit_from_record(rec)
            scores = check_edit(as_rgb(it.image), edit)
            values.update(scores)
            extra: dict[str, Any] = {"edit_type": edit.kind, "instruction": edit.instruction,
                                     "scores": scores}
            if edit.kind == "word":
                extra["note"] = "the new word is OCR's to read (ocr metric, expected_text)"
            out.append((values, extra))
        return out
