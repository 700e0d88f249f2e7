"""Leaderboards: a pure function from the store to tables, and renderers that write files."""

from harness.leaderboard.report import write_report
from harness.leaderboard.table import Leaderboard, build_leaderboard

__all__ = ["Leaderboard", "build_leaderboard", "write_report"]
