"""Black Forest Labs' Flux API: submit, poll the returned ``polling_url``, download at once.

``POST /v1/{model}`` (``x-key`` header) answers ``{id, polling_url}``; ``GET polling_url`` says
``Pending`` (often many times) until ``Ready``, when ``result.sample`` is a signed URL that
expires in minutes (10, per BFL's integration guide): the image is fetched the moment it is
ready, without the key. ``Request Moderated`` and ``Content Moderated`` are refusals (results,
never retried); ``Error``, ``Failed`` and ``Task not found`` are errors, with the answer's
``details`` and, where the answer has one, its top-level ``error`` in the message.

The job id is written to the submit journal before waiting, so a run killed while a
job is pending polls that job when resumed instead of paying for another. A Ready job whose
sample URL has expired (a run resumed late, a slow download) is asked for again with
``get_result`` (``options.refresh_polls`` times) for a fresh URL; BFL's docs do not say that a
later ``get_result`` signs a new URL, so when none comes the job stays in the journal, reported,
and is not paid for again unless ``options.resubmit_expired``.

BFL has no API that lists tasks: a submit whose answer was lost (the run killed while it was
in flight) cannot be found, and is reported rather than resent (``resubmit_unconfirmed``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.errors import ConfigError
from harness.generators.api import KEEP_JOB, Job, JobGenerator, JobOptions, JobState
from harness.generators.base import Generator
from harness.generators.http import HTTPClient, ProviderError, aspect_ratio, detail_error, to_png
from harness.types import GenRequest, GenResult

REFUSALS = frozenset({"Request Moderated", "Content Moderated"})
FAILURES = frozenset({"Error", "Failed", "Task not found"})
ASPECT_MODELS = ("flux-pro-1.1-ultra", "flux-kontext-pro", "flux-kontext-max")
"""Models that take ``aspect_ratio`` instead of width and height."""
FLUX2_MODELS = ("flux-2-pro", "flux-2-max", "flux-2-flex", "flux-2-klein-4b", "flux-2-klein-9b")
"""FLUX.2 endpoints (``POST /v1/{model}``): width and height multiples of 16, at least 64, at
most 4 MP in all; ``steps`` (1-50) and ``guidance`` (1.5-10) only on ``flux-2-flex``. From BFL's
own API reference (https://github.com/black-forest-labs/skills, skills/bfl-api/references/
endpoints.md; https://docs.bfl.ai/quick_start/pricing lists the same models)."""
FLUX2_MAX_PIXELS = 4_000_000


def _edit_source(control: Any, width: int, height: int) -> str:
    """Base64 PNG of an edit_image control's file at the request's size."""
    import base64

    from harness.generators.controls import edit_source_png

    return base64.b64encode(edit_source_png(control, width, height)).decode("ascii")


class BFLImages(JobGenerator, Generator):
    """FLUX.2 [pro]/[max]/[flex]/[klein], FLUX1.1 [pro], [pro] Ultra, Kontext and [dev] through
    api.bfl.ai."""

    kind = "bfl"
    batch_dependent = False
    provider = "bfl"
    auth_header = ("x-key", "{key}")
    key_help = "your Black Forest Labs key (from https://dashboard.bfl.ai)"
    also_hosts = (".bfl.ai",)
    """Polling URLs point at regional hosts (api.us1.bfl.ai ...)."""

    @dataclasses.dataclass
    class Options(JobOptions):
        base_url: str = "https://api.bfl.ai"
        """API root (the global endpoint; a regional one such as https://api.eu.bfl.ai)."""
        api_key_env: str = "BFL_API_KEY"
        """Environment variable holding the key."""
        poll_interval_s: float = 0.5
        """Seconds between polls (BFL suggests 0.5)."""
        concurrency: int = 8
        """Requests in flight at once (BFL allows 24 active tasks per key)."""
        refresh_polls: int = 2
        """Times ``get_result`` is asked again for a fresh sample URL when the one it gave
        could not be downloaded (expired)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        w, h = int(self.params.get("width", 1024)), int(self.params.get("height", 1024))
        if self.model_id in FLUX2_MODELS:
            if w % 16 or h % 16 or w < 64 or h < 64 or w * h > FLUX2_MAX_PIXELS:
                raise ConfigError(f"models.{self.name}.params: {w}x{h}; {self.model_id} takes "
                                  "widths and heights in multiples of 16, at least 64, and at "
                                  "most 4 MP in all.")
        elif self.model_id not in ASPECT_MODELS:
            for dim, v in (("width", w), ("height", h)):
                if v % 32 or not 256 <= v <= 1440:
                    raise ConfigError(f"models.{self.name}.params.{dim}: {v}; {self.model_id} "
                                      "takes multiples of 32 from 256 to 1440.")

    def error_parser(self, status: int, body: Any, text: str) -> tuple[str | None, str]:
        return detail_error(status, body, text)

    def _body(self, r: GenRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": r.prompt, "seed": r.seed, "output_format": "png"}
        if r.model_id in ASPECT_MODELS:
            body["aspect_ratio"] = aspect_ratio(r.width, r.height)
        else:
            body |= {"width": r.width, "height": r.height}
        flux2 = r.model_id in FLUX2_MODELS
        if r.steps is not None and (not flux2 or r.model_id == "flux-2-flex"):
            body["steps"] = r.steps
        if r.guidance is not None and (not flux2 or r.model_id == "flux-2-flex"):
            body["guidance"] = r.guidance
        edit = next((c for c in r.controls if c.get("kind") == "edit_image"), None)
        if edit is not None:
            # Instruction edit (FLUX.2 and Kontext endpoints): the source, base64 PNG at the
            # request's size, as input_image; the prompt is the instruction.
            body["input_image"] = _edit_source(edit, r.width, r.height)
        return body | {k: v for k, v in dict(r.params).items() if v is not None}

    async def _submit(self, http: HTTPClient, r: GenRequest) -> tuple[Job, dict[str, Any]]:
        resp = await http.post(f"/v1/{r.model_id}", idempotent=False, retry_5xx=False,
                               json=self._body(r))
        data = resp.json
        poll = data.get("polling_url") or f"{http.base_url}/v1/get_result?id={data['id']}"
        return Job(str(data["id"]), poll), {"submit_attempts": resp.attempts}

    async def _poll(self, http: HTTPClient, job: Job) -> JobState:
        try:
            resp = await self._get_own(http, job.poll_url)
        except ProviderError as e:
            if e.status == 404:  # the job is gone: nothing left to wait for
                return JobState("Task not found", True, {"status": "Task not found"})
            raise
        status = str(resp.json.get("status"))
        return JobState(status, status == "Ready" or status in REFUSALS or status in FAILURES,
                        resp.json)

    async def _finish(self, http: HTTPClient, r: GenRequest, job: Job, state: JobState,
                      info: dict[str, Any]) -> GenResult:
        body = state.body or {}
        said = {k: body[k] for k in ("details", "error") if body.get(k)}
        if state.status in REFUSALS:
            return GenResult(status="refused", refusal_reason=state.status,
                             info=info | {"details": body.get("details")} | said)
        if state.status != "Ready":
            why = "; ".join(f"{k}: {v}" for k, v in said.items())
            return GenResult(status="error", info=info | {"details": body.get("details")} | said,
                             error=f"bfl: job {job.id} ended with status {state.status!r}"
                                   + (f" ({why})" if why else ""))
        result = body.get("result") or {}
        got, err, refreshes = None, None, 0
        while True:
            try:
                got = await http.download(result["sample"])
                break
            except ProviderError as e:
                err = e
            if refreshes >= self.options.refresh_polls:
                break
            # A later get_result may carry a freshly signed URL for the same (paid) sample.
            refreshes += 1
            again = await self._poll(http, job)
            if again.status != "Ready":
                break
            result = (again.body or {}).get("result") or {}
        if refreshes:
            info["sample_refreshes"] = refreshes
        if got is None:
            return GenResult(status="error", info=info | {KEEP_JOB: True}, error=(
                f"bfl: the sample of job {job.id} could not be downloaded ({err}), also after "
                f"asking get_result {refreshes} more time(s) for a fresh URL; sample URLs expire "
                "minutes after the job is ready. " + (
                    "options.resubmit_expired is set: the next run pays for a new image."
                    if self.options.resubmit_expired else
                    "The job stays in the submit journal, so the next run asks for it again "
                    "instead of paying for a new one; set "
                    f"models.{self.name}.options.resubmit_expired=true to pay for a new image.")))
        if result.get("seed") is not None:
            info["seed"] = result["seed"]
        cost = self._cost(r.model_id, f"{r.width}x{r.height}", None, info)
        return GenResult(status="ok", image=to_png(got.content), cost_usd=cost, info=info)
