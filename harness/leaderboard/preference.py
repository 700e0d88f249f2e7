"""Human-preference statistics: pure functions on a table of blind pairwise votes.

A votes table is a pandas DataFrame with one row per vote and the columns ``left`` and ``right``
(model names as shown), ``choice`` (one of ``"left"``, ``"right"``, ``"tie"``, ``"both_bad"``),
``rater``, ``prompt_id`` and optionally ``tags`` (a list of str per vote). Nothing here reads the
store or writes files; every function is deterministic for given votes and seed.

Model: Bradley-Terry, P(i beats j) = sigmoid(theta_i - theta_j), fitted by maximum likelihood
on the aggregated win matrix (cost per iteration is O(models^2), not O(votes)). A tie counts
half a win to each side; "both bad" counts as a tie unless ``both_bad="drop"``.

Prior (``prior``, default 0.5): every model that has votes gets ``prior`` pseudo-wins and
``prior`` pseudo-losses against a virtual model fixed at theta = 0 (one pseudo-tie by default).
This keeps the estimate finite for a model that never won or never lost, and for groups of
models never compared with each other, at the cost of a slight pull towards the average
(negligible with hundreds of votes per model). ``prior=0`` gives the plain MLE; it exists only
when the win graph is strongly connected, otherwise the strengths are NaN with a reason.
Models with no votes at all (e.g. all their outputs were refused) are NaN, reason ``"no votes"``.
Log-strengths are reported centred (mean 0 over the models with votes).

Empty or degenerate inputs give empty or NaN results with a ``reason`` (a column, or
``attrs["reason"]`` on a Series), never an exception; malformed input raises ``ValueError``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from harness.leaderboard.stats import rank_ranges, rank_text

CHOICES = ("left", "right", "tie", "both_bad")
"""Allowed values of the ``choice`` column."""
REQUIRED_COLUMNS = ("left", "right", "choice")
ELO_SCALE = 400.0 / math.log(10.0)
"""Elo points per unit of log-strength (a 400-point gap means 10:1 odds)."""
ELO_ANCHOR = 1000.0

NO_VOTES = "no votes"


# ----------------------------------------------------------------------------------------------
# input checks and aggregation


def check_votes(votes: pd.DataFrame) -> None:
    """Raise ValueError, naming the row and the fix, unless ``votes`` is a valid votes table."""
    if not isinstance(votes, pd.DataFrame):
        raise ValueError(f"votes must be a pandas DataFrame, got {type(votes).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in votes.columns]
    if missing:
        raise ValueError(f"votes table lacks column(s) {missing}; it has {list(votes.columns)} "
                         f"and needs {list(REQUIRED_COLUMNS)} (plus rater, prompt_id, tags)")
    if not len(votes):
        return
    bad = ~votes["choice"].isin(CHOICES)
    if bad.any():
        row = votes.index[bad.to_numpy()][0]
        raise ValueError(f"votes row {row!r}: choice {votes.loc[row, 'choice']!r} is not one of {CHOICES}")
    same = (votes["left"] == votes["right"]).to_numpy()
    if same.any():
        row = votes.index[same][0]
        raise ValueError(f"votes row {row!r}: model {votes.loc[row, 'left']!r} is compared with itself")
    if votes["left"].isna().any() or votes["right"].isna().any():
        raise ValueError("votes table has a missing model name in left/right")


def check_options(ties: str, both_bad: str) -> None:
    """Raise ValueError unless ``ties`` and ``both_bad`` are among the accepted settings."""
    if ties not in ("half", "drop"):
        raise ValueError(f"ties={ties!r}: use 'half' (half a win each) or 'drop'")
    if both_bad not in ("tie", "drop"):
        raise ValueError(f"both_bad={both_bad!r}: use 'tie' (counted as a tie) or 'drop'")


def _model_list(votes: pd.DataFrame, models: Iterable[str] | None) -> list[str]:
    seen = sorted(set(votes["left"]).union(votes["right"])) if len(votes) else []
    if models is None:
        return seen
    models = list(dict.fromkeys(models))
    unknown = [m for m in seen if m not in set(models)]
    if unknown:
        raise ValueError(f"votes name model(s) {unknown} that are not in models={models}; "
                         "filter the votes first or add them to models")
    return models


def _weights(ties: str, both_bad: str) -> dict[str, tuple[float, float]]:
    """(left credit, right credit) per choice; a choice left out is not counted."""
    w = {"left": (1.0, 0.0), "right": (0.0, 1.0)}
    if ties == "half":
        w["tie"] = (0.5, 0.5)
        if both_bad == "tie":
            w["both_bad"] = (0.5, 0.5)
    return w


class _Cells:
    """Votes aggregated into distinct (left, right, choice) cells over the models with votes.

    Resampling votes with replacement is the same as a multinomial draw of cell counts with
    the observed shares, which is what the bootstrap does (no 100k-row re-aggregation).
    """

    def __init__(self, votes: pd.DataFrame, models: list[str], ties: str, both_bad: str):
        w = _weights(ties, both_bad)
        self.options: tuple = ()  # (ties, both_bad, prior, n_boot, seed) once fitted, see _analyse
        used = votes[votes["choice"].isin(list(w))] if len(votes) else votes
        self.all_models = models
        active = set(used["left"]).union(used["right"]) if len(used) else set()
        self.models = [m for m in models if m in active]
        self.n_votes = len(used)
        m = len(self.models)
        self.cell_of_vote = np.zeros(0, dtype=np.int64)
        self.used = used
        if not len(used):
            self.counts = np.zeros(0)
            self.mix = np.zeros((0, m * m))
            return
        idx = {name: i for i, name in enumerate(self.models)}
        keys = [used["left"].map(idx), used["right"].map(idx), used["choice"]]
        grp = used.groupby(keys).size()
        self.counts = grp.to_numpy(dtype=float)
        # each counted vote's cell, for bootstraps that resample prompts or raters, not votes
        self.cell_of_vote = used.groupby(keys).ngroup().to_numpy(dtype=np.int64)
        self.used = used
        self.mix = np.zeros((len(grp), m * m))
        for k, (li, ri, ch) in enumerate(grp.index):
            wl, wr = w[ch]
            self.mix[k, li * m + ri] += wl
            self.mix[k, ri * m + li] += wr

    def wins(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Win matrix W[..., i, j]: credit of i over j (ties half), for one or a batch of counts."""
        c = self.counts if counts is None else counts
        m = len(self.models)
        return (c @ self.mix).reshape(*np.shape(c)[:-1], m, m)


