"""From a model folder or hub id to a diffusers pipeline on its device: folder fingerprints,
device and dtype choice, hub errors that say the fix, and the run options applied at load time
(CPU offload, attention backend, channels-last, VAE slicing and tiling, compile).

torch, diffusers and transformers are imported inside the functions that load; the
fingerprint and the folder helpers need only the standard library.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.generators.controls import file_sha256
from harness.generators.diffusers_options import (
    DTYPES,
    DiffusersOptions,
    Where,
    env_true,
    hub_offline,
    looks_like_path,
)
from harness.toyworld.paths import resolve_path
from harness.types import canonical_json

log = logging.getLogger(__name__)


def folder_fingerprint(folder: str | Path) -> str:
    """Content hash of a model folder: sha256 over the sorted (relative path, file sha256) pairs.

    Files and folders whose name starts with a dot are skipped (build recipes, hub download
    metadata). Symlinked files and folders (hub cache snapshots, shared parts of zoo models) are hashed
    by their target's content.
    """
    root = Path(folder)
    pairs = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            pairs.append([path.relative_to(root).as_posix(), file_sha256(path)])
    pairs.sort()
    return hashlib.sha256(canonical_json(pairs).encode("utf-8")).hexdigest()


def null_components(folder: Path) -> dict[str, None]:
    """Components a saved pipeline left out (``[null, null]`` in model_index.json).

    diffusers refuses to load such a folder unless each missing non-optional component (SD3
    without T5: text_encoder_3, tokenizer_3) is passed as None explicitly.
    """
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: None for k, v in index.items()
            if not k.startswith("_") and isinstance(v, list) and v and v[0] is None}


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers at all (through the hub client, so proxies apply)."""
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        get_session().head(constants.ENDPOINT, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure (DNS, refused, timeout, proxy) means no hub
        return False


def dtype_kwarg() -> str:
    """diffusers renamed from_pretrained's ``torch_dtype`` to ``dtype`` (the old name now warns);
    older releases know only ``torch_dtype`` and would ignore ``dtype``."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


@contextlib.contextmanager
def no_load_bars() -> Any:
    """Hide from_pretrained's per-component bars (they interleave with the runner's own bar);
    hub download bars stay."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    was = [m.is_progress_bar_enabled() for m in (diffusers_logging, transformers_logging)]
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        for m, on in zip((diffusers_logging, transformers_logging), was, strict=False):
            if on:
                m.enable_progress_bar()


