"""The declared headline: what ranks the models, why, who wins and whether that is a tie.

``report.headline`` picks the score every report leads with:

- ``auto`` (default): human preference (Bradley-Terry) when the run has at least
  ``report.min_votes`` counted votes and two rated models; else the suite's declared
  ``primary_metric`` when the run scored it; else the composite.
- ``preference``: human preference, whatever the number of votes.
- ``composite``: the mean of each model's rank over the headline metrics (every metric's first
  output, each read in its own direction; a model without a value ranks last on that metric);
  lower is better.
- any stored metric name (``attributes.all``, ``ocr.word_f1``, ``fid_toy.fid`` ...).

Ranks carry statistical ties: from paired bootstrap replicates (the same resampled prompts for
every model, see :func:`harness.leaderboard.stats.clustered_replicates`) a model is ahead of
another only when the interval of their difference excludes 0
(:func:`harness.leaderboard.stats.rank_ranges`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import ConfigError

HEADLINE_CHOICES = ("auto", "preference", "composite")
"""``report.headline`` values besides a metric name."""


@dataclass
class Headline:
    """What ranks the models in every report, and its verdict."""

    kind: str
    """``preference``, ``metric``, ``composite`` or ``none`` (nothing to rank)."""
    requested: str
    """The ``report.headline`` setting it came from."""
    label: str
    """Human name of the score (``human preference (Bradley–Terry rating)``, a metric name ...)."""
    why: str
    """One sentence: why this score ranks the models."""
    higher_is_better: bool = True
    """Direction of the ``headline`` column (a composite mean rank: lower is better)."""
    metric: str | None = None
    """The stored metric name when ``kind == "metric"``."""
    metrics: list[str] = field(default_factory=list)
    """Composite only: the metrics whose ranks are averaged."""
    winner: str | None = None
    """Config name of the best model (None when nothing ranks)."""
    tied_with: list[str] = field(default_factory=list)
    """Models the winner cannot be told apart from at ``ci`` (empty: a clear winner)."""
    ci: float = 0.95
    """Confidence level of the intervals and of the ties."""
    sentence: str = ""
    """The first line of every report."""
    column: str = "headline"
    """Column of ``Leaderboard.models`` holding the score (with ``_lo``/``_hi`` and rank columns)."""

    def as_dict(self) -> dict[str, Any]:
        """Plain fields, for JSON."""
        return {k: getattr(self, k) for k in ("kind", "requested", "label", "why", "higher_is_better",
                                              "metric", "metrics", "winner", "tied_with", "ci",
                                              "sentence", "column")}


def check_headline(requested: str, available: list[str], where: str = "report.headline") -> None:
    """Raise ConfigError unless ``requested`` is a headline choice or one of ``available`` (the
    run's stored metric names), with the closest names."""
    if requested in HEADLINE_CHOICES or requested in available:
        return
    close = difflib.get_close_matches(requested, list(available) + list(HEADLINE_CHOICES), n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"{where}={requested!r} is not a metric of this run nor one of "
                      f"{', '.join(HEADLINE_CHOICES)}.{hint} Metrics of this run: "
                      f"{', '.join(sorted(available)) or 'none'}.")


def check_primary_metric(primary: str | None, outputs: dict[str, list[str]], where: str) -> None:
    """Check a suite's ``primary_metric`` against the selected metrics before a run.

    ``outputs``: metric config name -> its output names (empty for a single-number metric). A
    metric the run does not select is fine (the report then falls back to the composite and
    says so); a misspelt output of a selected metric is an error naming the valid ones.
    """
    if not primary:
        return
    base, _, out = primary.partition(".")
    if base not in outputs:
        return
    valid = [f"{base}.{o}" for o in outputs[base]] or [base]
    if primary in valid:
        return
    close = difflib.get_close_matches(primary, valid, n=3)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"{where}: primary_metric {primary!r} names no output of metric {base!r}.{hint} "
                      f"Its outputs: {', '.join(valid)}.")


