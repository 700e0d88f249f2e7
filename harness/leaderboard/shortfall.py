"""Why a model has fewer images than planned: its error records and the units that never ran,
grouped by cause with counts. Causes come from what the store holds (a record's ``error`` text
and ``info``: the journal's ``sending`` mark, the circuit-open flag, ``http_status``, ``code``,
``final``), never from knowledge of one provider, so a new adapter needs nothing here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.store.rows import Record, UnitCounts
from harness.types import CIRCUIT_OPEN

KINDS = ("not sent", "reported", "error", "refused", "pending")
"""Cause kinds, in the order a shortfall lists them: ``not sent`` (held back in the run: circuit
open), ``reported`` (sent, its answer never arrived: left for the user to check rather than paid
twice), ``error`` (failed), ``refused`` (the provider declined: a result) and ``pending`` (planned,
never run)."""
MAX_EXAMPLES = 2
"""Different messages shown per cause (the first in plan order)."""
EXAMPLE_CHARS = 300
"""Longest example message shown (longer ones are cut with an ellipsis)."""

_OPTION = re.compile(r"\bmodels\.[\w-]+\.options\.\w+")
"""A config setting a stored message points to (``models.x.options.circuit_breaker``)."""


@dataclass(frozen=True)
class Cause:
    """Units of one model missing for one reason."""

    kind: str
    """One of :data:`KINDS`."""
    label: str
    """The reason in a few words ("HTTP 500 [server_error]"; empty when the kind says it all)."""
    count: int
    examples: tuple[str, ...] = ()
    """Up to :data:`MAX_EXAMPLES` different stored messages (already scrubbed of secrets)."""

    def text(self) -> str:
        return f"{self.count} {self.kind}" + (f": {self.label}" if self.label else "")


@dataclass(frozen=True)
class Shortfall:
    """A model with fewer images than planned, and why."""

    model: str
    label: str
    ok: int
    planned: int
    causes: tuple[Cause, ...]
    """Grouped causes in :data:`KINDS` order (most units first within a kind); ``pending`` is
    always last, even at 0."""

    def line(self) -> str:
        """One sentence: "label: 52/64 images — 8 not sent: ...; 3 reported: ...; 0 pending"."""
        return (f"{self.label}: {self.ok}/{self.planned} images — "
                + "; ".join(c.text() for c in self.causes))

    def example_lines(self) -> list[str]:
        """Per cause with stored messages: its count, label and the example messages."""
        return [f"{c.text()} — e.g. " + " · ".join(f"“{e}”" for e in c.examples)
                for c in self.causes if c.examples]

    def as_dict(self) -> dict[str, Any]:
        return {"model": self.model, "label": self.label, "ok": self.ok, "planned": self.planned,
                "causes": [{"kind": c.kind, "label": c.label, "count": c.count,
                            "examples": list(c.examples)} for c in self.causes]}


def shortfall(model: str, label: str, counts: UnitCounts,
              errors: Iterable[Record]) -> Shortfall | None:
    """Why ``model`` is short (``errors``: its records with status ``error``, in plan order), or
    None when no unit failed or is pending (refusals alone are results, shown as the refusal
    rate)."""
    if not counts.error and not counts.pending:
        return None
    groups: dict[tuple[str, str], list[str]] = {}
    for rec in errors:
        kind, why = cause_of(rec)
        groups.setdefault((kind, why), []).append(_example(rec.error))
    causes = []
    for (kind, why), messages in groups.items():
        examples = tuple(dict.fromkeys(m for m in messages if m))[:MAX_EXAMPLES]
        causes.append(Cause(kind, why, len(messages), examples))
    if counts.refused:
        causes.append(Cause("refused", "a result, counted in the refusal rate", counts.refused))
    causes.sort(key=lambda c: (KINDS.index(c.kind), -c.count, c.label))
    causes.append(Cause("pending", "planned, never run (running the run again resumes them)"
                        if counts.pending else "", counts.pending))
    return Shortfall(model, label, counts.ok, counts.planned, tuple(causes))


def cause_of(rec: Record) -> tuple[str, str]:
    """(kind, label) of an error record, from its ``info`` and the settings its message names."""
    info: Mapping[str, Any] = rec.info or {}
    text = rec.error or ""
    options = list(dict.fromkeys(_OPTION.findall(text)))
    if info.get("journal") == "sending":
        kind, why = "reported", "sent but the answer never arrived, so not sent again"
    elif info.get(CIRCUIT_OPEN) or info.get("code") == CIRCUIT_OPEN:
        # ProviderError writes held-back requests as "<provider>: not sent: <reason> (...)"
        reason = text.split("not sent: ", 1)[1] if "not sent: " in text else ""
        reason = re.split(r" \(|; |, so ", reason, maxsplit=1)[0].strip()
        kind, why = "not sent", reason or "held back (circuit open)"
    else:
        status, code, final = info.get("http_status"), info.get("code"), info.get("final")
        bits = [f"HTTP {status}" if status is not None
                else "no answer" if "http_status" in info else ""]
        bits += [f"[{code}]" if code else "", f"({final}, not retried)" if final else ""]
        kind, why = "error", " ".join(b for b in bits if b) or "other"
    return kind, why + (f" ({', '.join(options)})" if options else "")


def _example(error: str | None) -> str:
    """A stored message as one short line (no Markdown code marks)."""
    text = " ".join(str(error or "").split()).replace("`", "'")
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 1].rstrip() + "…"
