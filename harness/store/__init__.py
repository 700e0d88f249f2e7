"""The store: one directory holding a SQLite database (numbered migrations) and images as PNG
files named by the sha256 of their bytes. It is the single source of truth every stage reads.

Modules: ``db`` (connection, transactions, migrations), ``images`` (content-addressed PNGs),
``runs`` (runs, plans, records), ``scores``, ``ratings`` (raters, assignments, votes, gold
pairs), ``journal`` (paid API calls), ``rows`` (the typed rows reads return), ``store`` (the
:class:`Store` made of them).
"""

from harness.store.db import StoreError
from harness.store.store import Store

__all__ = ["Store", "StoreError"]