def choose(requested: str, *, n_votes: int, rated: int, min_votes: int, primary: str | None,
           available: list[str], suite: str) -> tuple[str, str | None, str]:
    """(kind, metric, why) for the ``report.headline`` setting and what the run has.

    ``rated``: models with a preference rating; ``available``: stored metric names.
    """
    check_headline(requested, available)
    if requested == "preference":
        return "preference", None, (f"Human preference leads because report.headline=preference (the run has "
                                    f"{n_votes} counted vote{'s' if n_votes != 1 else ''}).")
    if requested == "composite":
        return "composite", None, "The composite leads because report.headline=composite."
    if requested != "auto":
        return "metric", requested, f"{requested} leads because report.headline={requested}."
    votes = (f"the run has {n_votes} human vote{'s' if n_votes != 1 else ''}"
             + (f" (report.min_votes={min_votes})" if n_votes >= min_votes else
                f", fewer than report.min_votes={min_votes}"))
    if n_votes >= min_votes and rated >= 2:
        return "preference", None, f"Human preference leads because {votes}."
    if n_votes >= min_votes:
        votes += ", but fewer than two models are rated"
    if primary and primary in available:
        return "metric", primary, (f"{primary} leads because {votes}, and suite {suite} declares "
                                   f"{primary} its primary metric.")
    missing = (f"; suite {suite} declares {primary} its primary metric, which this run did not score"
               if primary else f"; suite {suite} declares no primary metric (suite.primary_metric)")
    return "composite", None, f"The composite leads because {votes}{missing}."


def mean_ranks(point: np.ndarray, reps: np.ndarray | None, higher_is_better: bool) -> tuple[np.ndarray,
                                                                                           np.ndarray | None]:
    """Each model's rank on one metric (1 = best; equal values share the average rank; a model
    without a value ranks last), for the point values and for every replicate row."""

    def ranks(x: np.ndarray) -> np.ndarray:
        s = np.where(np.isfinite(x), x if higher_is_better else -x, -np.inf)
        ahead = (s[..., None, :] > s[..., :, None]).sum(-1)
        same = (s[..., None, :] == s[..., :, None]).sum(-1) - 1
        return 1.0 + ahead + 0.5 * same

    return ranks(np.asarray(point, dtype=float)), (None if reps is None else ranks(np.asarray(reps)))


def composite(points: list[np.ndarray], reps: list[np.ndarray | None], directions: list[bool],
              resamples: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean rank over metrics (lower is better), for the point values and per replicate (a
    metric without replicates, e.g. a set metric, keeps its point ranks in every replicate)."""
    if not points:
        return np.zeros(0), None
    n = len(points[0])
    pr = [mean_ranks(p, r, d) for p, r, d in zip(points, reps, directions, strict=True)]
    # a model with no value on any of them (e.g. every request refused) is not ranked at all
    unscored = np.all([~np.isfinite(p) for p in points], axis=0)
    point = np.where(unscored, np.nan, np.mean([a for a, _ in pr], axis=0))
    if all(b is None for _, b in pr):
        return point, None
    rep = np.mean([b if b is not None else np.broadcast_to(a, (resamples, n)) for a, b in pr], axis=0)
    return point, np.where(unscored[None, :], np.nan, rep)


def verdict(names: list[str], point: np.ndarray, better: np.ndarray, rank: np.ndarray
            ) -> tuple[str | None, list[str]]:
    """(winner, models tied with it): the point rank 1 and every model it is not ahead of."""
    if not np.isfinite(rank).any():
        return None, []
    w = int(np.nanargmin(rank))
    tied = [names[j] for j in np.argsort(rank, kind="stable")
            if j != w and np.isfinite(point[j]) and not better[w, j]]
    return names[w], tied


def sentence(h: Headline, labels: dict[str, str], n_models: int) -> str:
    """The first line of a report: the winner by the headline and whether it is tied."""
    level = f"{100 * h.ci:g}%"
    by = {"preference": "human preference (Bradley–Terry rating from blind pairwise votes)",
          "metric": f"{h.label}", "composite": h.label}.get(h.kind, h.label)
    if h.kind == "metric" and "primary metric" in h.why:
        by += " (the suite's declared primary metric)"
    if h.winner is None:
        if n_models == 0:
            return "No models in this run: nothing to rank."
        return f"No winner by {by}: no model has a score yet."
    win = f"**{labels.get(h.winner, h.winner)}**"
    if n_models == 1:
        return f"Only one model, {win}, ranked by {by}: nothing to compare it with."
    if not h.tied_with:
        return f"Winner by {by}: {win}, ahead of every other model at {level} confidence."
    others = ", ".join(labels.get(m, m) for m in h.tied_with)
    return (f"Winner by {by}: {win}, statistically tied with {others} (the {level} interval of the "
            "difference includes 0).")
