"""Local text-to-image pipelines through diffusers: hub ids, local folders, and tiny untrained
models built on first use (the default toy models).

This module is the generator: identity (fingerprint, request parameters), batching, OOM
halving and the pipeline call. Its parts live beside it, one job each:
:mod:`~harness.generators.diffusers_options` (the options and their checks),
:mod:`~harness.generators.diffusers_loading` (folder or hub id to a pipeline on its device) and
:mod:`~harness.generators.diffusers_adapters` (LoRA, IP-Adapter, ControlNet, derived pipelines).

Construction and :meth:`DiffusersGenerator.fingerprint` of an existing folder do not import
torch: the runner builds every selected model just to plan. torch, diffusers and transformers
load in :meth:`DiffusersGenerator.load`.
"""

from __future__ import annotations

import gc
import inspect
import logging
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.generators import controls as ctl
from harness.generators.base import Generator
from harness.generators.diffusers_adapters import (
    Adapters,
    adapter_folder,
    adapter_identity,
    lora_file,
)
from harness.generators.diffusers_families import check_hub_id
from harness.generators.diffusers_loading import (
    HubModel,
    call_params,
    component_folder,
    folder_fingerprint,
    load_pipeline,
    png,
)
from harness.generators.diffusers_options import (
    HARNESS_PARAMS,
    RESERVED_KWARGS,
    DiffusersOptions,
    cache_dir,
    check_build,
    check_options,
    looks_like_path,
    lora_specs,
)
from harness.generators.tiny import ensure_tiny_pipeline
from harness.toyworld.paths import is_zoo, resolve_path
from harness.types import GenRequest, GenResult, canonical_json

log = logging.getLogger(__name__)


