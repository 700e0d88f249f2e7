"""The :class:`Store`: one object over a store directory, made of the focused parts.

Each part keeps one concern's SQL in its own module (images, runs and records, scores,
ratings) on top of the shared connection and migrations (:mod:`harness.store.db`). They are
combined by inheritance rather than wrapped in a facade so that every caller keeps one
``store`` object with the same methods, and no method is written twice to forward a call.
"""

from __future__ import annotations

from harness.store.ratings import Ratings
from harness.store.scores import Scores


class Store(Ratings, Scores):
    """A store directory: ``harness.sqlite``, ``images/ab/<sha256>.png``, ``runs/<run_id>/``.

    One SQLite connection per thread (WAL, busy timeout), so the rating app's threads and the
    runner can share a store. Reads return typed rows (:mod:`harness.store.rows`).
    """
