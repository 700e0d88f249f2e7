"""The ``harness`` command: a thin face in front of one Hydra app.

``harness COMMAND [overrides]`` runs the Hydra app with ``command=COMMAND``: this module parses
the command line, has :mod:`harness.assemble` build the objects from the composed config, calls
the stages (:func:`harness.runner.pipeline.run`), prints what they made, and turns errors into
exit codes. Importing it costs only the standard library, so ``harness --help`` stays fast
(torch is never imported there).
"""

from __future__ import annotations

import logging
import sys

from harness.assemble import CONF_DIR, GROUP_DIRS, compose, group_options, install_hint, prevalidate
from harness.errors import UserError

# compose and prevalidate are part of this module's surface: tests and notebooks call
# ``dispatch(compose([...]))``.
__all__ = ["CONF_DIR", "UserError", "compose", "dispatch", "list_available", "main", "prevalidate"]

COMMAND_HELP = {
    "run": "plan, generate, score and report (resumes whatever is already stored)",
    "generate": "plan and generate only",
    "score": "compute missing metric values for stored images",
    "report": "write reports/<suite>/<run>/leaderboard.{md,csv,json,parquet} from the store",
    "export": "write the run's records and scores for pandas (export.format=parquet|csv|jsonl)",
    "list": "list the models, suites, metrics and experiments available",
    "cost": "self-hosted vs API cost per image and the crossover in images/day (PNG plot)",
    "check": "preflight, nothing paid: keys, models listed by their providers, prices, the "
             "run's cost estimate (exit 2: something is missing)",
}
# Commands that are not one Hydra job: each module has ``main(argv) -> int`` (``main(options, cfg)``
# for those in CONFIGURED) and its own --help.
SUBCOMMANDS = {
    "zoo": ("harness.zoo.cli", "the embedded toy world and models: 'harness zoo train NAME', 'zoo list'"),
    "rate": ("harness.app.cli", "start the blind pairwise rating app on a run from the store"),
    "raters": ("harness.app.cli:raters_main", "invite raters ('raters add NAME' prints a token), list, "
                                              "revoke, rotate"),
    "fake-providers": ("harness.testing.fakes.cli", "serve the fake provider APIs on 127.0.0.1 (demos)"),
    "suite": ("harness.suites.cli", "'suite questions suite=NAME': an LLM writes DSG-style questions "
                                    "for prompts lacking them"),
}
CONFIGURED = ("rate", "raters", "suite")
"""Subcommands whose ``key=value`` arguments are config overrides: composed here, and the entry
point is called as ``entry(options, cfg)`` (the app sits below this layer and never composes)."""

USAGE = """\
usage: harness COMMAND [key=value ...] [-m] [--help]

Compare text-to-image models on a prompt suite: generate, store, score, report.

commands:
{commands}

examples:
  harness run                                   # the embedded default (offline, CPU)
  harness run suite=text-rendering 'models=[zoo_unet,zoo_dit]' samples=4
  harness run -m suite=composition models=zoo_unet,zoo_dit     # one job per model
  harness report suite=text-rendering           # re-render from the store only
  harness export export.format=parquet
  harness check models=[openai_gpt_image] run.max_cost_usd=50   # before paying for anything
  harness run --help                            # every setting and config group

Settings are Hydra overrides; 'harness run --cfg job' prints the composed config.
"""


def usage() -> str:
    helps = {**COMMAND_HELP, **{c: h for c, (_, h) in SUBCOMMANDS.items()}}
    width = max(len(c) for c in helps)
    return USAGE.format(commands="\n".join(f"  {c:<{width}}  {h}" for c, h in helps.items()))


