"""The store: one directory holding a SQLite database (numbered migrations) and images as PNG
files named by the sha256 of their bytes. It is the single source of truth every stage reads."""

from harness.store.sqlite import Store, StoreError

__all__ = ["Store", "StoreError"]