class DiffusersGenerator(Generator):
    """Runs a diffusers ``DiffusionPipeline`` in this process, one pipeline call per batch.

    Each image's initial noise comes from its own ``torch.Generator`` seeded with the request
    seed, so an image does not depend on the batch it ran in.
    """

    kind = "diffusers"
    batch_dependent = True  # batched CPU/GPU kernels differ by up to one level per pixel

    Options = DiffusersOptions

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_options(self.options, self._where)
        self._loras = lora_specs(self.params.get("extra") or {}, self._where)
        check_build(self.options, self._where)
        if self.options.build is None and not looks_like_path(self.model_id):
            check_hub_id(self.model_id, self.cache_dir(), self._where("model_id"))
        self._pipe: Any = None
        self._adapters: Adapters | None = None
        self._device = ""
        self._dtype = ""
        self._versions: dict[str, str] = {}
        self._gpu: str | None = None
        self._default_scheduler: Any = None
        self._schedulers: dict[str, Any] = {}
        self._call_params: dict[str, inspect.Parameter] = {}
        self._fingerprint: str | None = None
        self._request_params: dict[str, Any] | None = None

    # -- options and location ---------------------------------------------------------------

    def _where(self, key: str = "") -> str:
        return f"models.{self.name}" + (f".{key}" if key else "")

    def cache_dir(self) -> Path:
        """Folder for built tiny models and hub downloads."""
        return cache_dir(self.options)

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
        if looks_like_path(self.model_id):
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

    def _adapter_folder(self, name: str) -> Path | None:
        return adapter_folder(name, getattr(self.options, name), self.cache_dir(),
                              self._ensure_built, self._where)

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
            if "components" in extra:
                raise ConfigError(f"{self._where('params.extra.components')}: set by the "
                                  "harness from options.components.")
            if self._loras:
                loras = []
                for spec in self._loras:
                    file = lora_file(spec, self._where)
                    loras.append({**spec, "sha256": ctl.file_sha256(file) if file else None})
                extra["loras"] = loras
            adapters = {}
            for name in ("controlnet", "ip_adapter"):
                spec = getattr(self.options, name)
                if spec is not None:
                    adapters[name] = adapter_identity(spec, self._adapter_folder(name))
            if adapters:
                extra["adapters"] = adapters
            if self.options.components:
                # Parts loaded from outside the model folder change every image too. A built
                # tiny model may hold them (its stand-in Llama): build it first.
                self.fingerprint()
                idents = {}
                for name, spec in self.options.components.items():
                    folder = component_folder(spec["model_id"])
                    if folder is not None and not folder.is_dir():
                        raise ConfigError(f"{self._where(f'options.components.{name}.model_id')}: "
                                          f"local folder {spec['model_id']!r} does not exist.")
                    idents[name] = adapter_identity(spec, folder)
                extra["components"] = idents
            self._request_params = extra
        return dict(self._request_params)

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the pipeline onto its device (building a tiny model first if configured)."""
        if self._pipe is not None:
            return
        import diffusers
        import torch
        import transformers

        path = self.weights_path()
        if path is not None and self.options.build is not None:
            self._ensure_built()
        hub = HubModel(self.name, self.model_id, self.revision, self.cache_dir())
        pipe, device, dtype = load_pipeline(path, hub, self.options, self._where)
        self._pipe = pipe
        self._adapters = Adapters(pipe, self.options, device, self.cache_dir(), self._where,
                                  self._adapter_folder)
        self._device = device
        self._dtype = str(dtype).removeprefix("torch.")
        self._versions = {"torch": torch.__version__, "diffusers": diffusers.__version__,
                          "transformers": transformers.__version__}
        self._gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else None
        self._default_scheduler = pipe.scheduler
        self._schedulers = {type(pipe.scheduler).__name__: pipe.scheduler}
        self._call_params = call_params(pipe)

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
                self._adapters.check_controls(r)
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
        except OutOfMemory as e:
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

    def _run(self, reqs: list[GenRequest]) -> list[GenResult]:
        """One pipeline call for requests sharing every setting but prompt, seed and inputs."""
        import torch

        first, n = reqs[0], len(reqs)
        task, use_cn, use_ip = ctl.request_mode(first.controls)
        adapters = self._adapters
        pipe = adapters.mode_pipe(task, use_cn)
        call_args = call_params(pipe)
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
            adapters.apply_loras(list(first.params.get("loras") or []))
            adapters.set_ip_adapter(use_ip)
            adapters.control_inputs(pipe, reqs, task, use_cn, use_ip, kwargs, info,
                                    self._default("guidance_scale"))
            overlay = info.pop("_overlay", None)
            start = time.perf_counter()
            out = pipe(**kwargs)
            # Kandinsky 5's image pipelines name the field ``image``; the rest ``images``.
            images = out.images if hasattr(out, "images") else out.image
            if overlay:
                images = [ctl.overlay(im, init, mask)
                          for im, init, mask in zip(images, *overlay, strict=True)]
            elapsed = time.perf_counter() - start
            if len(images) != n:
                raise RuntimeError(f"pipeline returned {len(images)} images for {n} prompts")
            pngs = [png(im) for im in images]
        except Exception as e:  # the whole batch failed; the runner retries it next run
            info.pop("_overlay", None)
            if self._device.startswith("cuda"):
                torch.cuda.empty_cache()
            if isinstance(e, torch.OutOfMemoryError):
                raise OutOfMemory(f"{type(e).__name__}: {e}") from e
            if isinstance(e, ConfigError):
                raise
            log.warning("%s: batch of %d failed: %s", self._where(), n, e, exc_info=True)
            msg = f"{type(e).__name__}: {e}"
            return [GenResult(status="error", error=msg, device=self._device, dtype=self._dtype,
                              info=dict(info)) for _ in reqs]
        return [GenResult(status="ok", image=data, latency_s=elapsed / n, device=self._device,
                          dtype=self._dtype, info=dict(info)) for data in pngs]

    def _default(self, arg: str) -> Any:
        p = self._call_params.get(arg)
        return None if p is None or p.default is inspect.Parameter.empty else p.default

    def close(self) -> None:
        """Drop the pipeline (and its derived modes, ControlNet, adapters) and free memory."""
        if self._pipe is None:
            return
        on_cuda = self._device.startswith("cuda")
        self._pipe = None
        self._adapters = None
        self._default_scheduler = None
        self._schedulers = {}
        gc.collect()
        if on_cuda:
            import torch

            torch.cuda.empty_cache()


class OutOfMemory(Exception):
    """A batch ran out of GPU memory (the caller halves it)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error
