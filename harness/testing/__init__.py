"""Fake provider servers for tests and demos (``harness fake-providers``).

Shipped so the demo command works from an installed package, but imported only by tests and that
command: the import-linter contracts in pyproject.toml forbid the rest of the package to use it.
"""
