"""fal's queue API: submit, poll ``status_url`` until COMPLETED, read ``response_url``.

``POST https://queue.fal.run/{app}`` (``Authorization: Key ...``) answers ``request_id``,
``status_url`` and ``response_url``; the status goes IN_QUEUE, IN_PROGRESS, COMPLETED (within
``options.deadline_s``); the response holds ``images[].url`` (fetched at once) or, with
``sync_mode``, data URIs. An image flagged by the safety checker (``has_nsfw_concepts``) is a
refusal; a failed request is an error: a ``COMPLETED`` status carrying ``error`` /
``error_type`` (as fal-client's ``Completed`` reads it; a ``content_policy_violation`` type is a
refusal), or an error answer from ``response_url`` (a 422 whose ``detail[].type`` is
``content_policy_violation`` is a refusal, on the submit or the result). A submit answered with
a 5xx is sent again (fal does not bill 5xx answers); an answer with ``X-Fal-Retryable: false``
is never retried.

The request id is written to the submit journal before waiting, so a run killed while
a request is queued polls it when resumed instead of paying for another. fal takes no
client-chosen request id (fal-client's ``submit`` sends only the input, a webhook URL and
hint/priority/timeout headers), so a submit whose answer was lost is looked for in fal's request
history (Platform API ``GET /v1/models/requests/by-endpoint`` with ``expand=payloads``) by its
exact input; a request not listed there may still be queued, so it is reported, not resent.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode, urlsplit

from harness.errors import ConfigError
from harness.generators.api import (
    KEEP_JOB,
    Job,
    JobGenerator,
    JobOptions,
    JobState,
    PreflightLine,
    Recovery,
)
from harness.generators.base import Generator
from harness.generators.controls import add_edit_input
from harness.generators.http import ErrorInfo, HTTPClient, ProviderError, detail_error, to_png
from harness.types import GenRequest, GenResult

REFUSAL_TYPES = frozenset({"content_policy_violation"})
"""fal error types that are a refusal (https://docs.fal.ai/errors#content_policy_violation)."""
HISTORY_PAGES = 20
"""Pages of request history (100 requests each) searched for a lost submit."""


def fal_error(status: int, body: Any, text: str) -> ErrorInfo:
    """fal's ``{"detail": ...}`` errors. A model's typed error list (``{"detail": [{"loc", "msg",
    "type", "url", "input"}]}``, https://fal.ai/docs/documentation/model-apis/errors) gives its
    ``type`` as the code (``content_policy_violation``: a refusal, final); a top-level
    ``error_type`` (a request error) likewise. A locked account ("User is locked. Reason:
    Exhausted balance ...", HTTP 403) is a billing refusal: final, and no more paid requests go."""
    code, message = detail_error(status, body, text)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        types = [str(e["type"]) for e in detail if isinstance(e, dict) and e.get("type")]
        refusals = [t for t in types if t in REFUSAL_TYPES]
        code = (refusals or types or [code])[0]
    elif isinstance(body, dict) and body.get("error_type"):
        code = str(body["error_type"])
    if code in REFUSAL_TYPES:
        return ErrorInfo(code, message, retry=False, final="policy")
    if status in (402, 403) and "user is locked" in message.lower():
        return ErrorInfo(code or "user_locked", message, retry=False, final="billing")
    return ErrorInfo(code, message)


class FalImages(JobGenerator, Generator):
    """Any text-to-image app on fal (``fal-ai/flux/dev``, ``fal-ai/recraft-v3`` ...)."""

    kind = "fal"
    batch_dependent = False
    provider = "fal"
    auth_header = ("Authorization", "Key {key}")
    key_help = "your fal key (from https://fal.ai/dashboard/keys)"
    also_hosts = ("api.fal.ai",)
    """fal's Platform API (request history), besides the queue host."""

    @dataclasses.dataclass
    class Options(JobOptions):
        base_url: str = "https://queue.fal.run"
        """Queue root (a proxy or the test fake)."""
        api_key_env: str = "FAL_KEY"
        """Environment variable holding the key."""
        poll_interval_s: float = 0.5
        """Seconds between status polls of one request."""
        platform_url: str | None = None
        """fal's Platform API root, where a lost submit is looked for in the request history;
        None: https://api.fal.ai/v1 with fal's own queue, else ``<base_url>/platform/v1`` (a
        proxy or the test fake)."""
        edit_input: str = "image_url"
        """Input field an instruction edit's source goes to, as a data URI: ``image_url``
        (FLUX.1 Kontext apps) or, with ``[]``, a one-element list (``image_urls[]``: Seedream,
        Qwen-Image edit apps); read it from the app's schema on fal."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.model_id.count("/") < 1 or self.model_id.startswith("/"):
            raise ConfigError(f"models.{self.name}.model_id: {self.model_id!r}; use the app id "
                              "as on fal.ai (fal-ai/flux/dev).")

    def error_parser(self, status: int, body: Any, text: str) -> ErrorInfo:
        return fal_error(status, body, text)

    async def _lookup_model(self, http: HTTPClient) -> PreflightLine:
        """fal's Platform API model search in find mode, ``GET /v1/models?endpoint_id=...``
        (free; https://docs.fal.ai/platform-apis/v1/models): ``models[].metadata.status`` is
        ``active`` or ``deprecated``."""
        url = f"{self._platform(http)}/models?{urlencode({'endpoint_id': self.model_id})}"
        data = (await self._get_own(http, url)).json
        hits = [m for m in (data or {}).get("models") or []
                if isinstance(m, dict) and m.get("endpoint_id") == self.model_id]
        if not hits:
            return PreflightLine("model", "missing", f"fal's model search does not list "
                                 f"{self.model_id}")
        status = (hits[0].get("metadata") or {}).get("status")
        if status == "deprecated":
            return PreflightLine("model", "warn", f"fal lists {self.model_id} as deprecated")
        return PreflightLine("model", "ok", f"fal lists {self.model_id}"
                             + (f" ({status})" if status else ""))

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
        add_edit_input(inp, r.controls, self.options.edit_input, r.width, r.height)
        return inp | {k: v for k, v in dict(r.params).items() if v is not None}

    async def _submit(self, http: HTTPClient, r: GenRequest) -> tuple[Job, dict[str, Any]]:
        # fal: "Failed requests that return 5xx status codes are not billed"
        # (https://fal.ai/docs/model-apis/model-endpoints/reliability): a 5xx submit is resent.
        resp = await http.post(f"/{r.model_id}", idempotent=False, retry_5xx=True,
                               json=self._input(r))
        d = resp.json
        return Job(str(d["request_id"]), str(d["status_url"]), str(d["response_url"])), {
            "submit_attempts": resp.attempts}

    async def _one(self, http: HTTPClient, r: GenRequest) -> GenResult:
        try:
            return await super()._one(http, r)
        except ProviderError as e:  # a submit the content checker refused: a result
            if e.code not in REFUSAL_TYPES:
                raise
            return GenResult(status="refused", refusal_reason=str(e.code),
                             provider_request_id=e.request_id,
                             info={"refusal_message": e.message, "http_status": e.status})

    async def _poll(self, http: HTTPClient, job: Job) -> JobState:
        resp = await self._get_own(http, job.poll_url)
        status = str(resp.json.get("status"))
        return JobState(status, status == "COMPLETED", resp.json)

    def _platform(self, http: HTTPClient) -> str:
        o = self.options
        if o.platform_url:
            return o.platform_url.rstrip("/")
        if urlsplit(http.base_url).hostname == "queue.fal.run":
            return "https://api.fal.ai/v1"
        return http.base_url.rstrip("/") + "/platform/v1"

    async def _recover(self, http: HTTPClient, r: GenRequest, since: datetime) -> Recovery:
        """Find the lost submit in fal's request history by its exact input."""
        start = (since - timedelta(seconds=self.options.recover_window_s)).astimezone(timezone.utc)
        query = {"endpoint_id": r.model_id, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "expand": "payloads", "limit": 100}
        inp, matches, cursor = self._input(r), [], None
        for _ in range(HISTORY_PAGES):
            q = query | ({"cursor": cursor} if cursor else {})
            data = (await self._get_own(
                http, f"{self._platform(http)}/models/requests/by-endpoint?{urlencode(q)}")).json
            matches += [it for it in data.get("items") or [] if it.get("json_input") == inp]
            cursor = data.get("next_cursor")
            if not data.get("has_more") or not cursor:
                break
        else:
            if not matches:
                return Recovery(note=f"not in the first {HISTORY_PAGES} pages of fal's request "
                                     "history")
        if not matches:
            return Recovery(note="not in fal's request history (yet: a request still queued "
                                 "is listed once it ends)")
        rid = str(max(matches, key=lambda it: str(it.get("sent_at") or ""))["request_id"])
        root = "/".join(r.model_id.split("/")[:2])  # the queue path fal-client builds
        base = f"{http.base_url.rstrip('/')}/{root}/requests/{rid}"
        return Recovery(job=Job(rid, base + "/status", base),
                        note=f"found request {rid} in fal's request history")

    async def _finish(self, http: HTTPClient, r: GenRequest, job: Job, state: JobState,
                      info: dict[str, Any]) -> GenResult:
        body = state.body or {}
        if body.get("metrics"):
            info["metrics"] = body["metrics"]
        if body.get("error") or body.get("error_type"):
            kind, msg = body.get("error_type"), str(body.get("error") or body.get("error_type"))
            info |= {"error_type": kind}
            if kind in REFUSAL_TYPES:
                return GenResult(status="refused", refusal_reason=str(kind),
                                 info=info | {"refusal_message": msg})
            return GenResult(status="error", info=info, error=f"fal: request {job.id} "
                             f"completed with an error{f' [{kind}]' if kind else ''}: {msg}")
        try:
            resp = await self._get_own(http, job.result_url or job.poll_url.rsplit("/status", 1)[0])
        except ProviderError as e:
            if e.code in REFUSAL_TYPES:
                return GenResult(status="refused", refusal_reason=str(e.code),
                                 info=info | {"refusal_message": e.message})
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
                return GenResult(status="error", info=info | {KEEP_JOB: True}, error=(
                    f"fal: the image of request {job.id} could not be downloaded ({e}). " + (
                        "options.resubmit_expired is set: the next run pays for a new image."
                        if self.options.resubmit_expired else
                        "The request stays in the submit journal, so the next run fetches its "
                        "result again instead of paying for a new one; set "
                        f"models.{self.name}.options.resubmit_expired=true to pay anew.")))
        cost = self._cost(r.model_id, f"{r.width}x{r.height}", None, info)
        return GenResult(status="ok", image=to_png(raw), cost_usd=cost, info=info)