def run_subcommand(cmd: str, argv: list[str]) -> int:
    """Import the module behind a non-Hydra command and call its entry point."""
    import importlib

    target, _ = SUBCOMMANDS[cmd]
    module, _, func = target.partition(":")
    try:
        entry = getattr(importlib.import_module(module), func or "main")
    except ModuleNotFoundError as e:
        root = (e.name or "").split(".")[0]
        if root == "harness":
            raise
        print(f"harness {cmd}: needs the Python package {root!r}, which is not installed. "
              f"Install it with: {install_hint(root)}", file=sys.stderr)
        return 2
    try:
        if cmd in CONFIGURED:
            options, overrides = split_overrides(argv)
            return int(entry(options, compose(overrides)) or 0)
        return int(entry(argv) or 0)
    except UserError as e:
        print(f"harness {cmd}: error: {e}", file=sys.stderr)
        return 2


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """(options, ``key=value`` overrides) of a subcommand's arguments."""
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    return [a for a in argv if a not in overrides], overrides


def main(argv: list[str] | None = None) -> int:
    """The ``harness`` command: returns the exit status (0 ok, 2 a user error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from harness import __version__

        print(f"harness {__version__}")
        return 0
    cmd, rest = argv[0], argv[1:]
    from harness.errors import did_you_mean
    from harness.runtime import tune_allocator

    tune_allocator()  # models on the CPU: reuse freed memory instead of faulting in fresh pages

    if cmd in SUBCOMMANDS:
        return run_subcommand(cmd, rest)
    if cmd not in COMMAND_HELP:
        print(f"harness: unknown command {cmd!r}.{did_you_mean(cmd, [*COMMAND_HELP, *SUBCOMMANDS])}\n"
              f"Run 'harness --help' for usage.", file=sys.stderr)
        return 2
    if cmd == "list":
        print(list_available())
        return 0
    try:
        prevalidate(rest)
    except UserError as e:
        print(f"harness: error: {e}", file=sys.stderr)
        return 2
    sys.argv = [f"harness {cmd}", *rest, f"command={cmd}"]
    try:
        _hydra_app()
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else 1
    return 0


def list_available() -> str:
    """The configs of every group with their one-line descriptions, and the suite formats."""
    import yaml

    from harness.suites import formats

    lines = []
    for group in ("models", "suite", "metrics", "experiment", "executor", "store"):
        lines.append(f"{group}:")
        for name in group_options(group):
            text = (CONF_DIR / GROUP_DIRS[group] / f"{name}.yaml").read_text(encoding="utf-8")
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                data = {}
            desc = data.get("label") or data.get("description") or _first_comment(text)
            lines.append(f"  {name:<24} {desc}".rstrip())
    lines.append("suite formats (suite.format):")
    for name, reader in formats().items():
        lines.append(f"  {name:<24} {reader.description.replace('``', '')}".rstrip())
    return "\n".join(lines)


def _first_comment(text: str) -> str:
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") and "@package" not in s:
            return s.lstrip("# ")
    return ""


# -- the Hydra app ------------------------------------------------------------------------------


def _hydra_app() -> None:
    import hydra

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def app(cfg) -> None:
        try:
            dispatch(cfg)
        except UserError as e:
            logging.getLogger("harness").error("%s", e)
            print(f"harness: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None

    app()


def dispatch(cfg) -> dict:
    """Run one command on a composed config and print what it made (also called by tests and
    benchmarks: ``dispatch(compose(["command=run", "samples=2"]))``).

    Returns what happened: run id, store, generation stats, report folder, export path.
    """
    from harness.assemble import build_job
    from harness.config import validate
    from harness.errors import ConfigError
    from harness.runner import pipeline
    from harness.store import StoreError

    try:
        job = build_job(validate(cfg))
        result = pipeline.run(job.command, job.store, job.run_id, plan=job.plan,
                              metrics=job.metrics, executor=job.executor, settings=job.settings,
                              echo=print)
    except (ConfigError, StoreError) as e:  # SuiteError is a ConfigError
        raise UserError(str(e)) from None
    if result.get("missing"):
        raise UserError("check: the run cannot go yet; missing:\n  - "
                        + "\n  - ".join(result["missing"]))
    return result


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
