"""fal's queue API: submit, poll ``status_url`` until COMPLETED, read ``response_url``.

``POST https://queue.fal.run/{app}`` (``Authorization: Key ...``) answers ``request_id``,
``status_url`` and ``response_url``; the status goes IN_QUEUE, IN_PROGRESS, COMPLETED (within
``options.deadline_s``); the response holds ``images[].url`` (fetched at once) or, with
``sync_mode``, data URIs. An image flagged by the safety checker (``has_nsfw_concepts``) is a
refusal; a failed request (an error answer from ``response_url``) is an error.

The request id is written to the submit journal before waiting, so a run killed while
a request is queued polls it when resumed instead of paying for another.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from harness.errors import ConfigError
from harness.generators.api import Job, JobGenerator, JobOptions, JobState
from harness.generators.base import Generator
from harness.generators.http import HTTPClient, ProviderError, detail_error, to_png
from harness.types import GenRequest, GenResult


class FalImages(JobGenerator, Generator):
    """Any text-to-image app on fal (``fal-ai/flux/dev``, ``fal-ai/recraft-v3`` ...)."""

    kind = "fal"
    batch_dependent = False
    provider = "fal"
    auth_header = ("Authorization", "Key {key}")
    key_help = "your fal key (from https://fal.ai/dashboard/keys)"

    @dataclasses.dataclass
    class Options(JobOptions):
        base_url: str = "https://queue.fal.run"
        """Queue root (a proxy or the test fake)."""
        api_key_env: str = "FAL_KEY"
        """Environment variable holding the key."""
        poll_interval_s: float = 0.5
        """Seconds between status polls of one request."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.model_id.count("/") < 1 or self.model_id.startswith("/"):
            raise ConfigError(f"models.{self.name}.model_id: {self.model_id!r}; use the app id "
                              "as on fal.ai (fal-ai/flux/dev).")

    def error_parser(self, status: int, body: Any, text: str) -> tuple[str | None, str]:
        return detail_error(status, body, text)

    def _input(self, r: GenRequest) -> dict[str, Any]:
        inp: dict[str, Any] = {"prompt": r.prompt, "seed": r.seed, "num_images": 1,
                               "image_size": {"width": r.width, "height": r.height},
                               "output_format": "png", "enable_safety_checker": True}
        if r.negative_prompt:
            inp["negative_prompt"] = r.negative_prompt
        if r.steps is not None:
            inp["num_inference_steps"] = r.steps
        if r.guidance is not None:
            inp["guidance_scale"] = r.guidance
        return inp | {k: v for k, v in dict(r.params).items() if v is not None}

    async def _submit(self, http: HTTPClient, r: GenRequest) -> tuple[Job, dict[str, Any]]:
        resp = await http.post(f"/{r.model_id}", idempotent=False, retry_5xx=False,
                               json=self._input(r))
        d = resp.json
        return Job(str(d["request_id"]), str(d["status_url"]), str(d["response_url"])), {
            "submit_attempts": resp.attempts}

    async def _poll(self, http: HTTPClient, job: Job) -> JobState:
        resp = await self._get_own(http, job.poll_url)
        status = str(resp.json.get("status"))
        return JobState(status, status == "COMPLETED", resp.json)

    async def _finish(self, http: HTTPClient, r: GenRequest, job: Job, state: JobState,
                      info: dict[str, Any]) -> GenResult:
        if (state.body or {}).get("metrics"):
            info["metrics"] = state.body["metrics"]
        try:
            resp = await self._get_own(http, job.result_url or job.poll_url.rsplit("/status", 1)[0])
        except ProviderError as e:
            if e.status is not None and 400 <= e.status < 500:  # the request itself failed
                return GenResult(status="error", info=info, error=f"fal: request {job.id} "
                                 f"failed: {e.message}")
            raise
        data = resp.json or {}
        images = data.get("images") or []
        if data.get("seed") is not None:
            info["seed"] = data["seed"]
        nsfw = data.get("has_nsfw_concepts") or []
        if nsfw and nsfw[0]:
            return GenResult(status="refused", refusal_reason="nsfw_concepts", info=info)
        if not images or not images[0].get("url"):
            return GenResult(status="error", info=info,
                             error=f"fal: request {job.id} completed with no image")
        url = str(images[0]["url"])
        if url.startswith("data:"):
            raw = base64.b64decode(url.split(",", 1)[1])
        else:
            try:
                raw = (await http.download(url)).content
            except ProviderError as e:
                return GenResult(status="error", info=info, error=f"fal: the image of request "
                                 f"{job.id} could not be downloaded ({e})")
        cost = self._cost(r.model_id, f"{r.width}x{r.height}", None, info)
        return GenResult(status="ok", image=to_png(raw), cost_usd=cost, info=info)
