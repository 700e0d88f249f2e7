"""Local text-to-image pipelines through diffusers: hub ids, local folders, and tiny untrained
models built on first use (the default toy models).

Construction and :meth:`DiffusersGenerator.fingerprint` of an existing folder do not import
torch: the runner builds every selected model just to plan. torch, diffusers and transformers
load in :meth:`DiffusersGenerator.load`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import importlib.util
import inspect
import io
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.generators import controls as ctl
from harness.generators.base import Generator
from harness.generators.controls import CONTROL_TYPES
from harness.generators.tiny import ARCHS, IP_ADAPTER_WEIGHTS, RECIPE_FILE, ensure_tiny_pipeline
from harness.toyworld.paths import is_zoo, resolve_path
from harness.types import GenRequest, GenResult, canonical_json

log = logging.getLogger(__name__)

DEFAULT_CACHE = "~/.cache/harness/models"
"""Where built tiny models and hub downloads go unless options.cache_dir or
$HARNESS_MODEL_CACHE says otherwise."""

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
"""Accepted spellings of options.dtype (besides ``auto``) and the torch dtype each names."""

RESERVED_KWARGS = {
    "prompt": "it comes from the suite",
    "negative_prompt": "use params.negative_prompt or the prompt's negative_prompt",
    "num_inference_steps": "use params.steps",
    "guidance_scale": "use params.guidance",
    "width": "use params.width",
    "height": "use params.height",
    "generator": "images are seeded from the request seed",
    "num_images_per_prompt": "use samples",
    "output_type": "the generator needs PIL images",
    "return_dict": "the generator reads the pipeline's output object",
}
"""Pipeline arguments the generator sets itself; params.extra may not override them."""

BUILD_KEYS = ("arch", "seed", "image_size")

CONTROLNET_KEYS = ("model_id", "revision", "subfolder", "variant", "type", "build")
IP_ADAPTER_KEYS = ("model_id", "revision", "subfolder", "weight_name", "image_encoder_folder",
                   "build")
LORA_KEYS = ("path_or_id", "weight_name", "scale", "revision")

HARNESS_PARAMS = ("loras", "adapters")
"""params.extra keys the generator reads itself instead of passing them to the pipeline:
``loras`` (set in the model config) and ``adapters`` (ControlNet / IP-Adapter identity, added by
:meth:`DiffusersGenerator.request_params`)."""

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


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
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            pairs.append([path.relative_to(root).as_posix(), h.hexdigest()])
    pairs.sort()
    return hashlib.sha256(canonical_json(pairs).encode("utf-8")).hexdigest()


def _null_components(folder: Path) -> dict[str, None]:
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


def _looks_like_path(model_id: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else shaped like a path is a folder."""
    return (model_id.startswith(("/", "./", "../", "~", ".\\"))
            or model_id.count("/") > 1 or "\\" in model_id)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub endpoint answers at all (through the hub client, so proxies apply)."""
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        get_session().head(constants.ENDPOINT, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - any failure (DNS, refused, timeout, proxy) means no hub
        return False


def _dtype_kwarg() -> str:
    """diffusers renamed from_pretrained's ``torch_dtype`` to ``dtype`` (the old name now warns);
    older releases know only ``torch_dtype`` and would ignore ``dtype``."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


@contextlib.contextmanager
def _no_load_bars() -> Any:
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


