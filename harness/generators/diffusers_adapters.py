"""What a loaded diffusers pipeline adds for LoRAs and control inputs: LoRA weights switched per
request, the IP-Adapter for reference images, the ControlNet for control maps, and the derived
pipelines (img2img, inpainting, each with or without ControlNet) made from the loaded one.

The finding of adapter files and their identity (what goes into the cache key) needs no torch;
:class:`Adapters` works on a loaded pipeline and imports torch and diffusers where it acts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.generators import controls as ctl
from harness.generators.diffusers_loading import (
    call_params,
    dtype_kwarg,
    folder_fingerprint,
    no_load_bars,
)
from harness.generators.diffusers_options import DiffusersOptions, Where, hub_offline, looks_like_path
from harness.generators.tiny import (
    IP_ADAPTER_WEIGHTS,
    RECIPE_FILE,
    build_tiny_controlnet,
    build_tiny_ip_adapter,
)
from harness.types import GenRequest, canonical_json

log = logging.getLogger(__name__)


def lora_file(spec: Mapping[str, Any], where: Where) -> Path | None:
    """The local LoRA weights file of a spec; None for a hub id."""
    path = Path(spec["path_or_id"]).expanduser()
    if path.is_file():
        return path.absolute()
    if path.is_dir():
        name = spec.get("weight_name") or "pytorch_lora_weights.safetensors"
        if not (path / name).is_file():
            raise ConfigError(f"{where('params.extra.loras')}: {path} has no {name}; "
                              "set weight_name to the LoRA file in that folder.")
        return (path / name).absolute()
    if looks_like_path(spec["path_or_id"]):
        raise ConfigError(f"{where('params.extra.loras')}: LoRA path "
                          f"{spec['path_or_id']!r} does not exist.")
    return None


def adapter_folder(name: str, spec: Mapping[str, Any], cache_dir: Path,
                   build_base: Callable[[], Path], where: Where) -> Path | None:
    """Local folder of the ControlNet / IP-Adapter (``name``), built first when it has a recipe
    (from the base model folder ``build_base`` returns); None for a hub id."""
    if spec.get("build") is not None:
        folder = cache_dir / spec["model_id"].replace("/", "--")
        if not (folder / RECIPE_FILE).is_file():
            base = build_base()
            seed = int(dict(spec["build"]).get("seed", 0))
            builder = build_tiny_controlnet if name == "controlnet" else build_tiny_ip_adapter
            builder(base, folder, seed=seed)
        return folder
    path = Path(spec["model_id"]).expanduser()
    if path.is_dir():
        return path.absolute()
    if looks_like_path(spec["model_id"]):
        raise ConfigError(f"{where('options.' + name)}.model_id: local folder "
                          f"{spec['model_id']!r} does not exist.")
    return None


def adapter_identity(spec: Mapping[str, Any], folder: Path | None) -> dict[str, Any]:
    """What identifies a ControlNet / IP-Adapter in the cache key: its spec without the build
    recipe, the folder fingerprint, and the folder's name (not its place on disk)."""
    ident = {k: v for k, v in spec.items() if k != "build"}
    ident["weights"] = folder_fingerprint(folder) if folder else None
    if folder is not None:
        ident["model_id"] = spec["model_id"] if spec.get("build") is not None \
            else folder.name  # a folder's place on disk is no part of its identity
    return ident


