"""Prompt suites: read a suite file in one of several formats and select prompts from it.

``load_suite(cfg)`` is the entry point; ``cfg`` is the ``suite`` config group (see
:class:`harness.config.SuiteConfig`). Formats (``formats()`` lists them):

- ``harness``: the own YAML/JSONL format (:mod:`harness.suites.own`), used by the built-in
  suites in ``harness/data/suites``;
- ``partiprompts``, ``drawbench``, ``geneval``, ``t2i-compbench``: the published files of those
  benchmarks, read as distributed.

A format is a reader module in this package registered with
:func:`harness.suites.base.register_format`; there is no list to edit.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Mapping
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.config import SuiteConfig
from harness.errors import did_you_mean
from harness.suites.base import READERS, FormatReader, SuiteError
from harness.suites.filters import apply_filters
from harness.suites.question_file import attach as attach_questions
from harness.types import Suite

__all__ = ["BUILTIN_SUITES_DIR", "FormatReader", "SuiteError", "formats", "load_suite",
           "resolve_suite_file"]

BUILTIN_SUITES_DIR = Path(__file__).resolve().parent.parent / "data" / "suites"
"""The suites shipped with the package (found from the package, so installed copies work)."""


@functools.cache
def _import_readers() -> None:
    """Import every module of this package once, so each reader's ``@register_format`` runs."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def formats() -> dict[str, FormatReader]:
    """Every suite format by name, the own format (``harness``) first."""
    _import_readers()
    return dict(sorted(READERS.items(), key=lambda item: (item[0] != "harness", item[0])))


def resolve_suite_file(file: str | Path) -> Path:
    """Find a suite file: absolute as is, else under the working directory, else built in.

    Args:
        file: Absolute path, path relative to the working directory, or the name of a file in
            :data:`BUILTIN_SUITES_DIR` (e.g. ``toy-shapes.yaml``).

    Returns:
        The absolute path of the file (or folder) found.

    Raises:
        SuiteError: Nothing there; the message lists the places tried and the built-in suites.
    """
    path = Path(file).expanduser()
    tried = [path] if path.is_absolute() else [Path.cwd() / path, BUILTIN_SUITES_DIR / path]
    for candidate in tried:
        if candidate.exists():
            return candidate.resolve()
    builtin = sorted(p.name for p in BUILTIN_SUITES_DIR.glob("*.y*ml"))
    raise SuiteError(f"suite file {str(file)!r} not found; tried {', '.join(map(str, tried))}. "
                     f"Built-in suites: {', '.join(builtin)}.")


def load_suite(cfg: SuiteConfig | Mapping[str, Any]) -> Suite:
    """Read the suite a ``suite`` config describes and apply its filters.

    Args:
        cfg: A SuiteConfig, or a mapping (dict, DictConfig) with its keys.

    Returns:
        The suite: name and description from ``cfg`` (description falls back to the file's),
        version from the file (``"1"`` if it has none), source = the resolved file path.

    Raises:
        SuiteError: Bad settings, a missing or malformed file, or filters that keep nothing.
    """
    cfg = _settings(cfg)
    known = formats()
    reader = known.get(cfg.format)
    if reader is None:
        raise SuiteError(f"suite {cfg.name!r}: unknown format {cfg.format!r}."
                         f"{did_you_mean(cfg.format, list(known))}")
    try:
        path = resolve_suite_file(cfg.file)
    except SuiteError as e:
        raise SuiteError(f"{e} {reader.source}".strip()) from None
    parsed = reader.load(path)
    if not parsed.prompts:
        raise SuiteError(f"{path}: no prompts in this file; is it the right file for format "
                         f"{cfg.format!r}?")
    # Questions an LLM wrote for prompts without any ('harness suite questions').
    prompts = attach_questions(parsed.prompts, path)
    return Suite(name=cfg.name, prompts=apply_filters(prompts, cfg),
                 version=parsed.version or Suite.version,
                 description=cfg.description or parsed.description, source=str(path))


def _settings(cfg: Any) -> SuiteConfig:
    """Check ``cfg`` against SuiteConfig (key names and types) and return it as one."""
    if is_dataclass(cfg):
        cfg = asdict(cfg)
    valid = [f.name for f in fields(SuiteConfig)]
    for key in cfg:
        if key not in valid:
            raise SuiteError(f"suite config: unknown key {key!r}.{did_you_mean(str(key), valid)}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SuiteConfig), cfg)
        missing = OmegaConf.missing_keys(merged)
        if missing:
            raise SuiteError(f"suite config: required setting(s) missing: "
                             f"{', '.join(sorted(missing))}.")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        # OmegaConf's str(e) trails object_type lines; the key and message are what help.
        where = f"suite.{e.full_key}" if getattr(e, "full_key", None) else "suite config"
        raise SuiteError(f"{where}: {str(e).splitlines()[0].rstrip('.')}.") from None