def _png(image: Any) -> bytes:
    """PNG bytes of a PIL image, without metadata chunks."""
    if image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class DiffusersGenerator(Generator):
    """Runs a diffusers ``DiffusionPipeline`` in this process, one pipeline call per batch.

    Each image's initial noise comes from its own ``torch.Generator`` seeded with the request
    seed, so an image does not depend on the batch it ran in.
    """

    kind = "diffusers"
    batch_dependent = True  # batched CPU/GPU kernels differ by up to one level per pixel

    @dataclasses.dataclass
    class Options:
        """How to run a diffusers model (not part of the cache key)."""

        device: str = "auto"
        """cpu, cuda, cuda:N or mps; auto picks cuda if available, else mps, else cpu."""
        dtype: str = "auto"
        """float32 | float16 | bfloat16; auto: bfloat16 on CUDA that supports it (else
        float16), float16 on MPS, float32 on CPU."""
        variant: str | None = None
        """Weight-file variant to load, e.g. fp16 (diffusion_pytorch_model.fp16.safetensors)."""
        local_files_only: bool = False
        """Never contact the hub: hub ids load from the local cache only."""
        build: Mapping[str, Any] | None = None
        """Recipe {arch: sd15|sd3, seed, image_size} of an untrained tiny model, built on first
        use into <cache_dir>/<model_id with '/' replaced by '--'>."""
        cache_dir: str | None = None
        """Where built tiny models and hub downloads go; None: $HARNESS_MODEL_CACHE, else
        ~/.cache/harness/models."""
        vae_slicing: bool = False
        """Decode a batch one image at a time (less memory, same images)."""
        vae_tiling: bool = False
        """Decode in overlapping tiles (large images in little memory; may show seams)."""
        cpu_offload: bool | str = False
        """Keep sub-models on the CPU and move them to the GPU while they run (needs accelerate;
        ignored with a warning on a CPU device): true or ``model`` moves whole sub-models (a
        little slower), ``sequential`` moves layer by layer (much slower, least memory)."""
        torch_threads: int | None = None
        """torch.set_num_threads for CPU runs; None keeps torch's default."""
        controlnet: Mapping[str, Any] | None = None
        """ControlNet weights for prompts with a control_image: {model_id (hub id or folder),
        revision, subfolder, variant, type (canny|depth|pose|image: what maps it was trained
        on), build: {seed} (an untrained tiny one, made from this model's U-Net)}. Its identity
        goes into every request (params.adapters)."""
        ip_adapter: Mapping[str, Any] | None = None
        """IP-Adapter for prompts with a reference_image: {model_id (hub id or folder),
        subfolder, weight_name, image_encoder_folder, revision, build: {seed}}. Its identity goes
        into every request (params.adapters)."""
        compile: bool = False
        """torch.compile the U-Net / transformer (slow first batch, faster steps after; CUDA)."""
        attention: str | None = None
        """Attention implementation: null keeps diffusers' default (PyTorch SDPA), ``xformers``,
        or a diffusers attention backend name (``native``, ``flash``, ``_native_math`` ...)."""
        channels_last: bool = False
        """Store U-Net and VAE weights channels-last (often faster convolutions on CUDA)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._check_options()
        self._pipe: Any = None
        self._device = ""
        self._dtype = ""
        self._versions: dict[str, str] = {}
        self._gpu: str | None = None
        self._default_scheduler: Any = None
        self._schedulers: dict[str, Any] = {}
        self._call_params: dict[str, inspect.Parameter] = {}
        self._fingerprint: str | None = None
        self._request_params: dict[str, Any] | None = None
        self._modes: dict[tuple[str, bool], Any] = {}
        self._controlnet: Any = None
        self._ip_loaded = False
        self._lora_names: dict[str, str] = {}
        self._lora_active: tuple[Any, ...] | None = ()

    # -- options and location ---------------------------------------------------------------

    def _where(self, key: str = "") -> str:
        return f"models.{self.name}" + (f".{key}" if key else "")

    def _check_options(self) -> None:
        o = self.options
        if not isinstance(o.device, str) or not _DEVICE_RE.match(o.device):
            raise ConfigError(f"{self._where('options.device')}: {o.device!r} is not a device; "
                              "use auto, cpu, cuda, cuda:N or mps.")
        if o.dtype != "auto" and o.dtype not in DTYPES:
            raise ConfigError(f"{self._where('options.dtype')}: unknown dtype {o.dtype!r}."
                              f"{did_you_mean(str(o.dtype), ['auto', *DTYPES])}")
        if o.torch_threads is not None and (not isinstance(o.torch_threads, int)
                                            or o.torch_threads < 1):
            raise ConfigError(f"{self._where('options.torch_threads')}: expected a positive "
                              f"integer or null, got {o.torch_threads!r}.")
        if not (isinstance(o.cpu_offload, bool) or o.cpu_offload in ("model", "sequential")):
            raise ConfigError(f"{self._where('options.cpu_offload')}: expected true, false, model "
                              f"or sequential, got {o.cpu_offload!r}.")
        for name, keys in (("controlnet", CONTROLNET_KEYS), ("ip_adapter", IP_ADAPTER_KEYS)):
            spec = getattr(o, name)
            if spec is None:
                continue
            where = self._where(f"options.{name}")
            if not isinstance(spec, Mapping):
                raise ConfigError(f"{where}: expected a mapping with model_id, got {spec!r}.")
            spec = dict(spec)
            for k in spec:
                if k not in keys:
                    raise ConfigError(f"{where}: unknown key {k!r}.{did_you_mean(str(k), keys)}")
            if not isinstance(spec.get("model_id"), str) or not spec["model_id"]:
                raise ConfigError(f"{where}.model_id: give a hub id or a local folder.")
            if spec.get("build") is not None and o.build is None:
                raise ConfigError(f"{where}.build: only models built from a recipe "
                                  "(options.build) can build a tiny adapter.")
            if name == "controlnet" and spec.get("type") not in (None, *CONTROL_TYPES):
                raise ConfigError(f"{where}.type: {spec.get('type')!r}."
                                  f"{did_you_mean(str(spec.get('type')), CONTROL_TYPES)}")
            setattr(o, name, spec)
        self._loras = self._lora_specs()
        if o.build is not None:
            where = self._where("options.build")
            if not isinstance(o.build, Mapping):
                raise ConfigError(f"{where}: expected a mapping {{arch, seed, image_size}}, "
                                  f"got {o.build!r}.")
            build = dict(o.build)
            for k in build:
                if k not in BUILD_KEYS:
                    raise ConfigError(f"{where}: unknown key {k!r}.{did_you_mean(str(k), BUILD_KEYS)}")
            if build.get("arch") not in ARCHS:
                raise ConfigError(f"{where}.arch: {build.get('arch')!r} is not a tiny "
                                  f"architecture.{did_you_mean(str(build.get('arch')), ARCHS)}")
            for k in ("seed", "image_size"):
                if k in build and not isinstance(build[k], int):
                    raise ConfigError(f"{where}.{k}: expected an integer, got {build[k]!r}.")
            self.options.build = build

    def cache_dir(self) -> Path:
        """Folder for built tiny models and hub downloads."""
        raw = self.options.cache_dir or os.environ.get("HARNESS_MODEL_CACHE") or DEFAULT_CACHE
        return Path(raw).expanduser()

    def weights_path(self) -> Path | None:
        """The local folder the weights are (or will be built) in; None for a hub id."""
        if self.options.build is not None:
            return self.cache_dir() / self.model_id.replace("/", "--")
        path = resolve_path(self.model_id)
        if path.is_dir():
            return path.absolute()
        if path.exists():
            raise ConfigError(f"{self._where('model_id')}: {self.model_id!r} is a file; the "
                              "diffusers generator loads a diffusers folder (with model_index.json) "
                              "or a hub id.")
        if is_zoo(self.model_id):
            name = self.model_id.split(":", 1)[1]
            raise ConfigError(f"{self._where('model_id')}: the zoo model {name!r} is not there "
                              f"({path}); train it with: harness zoo train {name}")
        if _looks_like_path(self.model_id):
            raise ConfigError(f"{self._where('model_id')}: local folder {self.model_id!r} does "
                              "not exist.")
        return None

    def _ensure_built(self) -> Path:
        build = self.options.build or {}
        try:
            return ensure_tiny_pipeline(build["arch"], self.weights_path(),
                                        seed=int(build.get("seed", 0)),
                                        image_size=int(build.get("image_size", 64)))
        except (ValueError, FileExistsError) as e:
            raise ConfigError(f"{self._where('options.build')}: {e}") from None

    # -- identity -----------------------------------------------------------------------------

    def fingerprint(self) -> str | None:
        """Content hash of the local (or built) folder; None for a hub id.

        Builds a tiny model first when ``build`` is set and it is missing (that imports torch);
        an existing folder is only read.
        """
        if self._fingerprint is None:
            path = self.weights_path()
            if path is None:
                return None
            if self.options.build is not None:
                self._ensure_built()
            self._fingerprint = folder_fingerprint(path)
        return self._fingerprint

    def _lora_specs(self) -> list[dict[str, Any]]:
        """params.extra.loras, checked: [{path_or_id, weight_name, scale, revision}]."""
        raw = (self.params.get("extra") or {}).get("loras")
        if raw is None:
            return []
        where = self._where("params.extra.loras")
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {{path_or_id, weight_name, scale}}, "
                              f"got {raw!r}.")
        out = []
        for i, spec in enumerate(raw):
            if not isinstance(spec, Mapping) or not isinstance(spec.get("path_or_id"), str):
                raise ConfigError(f"{where}[{i}]: expected {{path_or_id, weight_name, scale}}, "
                                  f"got {spec!r}.")
            for k in spec:
                if k not in LORA_KEYS:
                    raise ConfigError(f"{where}[{i}]: unknown key {k!r}."
                                      f"{did_you_mean(str(k), LORA_KEYS)}")
            scale = spec.get("scale", 1.0)
            if isinstance(scale, bool) or not isinstance(scale, (int, float)):
                raise ConfigError(f"{where}[{i}].scale: expected a number, got {scale!r}.")
            out.append({"path_or_id": spec["path_or_id"], "weight_name": spec.get("weight_name"),
                        "scale": float(scale), "revision": spec.get("revision")})
        return out

    def _lora_file(self, spec: Mapping[str, Any]) -> Path | None:
        """The local LoRA weights file of a spec; None for a hub id."""
        path = Path(spec["path_or_id"]).expanduser()
        if path.is_file():
            return path.absolute()
        if path.is_dir():
            name = spec.get("weight_name") or "pytorch_lora_weights.safetensors"
            if not (path / name).is_file():
                raise ConfigError(f"{self._where('params.extra.loras')}: {path} has no {name}; "
                                  "set weight_name to the LoRA file in that folder.")
            return (path / name).absolute()
        if _looks_like_path(spec["path_or_id"]):
            raise ConfigError(f"{self._where('params.extra.loras')}: LoRA path "
                              f"{spec['path_or_id']!r} does not exist.")
        return None

    def _adapter_folder(self, name: str) -> Path | None:
        """Local folder of the ControlNet / IP-Adapter (built first when it has a recipe);
        None for a hub id."""
        spec = getattr(self.options, name)
        if spec.get("build") is not None:
            folder = self.cache_dir() / spec["model_id"].replace("/", "--")
            if not (folder / RECIPE_FILE).is_file():
                from harness.generators import tiny

                base = self._ensure_built()
                seed = int(dict(spec["build"]).get("seed", 0))
                builder = tiny.build_tiny_controlnet if name == "controlnet" \
                    else tiny.build_tiny_ip_adapter
                builder(base, folder, seed=seed)
            return folder
        path = Path(spec["model_id"]).expanduser()
        if path.is_dir():
            return path.absolute()
        if _looks_like_path(spec["model_id"]):
            raise ConfigError(f"{self._where('options.' + name)}.model_id: local folder "
                              f"{spec['model_id']!r} does not exist.")
        return None

    def request_params(self) -> dict[str, Any]:
        """params.extra plus what else changes the image: each LoRA's file hash (local files)
        and the ControlNet / IP-Adapter identity (id, revision, folder fingerprint).

        LoRAs are generation parameters (params.extra.loras), not options, because they change
        every image; their scale and file hash are in the key so a retrained LoRA file or a new
        scale never hits a stale cache entry. ControlNet and IP-Adapter weights are options
        (they are only used by prompts with a control_image / reference_image) but their
        identity is added here, under ``adapters``: the key of a controlled image changes with
        the weights. (Prompts without controls get it too: the plan knows no per-prompt
        parameters, so a model's keys change when an adapter is added to its options.)
        """
        if self._request_params is None:
            extra = dict(self.params.get("extra") or {})
            if "adapters" in extra:
                raise ConfigError(f"{self._where('params.extra.adapters')}: set by the harness "
                                  "from options.controlnet / options.ip_adapter.")
            if self._loras:
                loras = []
                for spec in self._loras:
                    file = self._lora_file(spec)
                    loras.append({**spec, "sha256": ctl._file_sha(file) if file else None})
                extra["loras"] = loras
            adapters = {}
            for name in ("controlnet", "ip_adapter"):
                spec = getattr(self.options, name)
                if spec is None:
                    continue
                folder = self._adapter_folder(name)
                ident = {k: v for k, v in spec.items() if k != "build"}
                ident["weights"] = folder_fingerprint(folder) if folder else None
                if folder is not None:
                    ident["model_id"] = spec["model_id"] if spec.get("build") is not None \
                        else folder.name  # a folder's place on disk is no part of its identity
                adapters[name] = ident
            if adapters:
                extra["adapters"] = adapters
            self._request_params = extra
        return dict(self._request_params)

    # -- loading ------------------------------------------------------------------------------

    def _resolve_device(self, torch: Any) -> str:
        want = self.options.device
        has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
        if want == "auto":
            return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
        if want.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"{self._where('options.device')} is {want!r} but this torch "
                               f"({torch.__version__}) sees no CUDA device; use device: auto or cpu.")
        if want == "mps" and not has_mps:
            raise RuntimeError(f"{self._where('options.device')} is 'mps' but MPS is not "
                               "available; use device: auto or cpu.")
        return want

    def _resolve_dtype(self, torch: Any, device: str) -> Any:
        name = self.options.dtype
        if name == "auto":
            if device.startswith("cuda"):
                name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                name = "float16" if device == "mps" else "float32"
        return getattr(torch, DTYPES.get(name, name))

    def _hub_error(self, err: Exception, offline: bool) -> RuntimeError:
        rev = f" (revision {self.revision})" if self.revision else ""
        cache = self.cache_dir()
        fixes = (f"Point the model at a local diffusers folder with "
                 f"`models.{self.name}.model_id=/path/to/local/folder`, or download it first where "
                 f"the hub is reachable: `hf download {self.model_id}"
                 f"{f' --revision {self.revision}' if self.revision else ''} --cache-dir {cache}` "
                 "(`huggingface-cli download` in huggingface_hub < 1.0).")
        if offline:
            switches = [name for name, on in (
                (f"models.{self.name}.options.local_files_only", self.options.local_files_only),
                ("HF_HUB_OFFLINE=1", _env_true("HF_HUB_OFFLINE"))) if on]
            why = f"hub access is disabled ({', '.join(switches)})"
            return RuntimeError(f"{self._where()}: cannot load {self.model_id!r}{rev}: it is not in "
                                f"the local cache ({cache}) and {why}. {fixes}")
        if not _hub_reachable():
            return RuntimeError(f"{self._where()}: cannot load {self.model_id!r}{rev}: it is not in "
                                f"the local cache ({cache}) and the Hugging Face hub is unreachable "
                                f"(offline). {fixes}")
        return RuntimeError(f"{self._where()}: cannot load {self.model_id!r}{rev} from the hub: "
                            f"{type(err).__name__}: {err}. Check the id and revision; gated models "
                            "need `hf auth login` and accepted terms.")

    def load(self) -> None:
        """Load the pipeline onto its device (building a tiny model first if configured)."""
        if self._pipe is not None:
            return
        import diffusers
        import torch
        import transformers
        from diffusers import DiffusionPipeline
        from huggingface_hub.errors import HFValidationError

        o = self.options
        if o.torch_threads:
            torch.set_num_threads(o.torch_threads)
        device = self._resolve_device(torch)
        dtype = self._resolve_dtype(torch, device)
        kwargs: dict[str, Any] = {_dtype_kwarg(): dtype}
        if o.variant:
            kwargs["variant"] = o.variant
        if importlib.util.find_spec("accelerate") is None:
            kwargs["low_cpu_mem_usage"] = False  # what diffusers falls back to, minus its warning
        path = self.weights_path()
        if path is not None:
            if o.build is not None:
                self._ensure_built()
            with _no_load_bars():
                pipe = DiffusionPipeline.from_pretrained(
                    str(path), local_files_only=True, **_null_components(path), **kwargs)
        else:
            offline = o.local_files_only or _env_true("HF_HUB_OFFLINE")
            try:
                with _no_load_bars():
                    pipe = DiffusionPipeline.from_pretrained(
                        self.model_id, revision=self.revision, cache_dir=str(self.cache_dir()),
                        local_files_only=offline, **kwargs)
            except HFValidationError as e:
                raise ConfigError(f"{self._where('model_id')}: {self.model_id!r} is neither an "
                                  f"existing local folder nor a valid hub id ({e}).") from None
            except OSError as e:  # hub errors (not found, offline, HTTP) are OSErrors
                raise self._hub_error(e, offline) from e

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
                raise ConfigError(f"{self._where('options.attention')}: cannot use "
                                  f"{o.attention!r}: {type(e).__name__}: {e}") from None
        if o.cpu_offload and device != "cpu":
            if importlib.util.find_spec("accelerate") is None:
                raise RuntimeError(f"{self._where('options.cpu_offload')} needs accelerate: "
                                   "pip install accelerate")
            if o.cpu_offload == "sequential":
                pipe.enable_sequential_cpu_offload(device=device)
            else:
                pipe.enable_model_cpu_offload(device=device)
        else:
            if o.cpu_offload:
                log.warning("%s: cpu_offload ignored on a CPU device", self._where())
            pipe.to(device)
        vae = getattr(pipe, "vae", None)
        for flag, method in (("vae_slicing", "enable_slicing"), ("vae_tiling", "enable_tiling")):
            if getattr(o, flag):
                if not hasattr(vae, method):
                    raise ConfigError(f"{self._where('options.' + flag)}: this pipeline's VAE "
                                      f"({type(vae).__name__}) does not support it.")
                getattr(vae, method)()
        if o.compile and denoiser is not None:
            # In place (nn.Module.compile), so pipelines derived with from_pipe share it.
            denoiser.compile()
        pipe.set_progress_bar_config(disable=True)

        self._pipe = pipe
        self._modes = {("text2img", False): pipe}
        self._device = device
        self._dtype = str(dtype).removeprefix("torch.")
        self._versions = {"torch": torch.__version__, "diffusers": diffusers.__version__,
                          "transformers": transformers.__version__}
        self._gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
        self._default_scheduler = pipe.scheduler
        self._schedulers = {type(pipe.scheduler).__name__: pipe.scheduler}
        self._call_params = {
            k: p for k, p in inspect.signature(type(pipe).__call__).parameters.items()
            if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    # -- generating ---------------------------------------------------------------------------

    def _scheduler(self, name: str | None) -> Any:
        """The scheduler instance for a request (None: the pipeline's own)."""
        if name is None:
            return self._default_scheduler
        if name not in self._schedulers:
            import diffusers

            names = sorted({c.__name__ for c in self._default_scheduler.compatibles})
            cls = getattr(diffusers, name, None) if name in names else None
            if cls is None:
                raise ConfigError(
                    f"{self._where('params.scheduler')}: {name!r} is not a scheduler this "
                    f"{type(self._pipe).__name__} can use.{did_you_mean(name, names)}")
            self._schedulers[name] = cls.from_config(self._default_scheduler.config)
        return self._schedulers[name]

    def _load_controlnet(self) -> Any:
        if self._controlnet is None:
            import diffusers

            spec = self.options.controlnet
            folder = self._adapter_folder("controlnet")
            # SD3 and Flux have their own ControlNet classes; the model type picks one.
            cls_name = {"SD3Transformer2DModel": "SD3ControlNetModel",
                        "FluxTransformer2DModel": "FluxControlNetModel"}.get(
                type(getattr(self._pipe, "transformer", None)).__name__, "ControlNetModel")
            cls = getattr(diffusers, cls_name)
            kwargs: dict[str, Any] = {_dtype_kwarg(): self._pipe.dtype}
            for k in ("subfolder", "variant"):
                if spec.get(k):
                    kwargs[k] = spec[k]
            with _no_load_bars():
                if folder is not None:
                    cn = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
                else:
                    offline = self.options.local_files_only or _env_true("HF_HUB_OFFLINE")
                    try:
                        cn = cls.from_pretrained(spec["model_id"], revision=spec.get("revision"),
                                                 cache_dir=str(self.cache_dir()),
                                                 local_files_only=offline, **kwargs)
                    except OSError as e:
                        raise RuntimeError(f"{self._where('options.controlnet')}: cannot load "
                                           f"{spec['model_id']!r}: {e}. Point model_id at a local "
                                           "folder.") from e
            if not self.options.cpu_offload:
                cn.to(self._device)
            self._controlnet = cn
        return self._controlnet

    def _mode_pipe(self, task: str, controlnet: bool) -> Any:
        """The pipeline for a task (text2img / img2img / inpaint), with or without ControlNet,
        derived from the loaded one with ``from_pipe``: same weights in memory, no reload."""
        key = (task, controlnet)
        if key not in self._modes:
            from diffusers import (
                AutoPipelineForImage2Image,
                AutoPipelineForInpainting,
                AutoPipelineForText2Image,
            )

            auto = {"text2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
                    "inpaint": AutoPipelineForInpainting}[task]
            kwargs = {"controlnet": self._load_controlnet()} if controlnet else {}
            try:
                with _no_load_bars():
                    pipe = auto.from_pipe(self._pipe, **kwargs)
            except (ValueError, KeyError, AttributeError) as e:
                what = f"{task}{' with ControlNet' if controlnet else ''}"
                raise ConfigError(f"{self._where()}: {type(self._pipe).__name__} has no {what} "
                                  f"pipeline in diffusers ({e}).") from None
            pipe.set_progress_bar_config(disable=True)
            self._modes[key] = pipe
        return self._modes[key]

    @staticmethod
    def _call_args(pipe: Any) -> dict[str, inspect.Parameter]:
        return {k: p for k, p in inspect.signature(type(pipe).__call__).parameters.items()
                if k != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def _check_requests(self, requests: list[GenRequest]) -> None:
        """Configuration errors raise before any image is made."""
        accepted = [k for k in self._call_params if k not in RESERVED_KWARGS]
        for r in requests:
            if r.controls:
                where = f"{self._where()}: prompt {r.prompt_id!r}"
                problems = []
                for c in r.controls:
                    problems += ctl.check_params(str(c.get("kind")), c.get("params") or {})
                try:
                    task, use_cn, use_ip = ctl.request_mode(r.controls)
                except ValueError as e:
                    problems.append(str(e))
                if problems:
                    raise ConfigError(f"{where}: {'; '.join(problems)}.")
                if use_cn and self.options.controlnet is None:
                    raise ConfigError(
                        f"{where} has a control_image but the model has no ControlNet: set "
                        f"models.{self.name}.options.controlnet: {{model_id: <hub id or folder>, "
                        "type: canny}, or drop such prompts (suite.exclude_tags=[control:controlnet]).")
                if use_ip and self.options.ip_adapter is None:
                    raise ConfigError(
                        f"{where} has a reference_image but the model has no IP-Adapter: set "
                        f"models.{self.name}.options.ip_adapter: {{model_id, subfolder, "
                        "weight_name, image_encoder_folder}, or drop such prompts "
                        "(suite.exclude_tags=[control:ip_adapter]).")
                for c in r.controls:
                    try:
                        ctl.find_input(str(c.get("sha256")), c.get("path"))
                    except FileNotFoundError as e:
                        raise ConfigError(f"{where}: {c.get('kind')}: {e}") from None
                self._mode_pipe(task, use_cn)
            self._scheduler(r.scheduler)
            for k in r.params:
                if k in HARNESS_PARAMS:
                    continue
                if k in RESERVED_KWARGS:
                    raise ConfigError(f"{self._where('params.extra')}: {k!r} is set by the harness; "
                                      f"{RESERVED_KWARGS[k]}.")
                if k not in self._call_params:
                    raise ConfigError(
                        f"{self._where('params.extra')}: {type(self._pipe).__name__} takes no "
                        f"argument {k!r}.{did_you_mean(k, accepted)}")
            if r.guidance is not None and "guidance_scale" not in self._call_params:
                raise ConfigError(f"{self._where('params.guidance')}: {type(self._pipe).__name__} "
                                  "has no guidance_scale; set guidance: null.")
            if r.negative_prompt is not None and "negative_prompt" not in self._call_params:
                raise ConfigError(f"{self._where()}: {type(self._pipe).__name__} takes no negative "
                                  f"prompt (prompt {r.prompt_id!r}).")

    def _generate(self, requests: list[GenRequest]) -> list[GenResult]:
        self._check_requests(requests)
        # Requests that differ in size, steps, guidance, scheduler, params, pipeline mode or a
        # control's settings cannot share a call; only the input images may differ.
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            settings = sorted((str(c.get("kind")), canonical_json(dict(c.get("params") or {})))
                              for c in r.controls)
            # Different IP-Adapter references in one SD call were seen to blend (each image got
            # a mix of the batch's references), so only requests sharing a reference batch.
            settings += [c["sha256"] for c in r.controls if c.get("kind") == "reference_image"]
            key = canonical_json([r.width, r.height, r.steps, r.guidance, r.scheduler,
                                  dict(r.params), settings])
            groups.setdefault(key, []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        for idx in groups.values():
            for i, res in zip(idx, self._run_halving([requests[i] for i in idx]), strict=False):
                results[i] = res
        return results  # type: ignore[return-value]

    def _run_halving(self, reqs: list[GenRequest], retries: int = 0) -> list[GenResult]:
        """Run a sub-batch; on CUDA out-of-memory run it again as two halves (recorded in
        info: ``oom_retries``, and ``batch_size`` is the size that ran)."""
        try:
            results = self._run(reqs)
        except _OutOfMemory as e:
            if len(reqs) == 1:
                msg = f"OutOfMemoryError at batch 1: {e.error}"
                return [GenResult(status="error", error=msg, device=self._device,
                                  dtype=self._dtype, info={"oom_retries": retries,
                                                           "batch_size": 1})]
            half = (len(reqs) + 1) // 2
            log.warning("%s: CUDA out of memory at batch %d; retrying as %d + %d", self._where(),
                        len(reqs), half, len(reqs) - half)
            return (self._run_halving(reqs[:half], retries + 1)
                    + self._run_halving(reqs[half:], retries + 1))
        if retries:
            for res in results:
                res.info["oom_retries"] = retries
        return results

    def _apply_loras(self, pipe: Any, loras: list[Mapping[str, Any]]) -> None:
        """Make exactly these LoRAs active at these scales (loaded once, then switched)."""
        want = tuple((canonical_json({k: v for k, v in spec.items() if k != "scale"}),
                      float(spec.get("scale", 1.0))) for spec in loras)
        if want == self._lora_active:
            return
        if not want:
            self._pipe.disable_lora()
            self._lora_active = want
            return
        names = []
        for ident, _ in want:
            if ident not in self._lora_names:
                spec = json.loads(ident)
                name = f"lora{len(self._lora_names)}"
                file = self._lora_file(spec)
                with _no_load_bars():
                    if file is not None:
                        self._pipe.load_lora_weights(str(file.parent), weight_name=file.name,
                                                     adapter_name=name)
                    else:
                        kwargs = {k: spec[k] for k in ("weight_name", "revision") if spec.get(k)}
                        self._pipe.load_lora_weights(spec["path_or_id"], adapter_name=name,
                                                     cache_dir=str(self.cache_dir()), **kwargs)
                self._lora_names[ident] = name
            names.append(self._lora_names[ident])
        self._pipe.enable_lora()
        self._pipe.set_adapters(names, adapter_weights=[scale for _, scale in want])
        self._lora_active = want

    def _set_ip_adapter(self, wanted: bool) -> None:
        """Load the IP-Adapter for requests with a reference image; unload it for the rest (a
        U-Net with an IP-Adapter refuses to run without image embeddings)."""
        if wanted and not self._ip_loaded:
            spec = self.options.ip_adapter
            folder = self._adapter_folder("ip_adapter")
            source = str(folder) if folder is not None else spec["model_id"]
            kwargs: dict[str, Any] = {}
            if folder is None:
                kwargs.update(cache_dir=str(self.cache_dir()), revision=spec.get("revision"),
                              local_files_only=self.options.local_files_only
                              or _env_true("HF_HUB_OFFLINE"))
            from diffusers.utils import logging as diffusers_logging

            verbosity = diffusers_logging.get_verbosity()
            # Quiet the "modules that should be kept in float32: []" note of its unet.to(dtype).
            diffusers_logging.set_verbosity_error()
            try:
                with _no_load_bars():
                    self._pipe.load_ip_adapter(
                        source, subfolder=spec.get("subfolder") or "",
                        weight_name=spec.get("weight_name") or IP_ADAPTER_WEIGHTS,
                        image_encoder_folder=spec.get("image_encoder_folder", "image_encoder"),
                        **kwargs)
            finally:
                diffusers_logging.set_verbosity(verbosity)
            # Modes derived before the encoder was registered do not have it.
            for pipe in self._modes.values():
                if pipe is not self._pipe:
                    for comp in ("image_encoder", "feature_extractor"):
                        if hasattr(pipe, comp):
                            pipe.register_modules(**{comp: getattr(self._pipe, comp)})
            self._ip_loaded = True
        elif not wanted and self._ip_loaded:
            self._pipe.unload_ip_adapter()
            self._ip_loaded = False

    def _control_inputs(self, pipe: Any, reqs: list[GenRequest], task: str, use_cn: bool,
                        use_ip: bool, kwargs: dict[str, Any], info: dict[str, Any]) -> None:
        """Load, resize and prepare each request's control images into the call's kwargs."""
        import torch

        first = reqs[0]
        w, h = first.width, first.height
        by_kind = [{c["kind"]: c for c in r.controls} for r in reqs]
        params = {k: dict(c.get("params") or {}) for k, c in by_kind[0].items()}

        def files(kind: str) -> list[Path]:
            return [ctl.find_input(str(d[kind]["sha256"]), d[kind].get("path")) for d in by_kind]

        if task in ("img2img", "inpaint"):
            inits = [ctl.load_rgb(p, w, h) for p in files("init_image")]
            kwargs["image"] = inits
            if "strength" in params["init_image"]:
                kwargs["strength"] = float(params["init_image"]["strength"])
            if task == "inpaint":
                kwargs["mask_image"] = [ctl.load_mask(p, w, h) for p in files("mask")]
                info["_overlay"] = (inits, kwargs["mask_image"]) \
                    if params["mask"].get("overlay") else None
        if use_cn:
            cp = params["control_image"]
            kind = cp.get("type") or self.options.controlnet.get("type") or "image"
            if cp.get("type") and self.options.controlnet.get("type") not in (None, cp["type"]):
                log.warning("%s: control_image type %s given to a ControlNet trained on %s",
                            self._where(), cp["type"], self.options.controlnet.get("type"))
            maps = [ctl.control_image(p, {**cp, "type": kind}, w, h) for p in files("control_image")]
            kwargs["control_image" if task != "text2img" else "image"] = maps
            if "conditioning_scale" in cp:
                kwargs["controlnet_conditioning_scale"] = float(cp["conditioning_scale"])
            if kind == "canny":
                info["canny"] = {k: cp.get(k, v) for k, v in ctl.CANNY_DEFAULTS.items()}
        if use_ip:
            scale = float(params["reference_image"].get("scale", 1.0))
            self._pipe.set_ip_adapter_scale(scale)
            refs = [ctl.load_rgb(p, w, h) for p in files("reference_image")]
            if hasattr(pipe, "encode_image") and "ip_adapter_image_embeds" in self._call_args(pipe):
                # Embeddings stacked per request (all one reference, see _generate): the
                # pipelines' own ip_adapter_image path gives a batch one embedding row.
                device = self._device if not self.options.cpu_offload else pipe._execution_device
                with torch.no_grad():
                    pos, neg = pipe.encode_image(refs, device, 1, False)
                guidance = kwargs.get("guidance_scale", self._default("guidance_scale")) or 0
                embeds = torch.cat([neg, pos]) if guidance > 1 else pos
                kwargs["ip_adapter_image_embeds"] = [embeds[:, None, :]]
            else:
                kwargs["ip_adapter_image"] = refs if len(refs) > 1 else refs[0]

    def _run(self, reqs: list[GenRequest]) -> list[GenResult]:
        """One pipeline call for requests sharing every setting but prompt, seed and inputs."""
        import torch

        first, n = reqs[0], len(reqs)
        task, use_cn, use_ip = ctl.request_mode(first.controls)
        pipe = self._mode_pipe(task, use_cn)
        call_args = self._call_args(pipe)
        scheduler = self._scheduler(first.scheduler)
        pipe.scheduler = scheduler
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt for r in reqs],
            "output_type": "pil",
            # One CPU generator per image: its noise depends on its seed only, not on the batch.
            "generator": [torch.Generator("cpu").manual_seed(r.seed) for r in reqs],
        }
        if "width" in call_args:  # img2img pipelines take the size of the init image
            kwargs.update(width=first.width, height=first.height)
        negatives = [r.negative_prompt for r in reqs]
        if any(neg is not None for neg in negatives):
            kwargs["negative_prompt"] = [neg or "" for neg in negatives]  # None means "" anyway
        if first.steps is not None:
            kwargs["num_inference_steps"] = first.steps
        if first.guidance is not None:
            kwargs["guidance_scale"] = first.guidance
        kwargs.update({k: v for k, v in first.params.items() if k not in HARNESS_PARAMS})
        steps = kwargs.get("num_inference_steps", self._default("num_inference_steps"))
        info: dict[str, Any] = {"batch_size": n, "versions": dict(self._versions), "steps": steps,
                                "scheduler": type(scheduler).__name__}
        if task != "text2img" or use_cn or use_ip:
            info["pipeline"] = type(pipe).__name__
        if self._gpu:
            info["gpu"] = self._gpu
        try:
            self._apply_loras(pipe, list(first.params.get("loras") or []))
            self._set_ip_adapter(use_ip)
            self._control_inputs(pipe, reqs, task, use_cn, use_ip, kwargs, info)
            overlay = info.pop("_overlay", None)
            start = time.perf_counter()
            images = pipe(**kwargs).images
            if overlay:
                images = [ctl.overlay(im, init, mask)
                          for im, init, mask in zip(images, *overlay, strict=True)]
            elapsed = time.perf_counter() - start
            if len(images) != n:
                raise RuntimeError(f"pipeline returned {len(images)} images for {n} prompts")
            pngs = [_png(im) for im in images]
        except Exception as e:  # the whole batch failed; the runner retries it next run
            info.pop("_overlay", None)
            if self._device.startswith("cuda"):
                torch.cuda.empty_cache()
            if isinstance(e, torch.OutOfMemoryError):
                raise _OutOfMemory(f"{type(e).__name__}: {e}") from e
            if isinstance(e, ConfigError):
                raise
            log.warning("%s: batch of %d failed: %s", self._where(), n, e, exc_info=True)
            msg = f"{type(e).__name__}: {e}"
            return [GenResult(status="error", error=msg, device=self._device, dtype=self._dtype,
                              info=dict(info)) for _ in reqs]
        return [GenResult(status="ok", image=png, latency_s=elapsed / n, device=self._device,
                          dtype=self._dtype, info=dict(info)) for png in pngs]

    def _default(self, arg: str) -> Any:
        p = self._call_params.get(arg)
        return None if p is None or p.default is inspect.Parameter.empty else p.default

    def close(self) -> None:
        """Drop the pipeline (and its derived modes, ControlNet, adapters) and free memory."""
        if self._pipe is None:
            return
        on_cuda = self._device.startswith("cuda")
        self._pipe = None
        self._modes = {}
        self._controlnet = None
        self._ip_loaded = False
        self._lora_names = {}
        self._lora_active = ()
        self._default_scheduler = None
        self._schedulers = {}
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()


class _OutOfMemory(Exception):
    """A batch ran out of GPU memory (the caller halves it)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
