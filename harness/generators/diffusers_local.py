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

from harness.config import ConfigError, did_you_mean
from harness.generators.base import Generator
from harness.testing.tiny import ARCHS, ensure_tiny_pipeline
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

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def folder_fingerprint(folder: str | Path) -> str:
    """Content hash of a model folder: sha256 over the sorted (relative path, file sha256) pairs.

    Files and folders whose name starts with a dot are skipped (build recipes, hub download
    metadata). Symlinked files (hub cache snapshots) are hashed by their target's content.
    """
    root = Path(folder)
    pairs = []
    for dirpath, dirnames, filenames in os.walk(root):
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
        cpu_offload: bool = False
        """Keep sub-models on the CPU and move each to the GPU while it runs (needs
        accelerate; ignored with a warning on a CPU device)."""
        torch_threads: int | None = None
        """torch.set_num_threads for CPU runs; None keeps torch's default."""

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
        path = Path(self.model_id).expanduser()
        if path.is_dir():
            return path.absolute()
        if path.exists():
            raise ConfigError(f"{self._where('model_id')}: {self.model_id!r} is a file; the "
                              "diffusers generator loads a diffusers folder (with model_index.json) "
                              "or a hub id.")
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

        if o.cpu_offload and device != "cpu":
            if importlib.util.find_spec("accelerate") is None:
                raise RuntimeError(f"{self._where('options.cpu_offload')} needs accelerate: "
                                   "pip install accelerate")
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
        pipe.set_progress_bar_config(disable=True)

        self._pipe = pipe
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

    def _check_requests(self, requests: list[GenRequest]) -> None:
        """Configuration errors raise before any image is made."""
        accepted = [k for k in self._call_params if k not in RESERVED_KWARGS]
        for r in requests:
            if r.controls:
                kinds = ", ".join(sorted({str(c.get("kind")) for c in r.controls}))
                raise ConfigError(
                    f"{self._where()}: prompt {r.prompt_id!r} ({r.prompt[:60]!r}) carries control "
                    f"input(s) of kind {kinds}; the diffusers generator does not support control "
                    "inputs (img2img, inpainting, ControlNet, IP-Adapter) yet. Drop those prompts "
                    "(e.g. suite.exclude_tags) or run them with a generator that supports them.")
            self._scheduler(r.scheduler)
            for k in r.params:
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
        # Requests that differ in size, steps, guidance, scheduler or params cannot share a call.
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(requests):
            key = canonical_json([r.width, r.height, r.steps, r.guidance, r.scheduler,
                                  dict(r.params)])
            groups.setdefault(key, []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        for idx in groups.values():
            for i, res in zip(idx, self._run([requests[i] for i in idx]), strict=False):
                results[i] = res
        return results  # type: ignore[return-value]

    def _run(self, reqs: list[GenRequest]) -> list[GenResult]:
        """One pipeline call for requests sharing every setting but prompt and seed."""
        import torch

        pipe, first, n = self._pipe, reqs[0], len(reqs)
        scheduler = self._scheduler(first.scheduler)
        pipe.scheduler = scheduler
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt for r in reqs],
            "width": first.width,
            "height": first.height,
            "output_type": "pil",
            # One CPU generator per image: its noise depends on its seed only, not on the batch.
            "generator": [torch.Generator("cpu").manual_seed(r.seed) for r in reqs],
        }
        negatives = [r.negative_prompt for r in reqs]
        if any(neg is not None for neg in negatives):
            kwargs["negative_prompt"] = [neg or "" for neg in negatives]  # None means "" anyway
        if first.steps is not None:
            kwargs["num_inference_steps"] = first.steps
        if first.guidance is not None:
            kwargs["guidance_scale"] = first.guidance
        kwargs.update(first.params)
        steps = kwargs.get("num_inference_steps", self._default("num_inference_steps"))
        info = {"batch_size": n, "versions": dict(self._versions), "steps": steps,
                "scheduler": type(scheduler).__name__}
        if self._gpu:
            info["gpu"] = self._gpu
        try:
            start = time.perf_counter()
            images = pipe(**kwargs).images
            elapsed = time.perf_counter() - start
            if len(images) != n:
                raise RuntimeError(f"pipeline returned {len(images)} images for {n} prompts")
            pngs = [_png(im) for im in images]
        except Exception as e:  # the whole batch failed; the runner retries it next run
            log.warning("%s: batch of %d failed: %s", self._where(), n, e, exc_info=True)
            if self._device.startswith("cuda"):
                torch.cuda.empty_cache()
            msg = f"{type(e).__name__}: {e}"
            return [GenResult(status="error", error=msg, device=self._device, dtype=self._dtype,
                              info=dict(info)) for _ in reqs]
        return [GenResult(status="ok", image=png, latency_s=elapsed / n, device=self._device,
                          dtype=self._dtype, info=dict(info)) for png in pngs]

    def _default(self, arg: str) -> Any:
        p = self._call_params.get(arg)
        return None if p is None or p.default is inspect.Parameter.empty else p.default

    def close(self) -> None:
        """Drop the pipeline and free its memory."""
        if self._pipe is None:
            return
        on_cuda = self._device.startswith("cuda")
        self._pipe = None
        self._default_scheduler = None
        self._schedulers = {}
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()