# ----------------------------------------------------------------------------------------------
# the fit


def _loglik(theta: np.ndarray, wins: np.ndarray, prior: float) -> np.ndarray:
    d = theta[..., :, None] - theta[..., None, :]
    ll = -(wins * np.logaddexp(0.0, -d)).sum(axis=(-1, -2))
    if prior > 0:
        ll += prior * (theta.sum(-1) - 2.0 * np.logaddexp(0.0, theta).sum(-1))
    else:  # the likelihood ignores a common shift; this pins the mean at 0 without moving the optimum
        ll -= 0.5 * theta.sum(-1) ** 2
    return ll


def _fit(wins: np.ndarray, prior: float, theta0: np.ndarray | None = None, *,
         max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """Batched damped Newton on the concave log-likelihood; returns (theta, converged).

    ``wins`` is (..., m, m). Each step solves the m x m Newton system for every batch member at
    once and halves the step until the log-likelihood does not drop (so it cannot diverge).
    """
    m = wins.shape[-1]
    batch = wins.shape[:-2]
    theta = np.zeros((*batch, m)) if theta0 is None else np.broadcast_to(theta0, (*batch, m)).copy()
    n = wins + np.swapaxes(wins, -1, -2)
    w = wins.sum(-1)
    done = np.zeros(batch, dtype=bool)
    ll = _loglik(theta, wins, prior)
    eye = np.eye(m)
    for _ in range(max_iter):
        d = theta[..., :, None] - theta[..., None, :]
        s = 1.0 / (1.0 + np.exp(-d))
        g = w - (n * s).sum(-1)
        v = n * s * (1.0 - s)
        neg_h = -v + eye * v.sum(-1)[..., None]  # -H: Laplacian of the information weights
        if prior > 0:
            sp = 1.0 / (1.0 + np.exp(-theta))
            g = g + prior * (1.0 - 2.0 * sp)
            neg_h = neg_h + eye * (2.0 * prior * sp * (1.0 - sp))[..., None]
        else:
            g = g - theta.sum(-1, keepdims=True)
            # The ridge only shapes the step (not the optimum): keeps a resample that split the
            # graph solvable; such a fit then runs away, fails to converge and is reported NaN.
            neg_h = neg_h + 1.0 + 1e-9 * eye
        step = np.linalg.solve(neg_h, g[..., None])[..., 0]
        step[done] = 0.0
        t = np.ones(batch)
        for _ in range(30):
            cand = theta + t[..., None] * step
            ll_new = _loglik(cand, wins, prior)
            bad = ll_new < ll - 1e-12 * np.abs(ll)
            if not bad.any():
                break
            t = np.where(bad, t / 2, t)
        theta, ll = cand, np.maximum(ll_new, ll)
        done = done | (np.abs(step * t[..., None]).max(-1, initial=0.0) < tol)
        if done.all():
            break
    return theta, done


def _centre(theta: np.ndarray) -> np.ndarray:
    return theta - theta.mean(-1, keepdims=True)


def connected_components(wins: np.ndarray, strong: bool) -> tuple[int, np.ndarray]:
    """(number of components, label per model) of the win graph (i -> j when i has credit over j).

    Transitive closure by repeated squaring: O(m^3 log m), trivial for leaderboard sizes, and it
    keeps numpy the only numeric dependency of the leaderboard.
    """
    m = wins.shape[0]
    reach = ((wins > 0) if strong else ((wins + wins.T) > 0)) | np.eye(m, dtype=bool)
    for _ in range(max(1, int(np.ceil(np.log2(max(m, 2)))))):
        reach = (reach.astype(np.int64) @ reach.astype(np.int64)) > 0
    both = reach & reach.T  # same component: each reaches the other
    labels = both.argmax(axis=1)  # lowest index in the component
    _, labels = np.unique(labels, return_inverse=True)
    return int(labels.max()) + 1 if m else 0, labels


def bradley_terry(votes: pd.DataFrame, *, models: Iterable[str] | None = None, ties: str = "half",
                  both_bad: str = "tie", prior: float = 0.5, max_iter: int = 100,
                  tol: float = 1e-10) -> pd.Series:
    """Bradley-Terry log-strengths by maximum likelihood, centred to mean 0.

    Args:
        votes: votes table (see the module docstring).
        models: models to report, in this order (e.g. every model of the run, including ones
            with no votes, which come out NaN). Default: the models in the votes, sorted.
        ties: ``"half"`` (a tie is half a win each) or ``"drop"``.
        both_bad: ``"tie"`` (count as a tie) or ``"drop"``.
        prior: pseudo-wins and pseudo-losses of each model against a virtual average model.
        max_iter, tol: Newton iterations and the step size taken as converged.

    Returns:
        Series of log-strengths indexed by model (name ``"strength"``); ``attrs["reason"]``
        says why it is empty or NaN, ``attrs["reasons"]`` maps models to per-model reasons.
    """
    check_votes(votes)
    check_options(ties, both_bad)
    names = _model_list(votes, models)
    cells = _Cells(votes, names, ties, both_bad)
    theta, reason, reasons = _fit_cells(cells, prior, max_iter, tol)
    out = pd.Series(np.nan, index=pd.Index(names, name="model"), name="strength", dtype=float)
    out.loc[cells.models] = theta
    out.attrs.update(reason=reason, reasons=reasons, prior=prior, ties=ties, both_bad=both_bad,
                     n_votes=cells.n_votes)
    return out


def _fit_cells(cells: _Cells, prior: float, max_iter: int, tol: float
               ) -> tuple[np.ndarray, str, dict[str, str]]:
    reasons = {m: NO_VOTES for m in cells.all_models if m not in set(cells.models)}
    m = len(cells.models)
    if cells.n_votes == 0:
        return np.zeros(0), NO_VOTES, reasons
    wins = cells.wins()
    if prior <= 0:
        k, _ = connected_components(wins, strong=True)
        if k > 1:
            return (np.full(m, np.nan), "win graph not strongly connected (a model never won or never "
                    "lost against the rest): the MLE does not exist; use prior > 0", reasons)
    else:
        k, labels = connected_components(wins, strong=False)
        if k > 1:
            main = np.bincount(labels).argmax()
            for i, name in enumerate(cells.models):
                if labels[i] != main:
                    reasons[name] = "never compared with the main group; placed by the prior only"
    theta, ok = _fit(wins, prior, max_iter=max_iter, tol=tol)
    if not ok:
        return np.full(m, np.nan), f"did not converge in {max_iter} iterations", reasons
    return _centre(theta), "", reasons


# ----------------------------------------------------------------------------------------------
# bootstrap and the leaderboard table


CLUSTERS = {"vote": (), "prompt": ("prompt_id",), "rater": ("rater",), "prompt+rater": ("prompt_id", "rater")}
"""What the preference bootstrap resamples: single votes, or whole prompts and/or raters (votes
on one prompt, or by one rater, are not independent; resampling them as groups keeps the
intervals honest)."""


def check_cluster(cluster: str, votes: pd.DataFrame) -> tuple[str, ...]:
    """The vote columns ``cluster`` resamples by; ValueError for an unknown choice or a votes
    table without them."""
    if cluster not in CLUSTERS:
        close = difflib.get_close_matches(str(cluster), list(CLUSTERS), n=2)
        hint = f" did you mean {close}?" if close else ""
        raise ValueError(f"cluster={cluster!r}:{hint} use one of {list(CLUSTERS)}")
    cols = CLUSTERS[cluster]
    missing = [c for c in cols if c not in votes.columns]
    if missing and len(votes):
        raise ValueError(f"cluster={cluster!r} needs the votes column(s) {missing}; the table has "
                         f"{list(votes.columns)}")
    return cols


DENSE_GROUP_CELLS = 4_000_000
"""Largest (cluster groups x vote cells) block the clustered bootstrap builds densely."""


def _resampled_counts(cells: _Cells, cluster: str, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, cells) vote counts of bootstrap resamples: votes drawn with replacement, or
    whole clusters (every vote of a drawn prompt / rater, as often as it was drawn; with
    ``prompt+rater`` prompts and raters are drawn independently and a vote counts the product of
    its prompt's and its rater's draws)."""
    cols = CLUSTERS[cluster]
    n_cells = len(cells.counts)
    if not cols:
        n = int(cells.counts.sum())
        return rng.multinomial(n, cells.counts / n, size=n_boot).astype(float)
    # votes grouped by their cluster combination: (groups, cells) counts, so a resample is a
    # matrix product over groups, never over single votes
    keys = cells.used[list(cols)].astype(str)
    group = keys.groupby(list(cols), sort=True).ngroup().to_numpy(dtype=np.int64)
    n_groups = int(group.max()) + 1 if len(group) else 0
    draws, of_group = [], []
    for col in cols:
        labels, ids = np.unique(keys[col].to_numpy(), return_inverse=True)
        first = np.zeros(n_groups, dtype=np.int64)
        first[group] = ids  # each group's label in this column
        k = len(labels)
        draws.append(rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float))  # (n_boot, k)
        of_group.append(first)
    out = np.zeros((n_boot, n_cells))
    # (groups, cells) as one dense block when it is small; else a sparse sum per resample, so
    # prompt+rater on 100k votes never builds a 100k x cells matrix
    dense = n_groups * n_cells <= DENSE_GROUP_CELLS
    per_group = np.zeros((n_groups, n_cells)) if dense else None
    if per_group is not None:
        np.add.at(per_group, (group, cells.cell_of_vote), 1.0)
    step = max(1, 4_000_000 // max(1, n_groups))
    for start in range(0, n_boot, step):
        w = np.ones((min(step, n_boot - start), n_groups))
        for d, first in zip(draws, of_group, strict=True):
            w *= d[start:start + len(w), first]
        if per_group is not None:
            out[start:start + len(w)] = w @ per_group
        else:
            for j, row in enumerate(w):
                out[start + j] = np.bincount(cells.cell_of_vote, weights=row[group], minlength=n_cells)
    return out


def _bootstrap(cells: _Cells, theta_full: np.ndarray, prior: float, n_boot: int, seed: int,
               max_iter: int, tol: float, cluster: str = "vote") -> np.ndarray:
    """(n_boot, m) centred log-strengths of resamples (of votes, or clustered, see
    :data:`CLUSTERS`); NaN rows for fits that failed."""
    rng = np.random.default_rng(seed)
    draws = _resampled_counts(cells, cluster, n_boot, rng)
    m = len(cells.models)
    out = np.empty((n_boot, m))
    chunk = max(1, 2_000_000 // max(1, m * m))  # bound the (chunk, m, m) temporaries
    for start in range(0, n_boot, chunk):
        c = draws[start:start + chunk]
        theta, ok = _fit(cells.wins(c), prior, theta_full, max_iter=max_iter, tol=max(tol, 1e-8))
        theta = _centre(theta)
        theta[~ok] = np.nan
        out[start:start + chunk] = theta
    return out


def _resolve_baseline(baseline: str | None, names: list[str]) -> None:
    if baseline is not None and baseline not in names:
        close = difflib.get_close_matches(str(baseline), names, n=3)
        hint = f" did you mean {close}?" if close else ""
        raise ValueError(f"baseline {baseline!r} is not a model in the votes;{hint} models: {names}")


def _tally(votes: pd.DataFrame, names: list[str], both_bad: str) -> pd.DataFrame:
    rows = {m: dict(wins=0, losses=0, ties=0, both_bad=0) for m in names}
    if len(votes):
        for (left, right, choice), k in votes.groupby(["left", "right", "choice"]).size().items():
            if choice == "left":
                rows[left]["wins"] += k
                rows[right]["losses"] += k
            elif choice == "right":
                rows[right]["wins"] += k
                rows[left]["losses"] += k
            else:
                key = "ties" if choice == "tie" else "both_bad"
                rows[left][key] += k
                rows[right][key] += k
    t = pd.DataFrame([rows[m] for m in names], index=pd.Index(names, name="model"),
                     columns=["wins", "losses", "ties", "both_bad"], dtype="int64")
    t["votes"] = t[["wins", "losses", "ties", "both_bad"]].sum(axis=1)
    tied = t["ties"] + (t["both_bad"] if both_bad == "tie" else 0)
    counted = t["wins"] + t["losses"] + tied
    t["win_rate"] = (t["wins"] + 0.5 * tied) / counted.where(counted > 0)
    return t


def _analyse(votes, models, ties, both_bad, prior, n_boot, seed, max_iter, tol, cluster="vote"):
    check_votes(votes)
    check_options(ties, both_bad)
    check_cluster(cluster, votes)
    if n_boot < 0:
        raise ValueError(f"n_boot={n_boot} must be >= 0")
    names = _model_list(votes, models)
    cells = _Cells(votes, names, ties, both_bad)
    cells.options = (ties, both_bad, prior, n_boot, seed)
    theta, reason, reasons = _fit_cells(cells, prior, max_iter, tol)
    ok = len(theta) > 0 and np.isfinite(theta).all()
    boot = (_bootstrap(cells, theta, prior, n_boot, seed, max_iter, tol, cluster) if ok and n_boot > 0
            else np.full((0, len(cells.models)), np.nan))
    return names, cells, theta, reason, reasons, boot


def strengths_with_replicates(votes: pd.DataFrame, models: list[str], *, n_boot: int = 1000, seed: int = 0,
                              both_bad: str = "tie", cluster: str = "vote", prior: float = 0.5
                              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Centred Bradley-Terry log-strengths for ``models`` (NaN for a model without votes) and
    the bootstrap replicates (resamples, models) of the fits that converged (None below two)."""
    _, cells, theta, _, _, boot = _analyse(votes, models, "half", both_bad, prior, n_boot, seed, 100, 1e-10,
                                           cluster)
    point = np.full(len(models), np.nan)
    if not len(theta) or not np.isfinite(theta).all():
        return point, None
    col = {m: i for i, m in enumerate(cells.models)}
    point = np.array([theta[col[m]] if m in col else np.nan for m in models])
    good = boot[np.isfinite(boot).all(axis=1)] if len(boot) else boot
    if len(good) < 2:
        return point, None
    return point, np.column_stack([good[:, col[m]] if m in col else np.full(len(good), np.nan)
                                   for m in models])


def preference_table(votes: pd.DataFrame, *, baseline: str | None = None, n_boot: int = 1000,
                     seed: int = 0, ci: float = 0.95, models: Iterable[str] | None = None,
                     ties: str = "half", both_bad: str = "tie", prior: float = 0.5,
                     max_iter: int = 100, tol: float = 1e-10, cluster: str = "vote") -> pd.DataFrame:
    """Per-model preference leaderboard: Bradley-Terry strength, Elo-like rating, bootstrap CI.

    ``rating = 1000 + 400/ln(10) * (strength - strength[baseline])`` (baseline = 1000), or
    ``1000 + 400/ln(10) * strength`` (mean = 1000) without a baseline. CIs are seeded percentile
    bootstraps over ``n_boot`` resamples of the votes (drawn as multinomial cell counts, each fit
    warm-started from the full-data solution); rating CIs are of the difference to the baseline
    when there is one (so the baseline's own is a point). Sorted by strength, best first.
    ``cluster`` (:data:`CLUSTERS`) resamples whole prompts and/or raters instead of votes.

    Returns:
        One row per model: model, strength, strength_lo, strength_hi, rating, rating_lo,
        rating_hi, wins, losses, ties, both_bad, votes, win_rate, reason. ``attrs`` holds every
        setting plus ``n_votes``, ``failed_resamples`` and a table-level ``reason``.
    """
    fit = _analyse(votes, models, ties, both_bad, prior, n_boot, seed, max_iter, tol, cluster)
    return _table_from(fit, votes, baseline, ci)


def _table_from(fit: tuple, votes: pd.DataFrame, baseline: str | None, ci: float) -> pd.DataFrame:
    names, cells, theta, reason, reasons, boot = fit
    ties, both_bad, prior, n_boot, seed = cells.options
    _resolve_baseline(baseline, names)
    t = _tally(votes, names, both_bad)
    t.insert(0, "strength", np.nan)
    for col in ("strength_lo", "strength_hi", "rating", "rating_lo", "rating_hi"):
        t.insert(t.columns.get_loc("wins"), col, np.nan)
    t["reason"] = [reasons.get(m, reason) for m in names]
    failed = 0
    if len(theta) and np.isfinite(theta).all():
        fitted = cells.models
        t.loc[fitted, "strength"] = theta
        q = [(1 - ci) / 2, (1 + ci) / 2]
        ref_full, ref_boot = 0.0, np.zeros((len(boot), 1))
        if baseline is not None:
            if baseline not in fitted:
                t.loc[fitted, "reason"] = f"baseline {baseline!r} has no votes: no anchored rating"
            b = fitted.index(baseline) if baseline in fitted else None
            if b is not None:
                ref_full, ref_boot = theta[b], boot[:, [b]]
        rating = ELO_ANCHOR + ELO_SCALE * (theta - ref_full)
        t.loc[fitted, "rating"] = rating if baseline is None or baseline in fitted else np.nan
        good = np.isfinite(boot).all(axis=1)
        failed = int((~good).sum())
        if good.sum() >= 2:
            lo, hi = np.quantile(boot[good], q, axis=0)
            t.loc[fitted, "strength_lo"], t.loc[fitted, "strength_hi"] = lo, hi
            if baseline is None or baseline in fitted:
                r = ELO_ANCHOR + ELO_SCALE * (boot[good] - ref_boot[good])
                rlo, rhi = np.quantile(r, q, axis=0)
                t.loc[fitted, "rating_lo"], t.loc[fitted, "rating_hi"] = rlo, rhi
    t = t.sort_values("strength", ascending=False, na_position="last", kind="stable").reset_index()
    t.attrs.update(reason=reason, baseline=baseline, n_boot=n_boot, seed=seed, ci=ci, ties=ties,
                   both_bad=both_bad, prior=prior, n_votes=cells.n_votes, failed_resamples=failed,
                   elo_scale=ELO_SCALE, elo_anchor=ELO_ANCHOR)
    return t


# ----------------------------------------------------------------------------------------------
# descriptive tables


def win_rate_matrix(votes: pd.DataFrame, *, models: Iterable[str] | None = None, ties: str = "half",
                    both_bad: str = "tie") -> pd.DataFrame:
    """Share of counted votes in which the row model beat the column model (ties half).

    NaN on the diagonal and for pairs never compared; ``attrs["reason"]`` is ``"no votes"`` for
    an empty table.
    """
    check_votes(votes)
    check_options(ties, both_bad)
    names = _model_list(votes, models)
    cells = _Cells(votes, names, ties, both_bad)
    out = pd.DataFrame(np.nan, index=pd.Index(names, name="model"), columns=names)
    out.attrs.update(reason=NO_VOTES if cells.n_votes == 0 else "", ties=ties, both_bad=both_bad)
    if cells.n_votes:
        w = cells.wins()
        n = w + w.T
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(n > 0, w / np.where(n > 0, n, 1), np.nan)
        out.loc[cells.models, cells.models] = share
    return out


def position_bias(votes: pd.DataFrame, *, ci: float = 0.95) -> dict[str, Any]:
    """Share of decisive (left/right) votes that went to the left side, with a Wilson CI.

    Returns a dict: share_left, lo, hi (Wilson score interval), left, right, n (decisive votes),
    p_value (two-sided exact binomial test of 0.5), ci and reason (``"no decisive votes"`` when
    all are ties or there are none; the numbers are then NaN).
    """
    check_votes(votes)
    left = int((votes["choice"] == "left").sum()) if len(votes) else 0
    right = int((votes["choice"] == "right").sum()) if len(votes) else 0
    n = left + right
    out: dict[str, Any] = dict(share_left=math.nan, lo=math.nan, hi=math.nan, left=left, right=right,
                               n=n, p_value=math.nan, ci=ci, reason="")
    if n == 0:
        out["reason"] = "no decisive votes" if len(votes) else NO_VOTES
        return out
    p = left / n
    z = NormalDist().inv_cdf((1 + ci) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    out.update(share_left=p, lo=max(0.0, centre - half), hi=min(1.0, centre + half),
               p_value=_binom_two_sided(left, n))
    return out


def _binom_two_sided(k: int, n: int) -> float:
    """Exact two-sided binomial test of p = 0.5 (sum of outcomes no likelier than k, as scipy does)."""
    logfact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])
    logpmf = logfact[n] - logfact - logfact[::-1] - n * math.log(2.0)
    return float(min(1.0, np.exp(logpmf[logpmf <= logpmf[k] + 1e-7]).sum()))


