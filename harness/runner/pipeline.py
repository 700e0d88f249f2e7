"""The stages wired together on plain objects (no Hydra here): usable from a notebook.

    plan -> generate -> score -> report, each reading only what the previous stored.

:func:`run` is the order the ``harness`` commands follow (``harness.assemble`` builds its
arguments from a config); the stage functions can also be called one by one.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
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
             progress: bool = True, budget: Any = None) -> ExecStats:
    """Run the plan's units not stored yet. ``budget``: a :class:`harness.runner.preflight.Budget`
    that stops the run cleanly before the batch that would pass ``run.max_cost_usd``."""
    executor = executor or LocalExecutor()
    store.set_run_status(plan.run_id, "generating")
    t0 = time.perf_counter()
    kw = {"budget": budget} if budget is not None else {}
    stats = executor.execute(store, plan.generators, plan.units, retry_errors=retry_errors,
                             progress=progress, **kw)
    counts = store.unit_counts(plan.run_id)
    complete = all(c.pending == 0 and c.error == 0 for c in counts.values())
    store.set_run_status(plan.run_id, "generated" if complete else "incomplete")
    log.info("generate: %d generator calls in %.1fs", stats.calls, time.perf_counter() - t0)
    return stats


def report(store: Store, run_id: str, settings: Any = None, cost: Any = None) -> Path:
    """Build the run's leaderboard from the store and write every report file.

    ``settings`` is the ``report`` config section (``ReportConfig`` or anything with its
    attributes); missing attributes take the defaults. ``cost`` is the ``cost`` section (its GPU
    price prices self-hosted models in the HTML; None: the defaults). Returns reports/<suite>/<run>/.
    """
    from harness.config import ReportConfig
    from harness.leaderboard import build_leaderboard, write_report

    defaults = ReportConfig()

    def get(name: str) -> Any:
        return getattr(settings, name, getattr(defaults, name))

    lb = build_leaderboard(store, run_id, ci=float(get("ci")), baseline=get("baseline"),
                           n_boot=int(get("bootstrap")), seed=int(get("seed")), both_bad=str(get("both_bad")),
                           gallery_prompts=int(get("gallery_prompts")),
                           include_excluded=bool(get("include_excluded_raters")),
                           headline=str(get("headline")), min_votes=int(get("min_votes")),
                           metric_ranks=bool(get("metric_ranks")),
                           preference_cluster=str(get("preference_cluster")))
    from harness.config import CostConfig
    from harness.leaderboard.tradeoff import gpu_price

    return write_report(lb, get("dir"), html=bool(get("html")),
                        gpu=gpu_price(cost if cost is not None else CostConfig()))


COMMAND_STAGES = {
    "check": ("check",),
    "run": ("generate", "score", "report"),
    "generate": ("generate",),
    "score": ("score",),
    "report": ("report",),
    "export": ("export",),
    "cost": ("cost",),
}
"""The stages each command runs, in order; each reads what the one before it stored."""


def run(command: str, store: Store, run_id: str, *, plan: Plan | None = None,
        metrics: Mapping[str, Metric] | None = None, executor: Any | None = None,
        settings: Any = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one command's stages (:data:`COMMAND_STAGES`) on a run.

    Args:
        command: ``run``, ``generate``, ``score``, ``report``, ``export`` or ``cost``.
        store: The store; ``generate`` writes to it, every other stage only reads what is there.
        run_id: The run; a command that does not generate fails clearly if it was never stored.
        plan: The run's plan; needed only by ``generate``.
        metrics: Name -> metric, for ``score`` (and recorded in the manifest by ``generate``).
        executor: Local or Ray executor for ``generate`` (default: local).
        settings: A validated config (anything with its ``run``, ``progress``, ``report``,
            ``export`` and ``cost`` attributes); missing sections take the defaults.
        echo: Where the lines for the user go (the per-model summary, the files written),
            e.g. ``print``; None keeps quiet.

    Returns:
        ``run_id``, ``store``, ``stats`` (the generate stage's ExecStats, else None), and the
        paths written: ``report_dir``, ``export``, ``cost_report``.
    """
    from harness.config import RootConfig

    stages = COMMAND_STAGES.get(command)
    if stages is None:
        raise ValueError(f"unknown command {command!r}; one of {', '.join(COMMAND_STAGES)}")
    defaults = RootConfig()

    def get(name: str) -> Any:
        return getattr(settings, name, getattr(defaults, name))

    say = echo or (lambda line: None)
    metrics = dict(metrics or {})
    if "check" in stages:
        return check(store, run_id, plan, settings, say)
    if "generate" not in stages:
        store.run(run_id)  # fails clearly, listing the stored runs, if it was never generated
    if "score" in stages:
        # A metric that cannot load (weights neither cached nor reachable) fails here, before
        # any image is generated or anything is written, not after hours of generating.
        for metric in metrics.values():
            getattr(metric, "preflight", lambda: None)()
    log_to_run_dir(store, run_id)
    result: dict[str, Any] = {"run_id": run_id, "store": store, "stats": None}
    if "generate" in stages:
        if plan is None:
            raise ValueError(f"{command}: the generate stage needs the run's plan")
        log.info("%s: run %s, suite %s (%d prompts) x %d model(s) x %d sample(s) = %d units",
                 command, run_id, plan.suite.name, len(plan.suite.prompts), len(plan.generators),
                 plan.samples, len(plan.units))
        from harness.leaderboard.headline import check_primary_metric
        from harness.metrics.base import output_directions
        from harness.runner import preflight

        # A misspelt primary metric would only show at the report, after every image is made.
        check_primary_metric(((plan.config or {}).get("suite") or {}).get("primary_metric"),
                             {n: list(output_directions(m.describe())) for n, m in metrics.items()},
                             f"suite {plan.suite.name} (suite.primary_metric)")

        cap = getattr(get("run"), "max_cost_usd", None)
        # Offline, before anything is written or sent: keys there, the estimate under the cap.
        est = preflight.before_run(store, plan.generators, plan.units, cap=cap,
                                   retry_errors=get("run").retry_errors)
        if est is not None and est.requests:
            say(preflight.summary(est, cap))
        save_plan(store, plan, metrics)
        stats = generate(store, plan, executor, retry_errors=get("run").retry_errors,
                         progress=get("progress"), budget=preflight.Budget.of(est, cap))
        for line in summary_lines(store, run_id, stats):
            say(line)
        result["stats"] = stats
    if "score" in stages:
        from harness.runner.score import score_run

        if not metrics:
            say("score: no metrics selected (metrics=[]): nothing to score")
        score_run(store, run_id, metrics, progress=get("progress"))
        store.set_run_status(run_id, "scored")
    if "report" in stages:
        out = report(store, run_id, get("report"), get("cost"))
        say(f"leaderboard: {out / 'leaderboard.md'}")
        result["report_dir"] = out
    if "cost" in stages:
        from harness.leaderboard.cost_report import write_cost_report

        out = write_cost_report(store, run_id, get("cost"), get("report").dir)
        say(f"cost report: {out}")
        result["cost_report"] = out
    if "export" in stages:
        from harness.leaderboard.export import export_run

        export = get("export")
        path = export_run(store, run_id, export.format, export.path)
        say(f"exported: {path}")
        result["export"] = path
    return result


