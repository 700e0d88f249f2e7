"""Error types for the user, and the "did you mean" helper every layer phrases them with.

A :class:`ConfigError` or :class:`UserError` is printed by the ``harness`` command without a
traceback (exit status 2): its message names the file, key or value and says how to fix it.
"""

from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A configuration problem, phrased for the user (key, valid values, how to fix)."""


class UserError(Exception):
    """An error for the user: printed without a traceback, exit status 2."""


def did_you_mean(word: str, options: list[str] | tuple[str, ...]) -> str:
    """'did you mean X?' plus the full list, for unknown names."""
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"{hint} Valid: {', '.join(sorted(options))}."
