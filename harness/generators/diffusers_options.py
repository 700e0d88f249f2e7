"""What a diffusers model entry may say: its options, the pipeline arguments the harness keeps
for itself, and the checks that turn a bad entry into a ConfigError before anything loads.

Only the standard library here: the runner constructs every selected model to plan, and
construction runs these checks.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.generators.controls import CONTROL_TYPES
from harness.generators.tiny import ARCHS

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
COMPONENT_KEYS = ("model_id", "class", "revision", "subfolder")

HARNESS_PARAMS = ("loras", "adapters", "components")
"""params.extra keys the generator reads itself instead of passing them to the pipeline:
``loras`` (set in the model config), ``adapters`` (ControlNet / IP-Adapter identity) and
``components`` (identity of options.components), both added by
:meth:`DiffusersGenerator.request_params`."""

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

Where = Callable[[str], str]
"""Turns an option key into the config path errors name (``models.<name>.<key>``)."""


@dataclasses.dataclass
class DiffusersOptions:
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
    components: Mapping[str, Any] | None = None
    """Pipeline parts kept outside the model folder, loaded separately and passed to
    ``from_pretrained``: {component name: {model_id (hub id or folder), class (a transformers
    or diffusers class name, e.g. LlamaForCausalLM, AutoTokenizer), revision, subfolder}}.
    HiDream-I1 needs its Llama text encoder and tokenizer this way. Their identity goes into
    every request (params.components)."""


def looks_like_path(model_id: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else shaped like a path is a folder."""
    return (model_id.startswith(("/", "./", "../", "~", ".\\"))
            or model_id.count("/") > 1 or "\\" in model_id)


def env_true(name: str) -> bool:
    """Whether environment variable ``name`` is set to 1, on, yes or true."""
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_offline(o: DiffusersOptions) -> bool:
    """Whether hub ids must load from the local cache only (the option or $HF_HUB_OFFLINE)."""
    return o.local_files_only or env_true("HF_HUB_OFFLINE")


def cache_dir(o: DiffusersOptions) -> Path:
    """Folder for built tiny models and hub downloads."""
    raw = o.cache_dir or os.environ.get("HARNESS_MODEL_CACHE") or DEFAULT_CACHE
    return Path(raw).expanduser()


def check_options(o: DiffusersOptions, where: Where) -> None:
    """Raise a ConfigError naming the key for a bad option; turn the ``controlnet``,
    ``ip_adapter`` and ``build`` mappings (OmegaConf nodes from Hydra) into plain dicts."""
    if not isinstance(o.device, str) or not _DEVICE_RE.match(o.device):
        raise ConfigError(f"{where('options.device')}: {o.device!r} is not a device; "
                          "use auto, cpu, cuda, cuda:N or mps.")
    if o.dtype != "auto" and o.dtype not in DTYPES:
        raise ConfigError(f"{where('options.dtype')}: unknown dtype {o.dtype!r}."
                          f"{did_you_mean(str(o.dtype), ['auto', *DTYPES])}")
    if o.torch_threads is not None and (not isinstance(o.torch_threads, int)
                                        or o.torch_threads < 1):
        raise ConfigError(f"{where('options.torch_threads')}: expected a positive "
                          f"integer or null, got {o.torch_threads!r}.")
    if not (isinstance(o.cpu_offload, bool) or o.cpu_offload in ("model", "sequential")):
        raise ConfigError(f"{where('options.cpu_offload')}: expected true, false, model "
                          f"or sequential, got {o.cpu_offload!r}.")
    for name, keys in (("controlnet", CONTROLNET_KEYS), ("ip_adapter", IP_ADAPTER_KEYS)):
        spec = getattr(o, name)
        if spec is None:
            continue
        at = where(f"options.{name}")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{at}: expected a mapping with model_id, got {spec!r}.")
        spec = dict(spec)
        for k in spec:
            if k not in keys:
                raise ConfigError(f"{at}: unknown key {k!r}.{did_you_mean(str(k), keys)}")
        if not isinstance(spec.get("model_id"), str) or not spec["model_id"]:
            raise ConfigError(f"{at}.model_id: give a hub id or a local folder.")
        if spec.get("build") is not None and o.build is None:
            raise ConfigError(f"{at}.build: only models built from a recipe "
                              "(options.build) can build a tiny adapter.")
        if name == "controlnet" and spec.get("type") not in (None, *CONTROL_TYPES):
            raise ConfigError(f"{at}.type: {spec.get('type')!r}."
                              f"{did_you_mean(str(spec.get('type')), CONTROL_TYPES)}")
        setattr(o, name, spec)
    check_components(o, where)