def check(store: Store | None, run_id: str, plan: Plan | None, settings: Any,
          say: Callable[[str], None]) -> dict[str, Any]:
    """``harness check``: what each model needs and what the run would cost, nothing paid.

    Returns ``run_id``, ``store``, ``estimate`` lines printed and ``missing`` (empty: the run
    can go); the caller turns ``missing`` into an exit status."""
    from harness.config import CheckConfig, RunConfig
    from harness.runner import preflight

    if plan is None:
        raise ValueError("check needs the run's plan")
    run_cfg = getattr(settings, "run", None) or RunConfig()
    chk = getattr(settings, "check", None) or CheckConfig()
    say(f"check: run {run_id}, suite {plan.suite.name} ({len(plan.suite.prompts)} prompts) x "
        f"{len(plan.generators)} model(s) x {plan.samples} sample(s) = {len(plan.units)} units")
    missing = preflight.check(store, plan.generators, plan.units, cap=run_cfg.max_cost_usd,
                              max_price_age_days=int(chk.max_price_age_days),
                              online=bool(chk.online), retry_errors=run_cfg.retry_errors,
                              echo=say)
    return {"run_id": run_id, "store": store, "stats": None, "missing": missing}


def summary_lines(store: Store, run_id: str, stats: ExecStats) -> list[str]:
    """Per model: images stored of those planned (how many new, refused, failed, pending), then
    the generator calls this time (0 on a resume with nothing left to do)."""
    lines = []
    for model, c in store.unit_counts(run_id).items():
        s = stats.models.get(model)
        new = (s.ok + s.refused + s.errors) if s else 0
        lines.append(f"{model}: {c.ok}/{c.planned} images ({new} new, {c.refused} refused, "
                     f"{c.error} errors, {c.pending} pending)")
    lines.append(f"generator calls: {stats.calls}")
    if stats.stopped:
        lines.append(f"stopped: {stats.stopped}")
    return lines


def log_to_run_dir(store: Store, run_id: str) -> None:
    """Also write the log to runs/<run>/run.log in the store (once per file), at level INFO."""
    path = store.run_dir(run_id) / "run.log"
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
