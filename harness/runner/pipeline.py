"""The stages wired together on plain objects (no Hydra here): usable from a notebook.

    plan -> generate -> score -> report, each reading only what the previous stored.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.generators.base import Generator
from harness.metrics.base import Metric
from harness.runner.local import ExecStats, LocalExecutor
from harness.runner.plan import make_run_id, plan_units
from harness.store import Store
from harness.types import Suite, WorkUnit

log = logging.getLogger(__name__)

VERSIONED = ("harness", "torch", "diffusers", "transformers", "hydra-core", "numpy", "pillow")


def library_versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (importing nothing heavy)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: Path) -> str | None:
    """Commit of the git checkout holding ``path`` (with '+dirty' if modified), if any."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Plan:
    run_id: str
    suite: Suite
    units: list[WorkUnit]
    generators: Mapping[str, Generator]
    samples: int
    seed: int
    config: dict[str, Any] = field(default_factory=dict)


def make_plan(suite: Suite, generators: Mapping[str, Generator], *, samples: int, seed: int,
              name: str | None = None, config: dict[str, Any] | None = None) -> Plan:
    units = plan_units(suite, generators, samples, seed)
    return Plan(make_run_id(suite, units, name), suite, units, generators, samples, seed,
                dict(config or {}))


def save_plan(store: Store, plan: Plan, metrics: Mapping[str, Metric]) -> None:
    """Write the run manifest, prompt snapshot and planned units (idempotent)."""
    here = Path(__file__).resolve().parent
    manifest = {
        "run_id": plan.run_id,
        "suite": {"name": plan.suite.name, "version": plan.suite.version,
                  "description": plan.suite.description, "source": plan.suite.source,
                  "prompts": len(plan.suite.prompts), "hash": plan.suite.content_hash()},
        "samples": plan.samples,
        "seed": plan.seed,
        "models": {n: g.describe() for n, g in plan.generators.items()},
        "metrics": {n: m.describe() for n, m in metrics.items()},
        "units": len(plan.units),
        "config": plan.config,
        "git_commit": git_commit(Path.cwd()) or git_commit(here),
        "versions": library_versions(),
        "argv": sys.argv,
    }
    suite_hash = plan.suite.content_hash()
    store.save_run(
        plan.run_id, plan.suite.name, manifest, plan.suite.prompts, suite_hash,
        {n: g.describe() for n, g in plan.generators.items()},
        [(u.key, u.request.model, u.request.prompt_id, u.request.sample) for u in plan.units],
    )


def generate(store: Store, plan: Plan, executor: Any | None = None, *, retry_errors: bool = True,
             progress: bool = True) -> ExecStats:
    executor = executor or LocalExecutor()
    store.set_run_status(plan.run_id, "generating")
    t0 = time.perf_counter()
    stats = executor.execute(store, plan.generators, plan.units, retry_errors=retry_errors,
                             progress=progress)
    counts = store.unit_counts(plan.run_id)
    complete = all(c["pending"] == 0 and c["error"] == 0 for c in counts.values())
    store.set_run_status(plan.run_id, "generated" if complete else "incomplete")
    log.info("generate: %d generator calls in %.1fs", stats.calls, time.perf_counter() - t0)
    return stats


def report(store: Store, run_id: str, settings: Any = None) -> Path:
    """Build the run's leaderboard from the store and write every report file.

    ``settings`` is the ``report`` config section (``ReportConfig`` or anything with its
    attributes); missing attributes take the defaults. Returns reports/<suite>/<run>/.
    """
    from harness.config import ReportConfig
    from harness.leaderboard import build_leaderboard, write_report

    defaults = ReportConfig()

    def get(name: str) -> Any:
        return getattr(settings, name, getattr(defaults, name))

    lb = build_leaderboard(store, run_id, ci=float(get("ci")), baseline=get("baseline"),
                           n_boot=int(get("bootstrap")), seed=int(get("seed")), both_bad=str(get("both_bad")),
                           gallery_prompts=int(get("gallery_prompts")),
                           include_excluded=bool(get("include_excluded_raters")))
    return write_report(lb, get("dir"), html=bool(get("html")))