def check_components(o: DiffusersOptions, where: Where) -> None:
    """Check options.components (see :class:`DiffusersOptions`) and make it plain dicts; the
    classes are looked up when the model loads."""
    if o.components is None:
        return
    at = where("options.components")
    if not isinstance(o.components, Mapping):
        raise ConfigError(f"{at}: expected a mapping {{component name: {{model_id, class}}}}, "
                          f"got {o.components!r}.")
    out = {}
    for name, spec in o.components.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{at}.{name}: expected a mapping {{model_id, class, revision, "
                              f"subfolder}}, got {spec!r}.")
        spec = dict(spec)
        for k in spec:
            if k not in COMPONENT_KEYS:
                raise ConfigError(f"{at}.{name}: unknown key {k!r}."
                                  f"{did_you_mean(str(k), COMPONENT_KEYS)}")
        for k in ("model_id", "class"):
            if not isinstance(spec.get(k), str) or not spec[k]:
                raise ConfigError(f"{at}.{name}.{k}: required; give "
                                  + ("a hub id or a local folder." if k == "model_id" else
                                     "a transformers or diffusers class name (LlamaForCausalLM, "
                                     "AutoTokenizer ...)."))
        out[str(name)] = spec
    o.components = out


def check_build(o: DiffusersOptions, where: Where) -> None:
    """Check options.build, the recipe of a tiny model, and make it a plain dict."""
    if o.build is None:
        return
    at = where("options.build")
    if not isinstance(o.build, Mapping):
        raise ConfigError(f"{at}: expected a mapping {{arch, seed, image_size}}, "
                          f"got {o.build!r}.")
    build = dict(o.build)
    for k in build:
        if k not in BUILD_KEYS:
            raise ConfigError(f"{at}: unknown key {k!r}.{did_you_mean(str(k), BUILD_KEYS)}")
    if build.get("arch") not in ARCHS:
        raise ConfigError(f"{at}.arch: {build.get('arch')!r} is not a tiny "
                          f"architecture.{did_you_mean(str(build.get('arch')), ARCHS)}")
    for k in ("seed", "image_size"):
        if k in build and not isinstance(build[k], int):
            raise ConfigError(f"{at}.{k}: expected an integer, got {build[k]!r}.")
    o.build = build


def lora_specs(extra: Mapping[str, Any], where: Where) -> list[dict[str, Any]]:
    """params.extra.loras, checked: [{path_or_id, weight_name, scale, revision}]."""
    raw = extra.get("loras")
    if raw is None:
        return []
    at = where("params.extra.loras")
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{at}: expected a list of {{path_or_id, weight_name, scale}}, "
                          f"got {raw!r}.")
    out = []
    for i, spec in enumerate(raw):
        if not isinstance(spec, Mapping) or not isinstance(spec.get("path_or_id"), str):
            raise ConfigError(f"{at}[{i}]: expected {{path_or_id, weight_name, scale}}, "
                              f"got {spec!r}.")
        for k in spec:
            if k not in LORA_KEYS:
                raise ConfigError(f"{at}[{i}]: unknown key {k!r}."
                                  f"{did_you_mean(str(k), LORA_KEYS)}")
        scale = spec.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ConfigError(f"{at}[{i}].scale: expected a number, got {scale!r}.")
        out.append({"path_or_id": spec["path_or_id"], "weight_name": spec.get("weight_name"),
                    "scale": float(scale), "revision": spec.get("revision")})
    return out