class Adapters:
    """The adapters and derived pipelines of one loaded pipeline; dropped with it."""

    def __init__(self, pipe: Any, options: DiffusersOptions, device: str, cache_dir: Path,
                 where: Where, folder: Callable[[str], Path | None]) -> None:
        self.pipe = pipe
        self.options = options
        self.device = device
        self.cache_dir = cache_dir
        self.where = where
        self.folder = folder
        """Local folder of ``controlnet`` / ``ip_adapter`` (see :func:`adapter_folder`)."""
        self.modes: dict[tuple[str, bool], Any] = {("text2img", False): pipe}
        self.controlnet: Any = None
        self.ip_loaded = False
        self.lora_names: dict[str, str] = {}
        self.lora_active: tuple[Any, ...] | None = ()

    def load_controlnet(self) -> Any:
        """The ControlNet of options.controlnet, loaded once, in the pipeline's dtype."""
        if self.controlnet is None:
            import diffusers

            spec = self.options.controlnet
            folder = self.folder("controlnet")
            # SD3 and Flux have their own ControlNet classes; the model type picks one.
            cls_name = {"SD3Transformer2DModel": "SD3ControlNetModel",
                        "FluxTransformer2DModel": "FluxControlNetModel"}.get(
                type(getattr(self.pipe, "transformer", None)).__name__, "ControlNetModel")
            cls = getattr(diffusers, cls_name)
            kwargs: dict[str, Any] = {dtype_kwarg(): self.pipe.dtype}
            for k in ("subfolder", "variant"):
                if spec.get(k):
                    kwargs[k] = spec[k]
            with no_load_bars():
                if folder is not None:
                    cn = cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
                else:
                    try:
                        cn = cls.from_pretrained(spec["model_id"], revision=spec.get("revision"),
                                                 cache_dir=str(self.cache_dir),
                                                 local_files_only=hub_offline(self.options),
                                                 **kwargs)
                    except OSError as e:
                        raise RuntimeError(f"{self.where('options.controlnet')}: cannot load "
                                           f"{spec['model_id']!r}: {e}. Point model_id at a local "
                                           "folder.") from e
            if not self.options.cpu_offload:
                cn.to(self.device)
            self.controlnet = cn
        return self.controlnet

    def mode_pipe(self, task: str, controlnet: bool) -> Any:
        """The pipeline for a task (text2img / img2img / inpaint), with or without ControlNet,
        derived from the loaded one with ``from_pipe``: same weights in memory, no reload."""
        key = (task, controlnet)
        if task == "edit":
            # Editing models load as their editing pipeline (FluxKontextPipeline,
            # QwenImageEditPipeline, StableDiffusionInstructPix2PixPipeline ...): it takes the
            # source image itself; a text-to-image pipeline has no such argument.
            if "image" not in call_params(self.pipe):
                raise ConfigError(f"{self.where('')}: {type(self.pipe).__name__} is not an "
                                  "instruction-editing pipeline (it takes no source image); edit "
                                  "prompts need an editing model (FLUX.1 Kontext, Qwen-Image-Edit, "
                                  "InstructPix2Pix ...).")
            return self.pipe
        if key not in self.modes:
            from diffusers import (
                AutoPipelineForImage2Image,
                AutoPipelineForInpainting,
                AutoPipelineForText2Image,
            )

            auto = {"text2img": AutoPipelineForText2Image, "img2img": AutoPipelineForImage2Image,
                    "inpaint": AutoPipelineForInpainting}[task]
            kwargs = {"controlnet": self.load_controlnet()} if controlnet else {}
            try:
                with no_load_bars():
                    pipe = auto.from_pipe(self.pipe, **kwargs)
            except (ValueError, KeyError, AttributeError) as e:
                what = f"{task}{' with ControlNet' if controlnet else ''}"
                raise ConfigError(f"{self.where('')}: {type(self.pipe).__name__} has no {what} "
                                  f"pipeline in diffusers ({e}).") from None
            pipe.set_progress_bar_config(disable=True)
            self.modes[key] = pipe
        return self.modes[key]

    def check_controls(self, r: GenRequest) -> None:
        """A request's control inputs: valid settings, the adapters they need, findable files,
        and a pipeline for their mode."""
        where = f"{self.where('')}: prompt {r.prompt_id!r}"
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
                f"{self.where('options.controlnet')}: {{model_id: <hub id or folder>, "
                "type: canny}, or drop such prompts (suite.exclude_tags=[control:controlnet]).")
        if use_ip and self.options.ip_adapter is None:
            raise ConfigError(
                f"{where} has a reference_image but the model has no IP-Adapter: set "
                f"{self.where('options.ip_adapter')}: {{model_id, subfolder, "
                "weight_name, image_encoder_folder}, or drop such prompts "
                "(suite.exclude_tags=[control:ip_adapter]).")
        for c in r.controls:
            try:
                ctl.find_input(str(c.get("sha256")), c.get("path"))
            except FileNotFoundError as e:
                raise ConfigError(f"{where}: {c.get('kind')}: {e}") from None
        self.mode_pipe(task, use_cn)

    def apply_loras(self, loras: list[Mapping[str, Any]]) -> None:
        """Make exactly these LoRAs active at these scales (loaded once, then switched)."""
        want = tuple((canonical_json({k: v for k, v in spec.items() if k != "scale"}),
                      float(spec.get("scale", 1.0))) for spec in loras)
        if want == self.lora_active:
            return
        if not want:
            self.pipe.disable_lora()
            self.lora_active = want
            return
        names = []
        for ident, _ in want:
            if ident not in self.lora_names:
                spec = json.loads(ident)
                name = f"lora{len(self.lora_names)}"
                file = lora_file(spec, self.where)
                with no_load_bars():
                    if file is not None:
                        self.pipe.load_lora_weights(str(file.parent), weight_name=file.name,
                                                    adapter_name=name)
                    else:
                        kwargs = {k: spec[k] for k in ("weight_name", "revision") if spec.get(k)}
                        self.pipe.load_lora_weights(spec["path_or_id"], adapter_name=name,
                                                    cache_dir=str(self.cache_dir), **kwargs)
                self.lora_names[ident] = name
            names.append(self.lora_names[ident])
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=[scale for _, scale in want])
        self.lora_active = want

    def set_ip_adapter(self, wanted: bool) -> None:
        """Load the IP-Adapter for requests with a reference image; unload it for the rest (a
        U-Net with an IP-Adapter refuses to run without image embeddings)."""
        if wanted and not self.ip_loaded:
            spec = self.options.ip_adapter
            folder = self.folder("ip_adapter")
            source = str(folder) if folder is not None else spec["model_id"]
            kwargs: dict[str, Any] = {}
            if folder is None:
                kwargs.update(cache_dir=str(self.cache_dir), revision=spec.get("revision"),
                              local_files_only=hub_offline(self.options))
            from diffusers.utils import logging as diffusers_logging

            verbosity = diffusers_logging.get_verbosity()
            # Quiet the "modules that should be kept in float32: []" note of its unet.to(dtype).
            diffusers_logging.set_verbosity_error()
            try:
                with no_load_bars():
                    self.pipe.load_ip_adapter(
                        source, subfolder=spec.get("subfolder") or "",
                        weight_name=spec.get("weight_name") or IP_ADAPTER_WEIGHTS,
                        image_encoder_folder=spec.get("image_encoder_folder", "image_encoder"),
                        **kwargs)
            finally:
                diffusers_logging.set_verbosity(verbosity)
            # Modes derived before the encoder was registered do not have it.
            for pipe in self.modes.values():
                if pipe is not self.pipe:
                    for comp in ("image_encoder", "feature_extractor"):
                        if hasattr(pipe, comp):
                            pipe.register_modules(**{comp: getattr(self.pipe, comp)})
            self.ip_loaded = True
        elif not wanted and self.ip_loaded:
            self.pipe.unload_ip_adapter()
            self.ip_loaded = False

    def control_inputs(self, pipe: Any, reqs: list[GenRequest], task: str, use_cn: bool,
                       use_ip: bool, kwargs: dict[str, Any], info: dict[str, Any],
                       default_guidance: Any) -> None:
        """Load, resize and prepare each request's control images into the call's kwargs
        (``default_guidance``: the pipeline's guidance_scale when the request sets none)."""
        import torch

        first = reqs[0]
        w, h = first.width, first.height
        by_kind = [{c["kind"]: c for c in r.controls} for r in reqs]
        params = {k: dict(c.get("params") or {}) for k, c in by_kind[0].items()}

        def files(kind: str) -> list[Path]:
            return [ctl.find_input(str(d[kind]["sha256"]), d[kind].get("path")) for d in by_kind]

        if task == "edit":
            # The source at the request's size: the edit's pixel grid is the comparison's.
            kwargs["image"] = [ctl.load_rgb(p, w, h) for p in files("edit_image")]
            if "image_guidance" in params["edit_image"]:
                if "image_guidance_scale" not in call_params(pipe):
                    raise ConfigError(f"{self.where('')}: {type(pipe).__name__} has no image "
                                      "guidance (edit_image.image_guidance).")
                kwargs["image_guidance_scale"] = float(params["edit_image"]["image_guidance"])
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
            trained = self.options.controlnet.get("type")
            kind = cp.get("type") or trained or "image"
            if cp.get("type") and trained not in (None, cp["type"]):
                log.warning("%s: control_image type %s given to a ControlNet trained on %s",
                            self.where(""), cp["type"], trained)
            maps = [ctl.control_image(p, {**cp, "type": kind}, w, h) for p in files("control_image")]
            kwargs["control_image" if task != "text2img" else "image"] = maps
            if "conditioning_scale" in cp:
                kwargs["controlnet_conditioning_scale"] = float(cp["conditioning_scale"])
            if kind == "canny":
                info["canny"] = {k: cp.get(k, v) for k, v in ctl.CANNY_DEFAULTS.items()}
        if use_ip:
            scale = float(params["reference_image"].get("scale", 1.0))
            self.pipe.set_ip_adapter_scale(scale)
            refs = [ctl.load_rgb(p, w, h) for p in files("reference_image")]
            if hasattr(pipe, "encode_image") and "ip_adapter_image_embeds" in call_params(pipe):
                # Embeddings stacked per request (all one reference, see
                # DiffusersGenerator._generate): the pipelines' own ip_adapter_image path gives
                # a batch one embedding row.
                device = self.device if not self.options.cpu_offload else pipe._execution_device
                with torch.no_grad():
                    pos, neg = pipe.encode_image(refs, device, 1, False)
                guidance = kwargs.get("guidance_scale", default_guidance) or 0
                embeds = torch.cat([neg, pos]) if guidance > 1 else pos
                kwargs["ip_adapter_image_embeds"] = [embeds[:, None, :]]
            else:
                kwargs["ip_adapter_image"] = refs if len(refs) > 1 else refs[0]
