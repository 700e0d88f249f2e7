"""Weights from the model hub for the metrics that load real models: from the local cache when it
has them, else downloaded; offline (no cache, hub unreachable) each fails at once naming what to
fetch and the setting (``metrics.<name>.settings.<setting>``) that points at a local copy.

The ``require_*`` checks are for preflights (before anything is generated or stored): they look
in the cache or send one metadata request, and never download weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.metrics.clip_score import ModelUnavailable

HUB_FILES = ("*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken")
"""What a transformers model folder needs (weights, configs, tokenizer, chat template)."""


def _reason(e: Exception) -> str:
    first = str(e).splitlines()[0][:200] if str(e) else ""
    return f"{type(e).__name__}: {first}"


def _model_unavailable(name: str, model: str, setting: str, e: Exception, enough: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"metrics.{name}: the model {model!r} is not in the local cache and the model hub could "
        f"not be reached or refused ({_reason(e)}). On a machine with internet: "
        f"`huggingface-cli download {model} --local-dir <folder>` ({enough}), then point at the "
        f"local copy: metrics.{name}.settings.{setting}=/path/to/<folder>")


def hub_snapshot(name: str, model: str, revision: str | None = None, setting: str = "checkpoint",
                 patterns: Sequence[str] = HUB_FILES,
                 enough: str = "or save_pretrained a model and its processor") -> Path:
    """The local folder of a hub repository's files matching ``patterns``: the cache when it has
    them, else a download; offline a :class:`ModelUnavailable` at once."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, local_files_only=True,
                                      allow_patterns=list(patterns)))
    except Exception:  # noqa: BLE001 - not cached (or a partial cache): try the hub next
        pass
    try:
        return Path(snapshot_download(model, revision=revision, allow_patterns=list(patterns),
                                      etag_timeout=5))
    except Exception as e:
        raise _model_unavailable(name, model, setting, e, enough) from e


def require_hub_model(name: str, model: str, revision: str | None = None,
                      setting: str = "checkpoint") -> None:
    """Check, without downloading weights, that a hub model is cached or on a reachable hub (its
    ``config.json``: the cache, else one metadata request); else the error of :func:`hub_snapshot`."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(model, "config.json", revision=revision), timeout=5)
    except Exception as e:
        raise _model_unavailable(name, model, setting, e,
                                 "or save_pretrained a model and its processor") from e


def _file_unavailable(name: str, spec: str, setting: str, e: Exception) -> ModelUnavailable:
    org, repo, file = spec.split("/", 2)
    return ModelUnavailable(
        f"metrics.{name}: could not load {spec!r}: not in the local cache and the model hub could not "
        f"be reached or refused ({_reason(e)}). On a machine with internet: `huggingface-cli download "
        f"{org}/{repo} {file} --local-dir <folder>`, then point at the local copy: "
        f"metrics.{name}.settings.{setting}=/path/to/{Path(file).name}")


def fetch_hub_file(name: str, spec: str, setting: str) -> Path:
    """``org/repo/file`` from the local hub cache, else downloaded; offline a
    :class:`ModelUnavailable` at once naming the file and the setting."""
    from huggingface_hub import hf_hub_download

    org, repo, file = spec.split("/", 2)
    try:
        return Path(hf_hub_download(f"{org}/{repo}", file, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: try the hub
        pass
    try:
        return Path(hf_hub_download(f"{org}/{repo}", file, etag_timeout=5))
    except Exception as e:
        raise _file_unavailable(name, spec, setting, e) from e


def require_hub_file(name: str, spec: str, setting: str) -> None:
    """Check, without downloading, that ``org/repo/file`` is cached or on a reachable hub (a
    metadata request); else the error of :func:`fetch_hub_file`. For preflights: multi-GB
    weights are fetched when scoring starts, not before generating."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    org, repo, file = spec.split("/", 2)
    if isinstance(try_to_load_from_cache(f"{org}/{repo}", file), str):
        return
    try:
        get_hf_file_metadata(hf_hub_url(f"{org}/{repo}", file), timeout=5)
    except Exception as e:
        raise _file_unavailable(name, spec, setting, e) from e
