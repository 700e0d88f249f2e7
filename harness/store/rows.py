"""What the store's reads return: one frozen dataclass per kind of row.

Fields mirror the SQL columns (``harness/store/migrations``); JSON columns arrive decoded and
SQLite's 0/1 flags as booleans. Rows are values: to build a table from them,
``dataclasses.asdict`` or ``pandas.DataFrame(rows)`` both work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Run:
    """One run: a suite planned against some models."""

    run_id: str
    suite: str
    """Name of the suite the run was planned from."""
    created_at: str
    updated_at: str
    status: str
    """``planned``, ``generating``, ``generated``, ``scored`` or ``reported``."""
    manifest: Mapping[str, Any]
    """The resolved config, git commit and package versions the run was made with."""


@dataclass(frozen=True)
class Record:
    """One work unit that ran: its request and what was observed."""

    key: str
    """Cache key (:meth:`harness.types.GenRequest.key`)."""
    model: str
    prompt_id: str
    sample: int
    seed: int
    request: Mapping[str, Any]
    """The :class:`harness.types.GenRequest` as a dict."""
    status: str
    """``ok``, ``refused`` or ``error``."""
    image_sha256: str | None
    """Hash of the PNG under ``images/`` (``ok`` only)."""
    width: int | None
    height: int | None
    refusal_reason: str | None
    error: str | None
    latency_s: float | None
    cost_usd: float | None
    provider_request_id: str | None
    device: str | None
    dtype: str | None
    info: Mapping[str, Any]
    """Anything else observed: versions, batch size, revised prompt ..."""
    attempts: int
    """Times this unit ran (errors are retried)."""
    created_at: str


@dataclass(frozen=True)
class UnitCounts:
    """A model's planned units in a run, by outcome (units that never ran are ``pending``)."""

    planned: int = 0
    ok: int = 0
    refused: int = 0
    error: int = 0
    pending: int = 0


@dataclass(frozen=True)
class ScoreRow:
    """One per-image metric value, with the unit it belongs to."""

    key: str
    """Record key of the image."""
    metric: str
    settings_hash: str
    """Hash of ``settings``: a value is reused only under the same settings."""
    value: float | None
    """None when the metric could not be computed (reason in ``extra``)."""
    settings: Mapping[str, Any]
    """Every setting that changes the number."""
    extra: Mapping[str, Any]
    """Raw values, flags, reasons."""
    created_at: str
    model: str
    prompt_id: str
    sample: int


@dataclass(frozen=True)
class SetScore:
    """One per-set metric value (FID, KID ...) of one model in one run."""

    run_id: str
    model: str
    metric: str
    settings_hash: str
    value: float | None
    n: int
    """Images the value rests on."""
    settings: Mapping[str, Any]
    extra: Mapping[str, Any]
    created_at: str


@dataclass(frozen=True)
class Rater:
    """A person invited to rate."""

    rater_id: str
    name: str
    token_sha256: str
    """Hash of the invitation token (the token itself is never stored)."""
    created_at: str
    excluded: bool
    """Left out of leaderboards (quality control)."""
    is_admin: bool
    email: str | None = None
    """Address for single sign-on (lower case), if invited with one."""
    revoked_at: str | None = None
    """When the rater's access was withdrawn (``harness raters revoke``); None while they may rate."""
    token_expires_at: str | None = None
    """When the token stops signing in (UTC, ISO 8601); None: no expiry."""


@dataclass(frozen=True)
class Vote:
    """One answer of a rater to a blind pair."""

    vote_id: str
    """Chosen by the client (the assignment id), so a retried submit is stored once."""
    run_id: str
    rater_id: str
    prompt_id: str
    left_key: str
    right_key: str
    left_model: str
    right_model: str
    choice: str
    """``left``, ``right``, ``tie`` or ``both_bad``."""
    reason: str | None = None
    seconds: float | None = None
    """Time from showing the pair to the answer."""
    is_repeat: bool = False
    """A quality-control repeat of ``repeat_of`` with the sides swapped."""
    is_gold: bool = False
    """A pair with a known answer (:class:`GoldPair`)."""
    app_version: str | None = None
    created_at: str = ""
    repeat_of: str | None = None
    rater: str = ""
    """The rater's name."""


@dataclass(frozen=True)
class Assignment:
    """A pair put in front of a rater; the open one (``done_at`` None) is what they see now."""

    assignment_id: str
    """Also the id of the vote that answers it."""
    run_id: str
    rater_id: str
    prompt_id: str
    left_key: str
    right_key: str
    left_model: str
    right_model: str
    kind: str = "pair"
    """``pair``, ``repeat`` or ``gold``."""
    repeat_of: str | None = None
    """For ``repeat``: the vote repeated."""
    shown_at: str = ""
    done_at: str | None = None


@dataclass(frozen=True)
class GoldPair:
    """A pair with a known answer for quality control: ``better_key`` should win."""

    run_id: str
    better_key: str
    worse_key: str
    note: str | None = None
    created_at: str = ""


def decode(row: Mapping[str, Any], json_cols: tuple[str, ...] = (), bool_cols: tuple[str, ...] = (),
           ) -> dict[str, Any]:
    """A SQLite row as keyword arguments of a row class: JSON columns parsed, flags as bools."""
    import json

    d = dict(row)
    for c in json_cols:
        d[c] = json.loads(d[c]) if d[c] is not None else None
    for c in bool_cols:
        d[c] = bool(d[c])
    return d


__all__ = ["Assignment", "GoldPair", "Rater", "Record", "Run", "ScoreRow", "SetScore", "UnitCounts",
           "Vote", "decode"]