def png(image: Any) -> bytes:
    """PNG bytes of a PIL image, without metadata chunks."""
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def call_params(pipe: Any) -> dict[str, inspect.Parameter]:
    """The named arguments of a pipeline's ``__call__``."""
    return {k: p for k, p in inspect.signature(type(pipe).__call__).parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def resolve_device(torch: Any, want: str, where: Where) -> str:
    """The device options.device names (``auto``: cuda, else mps, else cpu); raises when the
    named one is not there."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"{where('options.device')} is {want!r} but this torch "
                           f"({torch.__version__}) sees no CUDA device; use device: auto or cpu.")
    if want == "mps" and not has_mps:
        raise RuntimeError(f"{where('options.device')} is 'mps' but MPS is not "
                           "available; use device: auto or cpu.")
    return want


def resolve_dtype(torch: Any, name: str, device: str) -> Any:
    """The torch dtype options.dtype names on this device (``auto``: see DiffusersOptions)."""
    if name == "auto":
        if device.startswith("cuda"):
            name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            name = "float16" if device == "mps" else "float32"
    return getattr(torch, DTYPES.get(name, name))


@dataclasses.dataclass
class HubModel:
    """A model named by hub id: what a load needs and what its errors must say."""

    name: str
    model_id: str
    revision: str | None
    cache_dir: Path

    def error(self, err: Exception, options: DiffusersOptions, where: Where) -> RuntimeError:
        """The error to raise when from_pretrained failed: offline, unreachable or refused."""
        rev = f" (revision {self.revision})" if self.revision else ""
        cache = self.cache_dir
        fixes = (f"Point the model at a local diffusers folder with "
                 f"`models.{self.name}.model_id=/path/to/local/folder`, or download it first where "
                 f"the hub is reachable: `hf download {self.model_id}"
                 f"{f' --revision {self.revision}' if self.revision else ''} --cache-dir {cache}` "
                 "(`huggingface-cli download` in huggingface_hub < 1.0).")
        if hub_offline(options):
            switches = [name for name, on in (
                (f"models.{self.name}.options.local_files_only", options.local_files_only),
                ("HF_HUB_OFFLINE=1", env_true("HF_HUB_OFFLINE"))) if on]
            why = f"hub access is disabled ({', '.join(switches)})"
            return RuntimeError(f"{where('')}: cannot load {self.model_id!r}{rev}: it is not in "
                                f"the local cache ({cache}) and {why}. {fixes}")
        if not hub_reachable():
            return RuntimeError(f"{where('')}: cannot load {self.model_id!r}{rev}: it is not in "
                                f"the local cache ({cache}) and the Hugging Face hub is unreachable "
                                f"(offline). {fixes}")
        return RuntimeError(f"{where('')}: cannot load {self.model_id!r}{rev} from the hub: "
                            f"{type(err).__name__}: {err}. Check the id and revision; gated models "
                            "need `hf auth login` and accepted terms.")


def component_folder(model_id: str) -> Path | None:
    """The local folder an options.components entry names; None for a hub id."""
    path = resolve_path(model_id)
    if path.is_dir():
        return path.absolute()
    if looks_like_path(model_id):
        return path  # missing: load_components says so
    return None


def load_components(o: DiffusersOptions, dtype: Any, cache: Path,
                    where: Where) -> dict[str, Any]:
    """Load options.components (parts kept outside the model folder, such as HiDream-I1's
    Llama text encoder) in the run's dtype, keyed by component name for ``from_pretrained``.

    Raises:
        ConfigError: unknown class or missing local folder.
        RuntimeError: a hub download failed (offline, gated, not found), with the fix.
    """
    import diffusers
    import transformers

    out: dict[str, Any] = {}
    for name, spec in (o.components or {}).items():
        at = f"options.components.{name}"
        cls = getattr(transformers, spec["class"], None) or getattr(diffusers, spec["class"], None)
        if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
            raise ConfigError(f"{where(at + '.class')}: {spec['class']!r} is not a transformers "
                              "or diffusers class with from_pretrained (LlamaForCausalLM, "
                              "AutoTokenizer, T5EncoderModel ...).")
        kwargs: dict[str, Any] = {}
        if issubclass(cls, transformers.PreTrainedModel):
            kwargs["dtype"] = dtype
        elif issubclass(cls, diffusers.ModelMixin):
            kwargs[dtype_kwarg()] = dtype
        if spec.get("subfolder"):
            kwargs["subfolder"] = spec["subfolder"]
        folder = component_folder(spec["model_id"])
        if folder is not None:
            if not folder.is_dir():
                raise ConfigError(f"{where(at + '.model_id')}: local folder "
                                  f"{spec['model_id']!r} does not exist.")
            with no_load_bars():
                out[name] = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
            continue
        try:
            with no_load_bars():
                out[name] = cls.from_pretrained(
                    spec["model_id"], revision=spec.get("revision"), cache_dir=str(cache),
                    local_files_only=hub_offline(o), **kwargs)
        except OSError as e:  # hub errors (not found, offline, gated, HTTP) are OSErrors
            rev = f" --revision {spec['revision']}" if spec.get("revision") else ""
            raise RuntimeError(
                f"{where(at + '.model_id')}: cannot load {spec['model_id']!r}: "
                f"{type(e).__name__}: {str(e).rstrip('.')}. Gated models (Meta's Llama) need "
                f"accepted terms on the hub page and `hf auth login`; offline, download it first "
                f"with `hf download "
                f"{spec['model_id']}{rev} --cache-dir {cache}` or point "
                f"{where(at + '.model_id')} at a local folder.") from e
    return out


def load_pipeline(path: Path | None, hub: HubModel, o: DiffusersOptions,
                  where: Where) -> tuple[Any, str, Any]:
    """Load the pipeline from ``path`` (a local folder) or the hub, apply the run options and
    move it to its device. Returns (pipeline, device, torch dtype)."""
    import torch
    from diffusers import DiffusionPipeline
    from huggingface_hub.errors import HFValidationError

    if o.torch_threads:
        torch.set_num_threads(o.torch_threads)
    device = resolve_device(torch, o.device, where)
    dtype = resolve_dtype(torch, o.dtype, device)
    kwargs: dict[str, Any] = {dtype_kwarg(): dtype}
    if o.variant:
        kwargs["variant"] = o.variant
    if importlib.util.find_spec("accelerate") is None:
        kwargs["low_cpu_mem_usage"] = False  # what diffusers falls back to, minus its warning
    kwargs.update(load_components(o, dtype, hub.cache_dir, where))
    if path is not None:
        with no_load_bars():
            pipe = DiffusionPipeline.from_pretrained(
                str(path), local_files_only=True,
                **{**null_components(path), **kwargs})
    else:
        offline = hub_offline(o)
        try:
            with no_load_bars():
                pipe = DiffusionPipeline.from_pretrained(
                    hub.model_id, revision=hub.revision, cache_dir=str(hub.cache_dir),
                    local_files_only=offline, **kwargs)
        except HFValidationError as e:
            raise ConfigError(f"{where('model_id')}: {hub.model_id!r} is neither an "
                              f"existing local folder nor a valid hub id ({e}).") from None
        except OSError as e:  # hub errors (not found, offline, HTTP) are OSErrors
            raise hub.error(e, o, where) from e

    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if o.channels_last:
        for m in (denoiser, getattr(pipe, "vae", None)):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    if o.attention:
        try:
            if o.attention == "xformers":
                pipe.enable_xformers_memory_efficient_attention()
            else:
                denoiser.set_attention_backend(o.attention)
        except Exception as e:  # noqa: BLE001 - unknown backend or missing kernel package
            raise ConfigError(f"{where('options.attention')}: cannot use "
                              f"{o.attention!r}: {type(e).__name__}: {e}") from None
    if o.cpu_offload and device != "cpu":
        if importlib.util.find_spec("accelerate") is None:
            raise RuntimeError(f"{where('options.cpu_offload')} needs accelerate: "
                               "pip install accelerate")
        if o.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=device)
        else:
            pipe.enable_model_cpu_offload(device=device)
    else:
        if o.cpu_offload:
            log.warning("%s: cpu_offload ignored on a CPU device", where(""))
        pipe.to(device)
    vae = getattr(pipe, "vae", None)
    for flag, method in (("vae_slicing", "enable_slicing"), ("vae_tiling", "enable_tiling")):
        if getattr(o, flag):
            if not hasattr(vae, method):
                raise ConfigError(f"{where('options.' + flag)}: this pipeline's VAE "
                                  f"({type(vae).__name__}) does not support it.")
            getattr(vae, method)()
    if o.compile and denoiser is not None:
        # In place (nn.Module.compile), so pipelines derived with from_pipe share it.
        denoiser.compile()
    pipe.set_progress_bar_config(disable=True)
    return pipe, device, dtype