def votes_per_pair(votes: pd.DataFrame, *, models: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per unordered pair (model_a < model_b, every pair listed, never-compared ones with 0).

    Columns: model_a, model_b, votes, a_wins, b_wins, ties, both_bad, a_left (votes with
    model_a shown on the left).
    """
    check_votes(votes)
    names = _model_list(votes, models)
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for i, a in enumerate(sorted(names)):
        for b in sorted(names)[i + 1:]:
            counts[(a, b)] = dict(votes=0, a_wins=0, b_wins=0, ties=0, both_bad=0, a_left=0)
    if len(votes):
        for (left, right, choice), k in votes.groupby(["left", "right", "choice"]).size().items():
            a, b = sorted((left, right))
            c = counts[(a, b)]
            c["votes"] += k
            c["a_left"] += k if left == a else 0
            if choice in ("tie", "both_bad"):
                c["ties" if choice == "tie" else "both_bad"] += k
            else:
                winner = left if choice == "left" else right
                c["a_wins" if winner == a else "b_wins"] += k
    out = pd.DataFrame([{"model_a": a, "model_b": b, **c} for (a, b), c in counts.items()],
                       columns=["model_a", "model_b", "votes", "a_wins", "b_wins", "ties", "both_bad",
                                "a_left"])
    out.attrs["reason"] = NO_VOTES if not len(votes) else ("fewer than two models" if len(names) < 2 else "")
    return out


def by_tag(votes: pd.DataFrame, *, stat: str = "strength", min_votes: int = 1, ties: str = "half",
           both_bad: str = "tie", prior: float = 0.5) -> pd.DataFrame:
    """Strength (Bradley-Terry on the tag's votes) or win rate per (tag, model).

    A vote counts for every tag in its ``tags`` list. Long table: tag, model, value, votes,
    reason; tags with fewer than ``min_votes`` votes are listed with NaN values. Without a
    ``tags`` column the table is empty with ``attrs["reason"]``.
    """
    if stat not in ("strength", "win_rate"):
        raise ValueError(f"stat={stat!r}: use 'strength' or 'win_rate'")
    check_votes(votes)
    cols = ["tag", "model", "value", "votes", "reason"]
    if "tags" not in votes.columns or not len(votes):
        out = pd.DataFrame(columns=cols)
        out.attrs["reason"] = NO_VOTES if not len(votes) else "votes have no tags column"
        return out
    names = _model_list(votes, None)
    long = votes.assign(tags=votes["tags"].map(lambda t: list(t) if isinstance(t, (list, tuple)) else []))
    long = long.explode("tags").dropna(subset=["tags"])
    rows = []
    for tag, grp in long.groupby("tags", sort=True):
        grp = grp.drop(columns="tags")
        tally = _tally(grp, names, both_bad)
        few = len(grp) < min_votes
        vals = (bradley_terry(grp, models=names, ties=ties, both_bad=both_bad, prior=prior)
                if stat == "strength" and not few else tally["win_rate"])
        for m in names:
            v = float(vals[m])
            reason = (f"fewer than {min_votes} votes for this tag" if few
                      else (NO_VOTES if tally.loc[m, "votes"] == 0 else ""))
            rows.append(dict(tag=tag, model=m, value=math.nan if few or reason else v,
                             votes=int(tally.loc[m, "votes"]), reason=reason))
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(reason="" if rows else "no vote has a tag", stat=stat, ties=ties,
                     both_bad=both_bad, prior=prior)
    return out


def votes_needed(votes: pd.DataFrame, *, level: float = 0.95, n_boot: int = 1000, seed: int = 0,
                 models: Iterable[str] | None = None, ties: str = "half", both_bad: str = "tie",
                 prior: float = 0.5, max_iter: int = 100, tol: float = 1e-10,
                 cluster: str = "vote") -> pd.DataFrame:
    """Rough number of further votes that would separate each pair of neighbours in rating order.

    For neighbours (upper, lower) the gap is the difference of their log-strengths and
    ``half_width`` is half the bootstrap ``level`` interval of that difference. Assuming new
    votes arrive with the current mix of pairs and the half-width shrinks as 1/sqrt(n) with the
    total vote count n, the pair separates when ``half_width * sqrt(n / n') <= gap``, i.e.
    ``n' = n * (half_width / gap)^2``; ``more_votes = max(0, n' - n)`` (0 when the interval
    already excludes 0; inf for a zero gap). A planning figure, not a guarantee: it ignores that
    the gap estimate itself moves and that votes could be aimed at the pair in question.

    Returns:
        One row per neighbouring pair: upper, lower, gap, half_width, separated, votes_now,
        votes_needed (total) and more_votes; empty with ``attrs["reason"]`` below two rated models.
    """
    fit = _analyse(votes, models, ties, both_bad, prior, n_boot, seed, max_iter, tol, cluster)
    return _needed_from(fit, level)


def _needed_from(fit: tuple, level: float) -> pd.DataFrame:
    names, cells, theta, reason, _, boot = fit
    ties, both_bad, prior, n_boot, seed = cells.options
    cols = ["upper", "lower", "gap", "half_width", "separated", "votes_now", "votes_needed", "more_votes"]
    good = boot[np.isfinite(boot).all(axis=1)] if len(boot) else boot
    if len(theta) < 2 or not np.isfinite(theta).all() or len(good) < 2:
        out = pd.DataFrame(columns=cols)
        out.attrs["reason"] = reason or ("fewer than two models with votes" if len(theta) < 2
                                         else "no bootstrap resamples")
        return out
    order = np.argsort(-theta, kind="stable")
    n = cells.n_votes
    rows = []
    for a, b in zip(order[:-1], order[1:], strict=True):
        gap = float(theta[a] - theta[b])
        lo, hi = np.quantile(good[:, a] - good[:, b], [(1 - level) / 2, (1 + level) / 2])
        half = float(hi - lo) / 2
        separated = bool(lo > 0)
        if separated:
            need = float(n)
        elif gap <= 0:
            need = math.inf
        else:
            need = max(float(n), n * (half / gap) ** 2)
        rows.append(dict(upper=cells.models[a], lower=cells.models[b], gap=gap, half_width=half,
                         separated=separated, votes_now=n, votes_needed=need, more_votes=need - n))
    out = pd.DataFrame(rows, columns=cols)
    out.attrs.update(reason="", level=level, n_boot=n_boot, seed=seed, ties=ties, both_bad=both_bad,
                     prior=prior)
    return out


# ----------------------------------------------------------------------------------------------
# everything a report shows, in one call


@dataclass
class PreferenceSummary:
    """The human-preference tables of one run, as the renderers show them."""

    table: pd.DataFrame
    """:func:`preference_table`: per model strength, Elo-like rating and bootstrap CIs."""
    win_rates: pd.DataFrame
    """:func:`win_rate_matrix`: row model's share of counted votes against the column model."""
    pairs: pd.DataFrame
    """:func:`votes_per_pair`: every unordered pair, never-compared ones with 0 votes."""
    position: dict[str, Any]
    """:func:`position_bias`: share of decisive votes that went to the left image."""
    tags: pd.DataFrame
    """:func:`by_tag` with ``stat="strength"``: strength per (prompt tag, model)."""
    needed: pd.DataFrame
    """:func:`votes_needed`: further votes to separate each pair of neighbours."""
    n_votes: int
    """Votes in the input (after any exclusion upstream)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """baseline, n_boot, seed, ci, ties, both_bad, prior, cluster."""
    replicates: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Bootstrap log-strengths, one row per resample and one column per rated model (rows whose
    fit failed dropped): what the rank ranges of the headline are computed from."""

    @property
    def reason(self) -> str:
        """Why there is nothing to show (empty when there is)."""
        return self.table.attrs.get("reason", "") if self.n_votes else NO_VOTES

    def never_compared(self) -> list[tuple[str, str]]:
        """Pairs of models with votes overall that were never shown together."""
        rated = set(self.table.loc[self.table["votes"] > 0, "model"])
        p = self.pairs
        if p.empty:
            return []
        gap = p[(p["votes"] == 0) & p["model_a"].isin(rated) & p["model_b"].isin(rated)]
        return list(zip(gap["model_a"], gap["model_b"], strict=True))


def summarise(votes: pd.DataFrame, *, models: Iterable[str] | None = None, baseline: str | None = None,
              n_boot: int = 1000, seed: int = 0, ci: float = 0.95, ties: str = "half",
              both_bad: str = "tie", prior: float = 0.5, cluster: str = "vote") -> PreferenceSummary:
    """Every preference table for a report, with the same settings throughout.

    ``models`` lists the run's models so that ones without votes are shown (NaN, with a reason);
    models that appear only in the votes are added after them. ``cluster``: what the bootstrap
    resamples (:data:`CLUSTERS`: votes, or whole prompts and/or raters).
    """
    check_votes(votes)
    names = list(dict.fromkeys(models or []))
    if len(votes):
        names += [m for m in sorted(set(votes["left"]).union(votes["right"])) if m not in set(names)]
    kw = dict(ties=ties, both_bad=both_bad)
    # one fit and one bootstrap serve both the table and the votes-needed estimate
    fit = _analyse(votes, names, ties, both_bad, prior, n_boot, seed, 100, 1e-10, cluster)
    boot = fit[5]
    reps = pd.DataFrame(boot[np.isfinite(boot).all(axis=1)] if len(boot) else boot,
                        columns=list(fit[1].models))
    table = _table_from(fit, votes, baseline, ci)
    # rank ranges (LMArena's rank spread): tied models share one, e.g. "1–2"
    order = list(table["model"])
    aligned = (np.column_stack([reps[m].to_numpy() if m in reps.columns else np.full(len(reps), np.nan)
                                for m in order]) if len(reps) >= 2 and order else None)
    _, rlo, rhi, _ = rank_ranges(table["strength"].to_numpy(dtype=float), aligned, True, ci)
    table["rank_lo"], table["rank_hi"] = rlo, rhi
    table["rank_text"] = [rank_text(a, b) for a, b in zip(rlo, rhi, strict=True)]
    return PreferenceSummary(
        table=table,
        win_rates=win_rate_matrix(votes, models=names, **kw),
        pairs=votes_per_pair(votes, models=names),
        position=position_bias(votes, ci=ci),
        tags=by_tag(votes, stat="strength", prior=prior, **kw),
        needed=_needed_from(fit, ci),
        n_votes=len(votes),
        settings=dict(baseline=baseline, n_boot=n_boot, seed=seed, ci=ci, prior=prior, cluster=cluster, **kw),
        replicates=reps,
    )
