"""Replicate predictions: submit, poll ``urls.get`` until a final status, download at once.

An official model (``owner/name``) is run with ``POST /v1/models/{owner}/{name}/predictions``;
with ``revision`` set to a version id, ``POST /v1/predictions`` with that version (community
models, or to pin one). Statuses ``starting`` and ``processing`` are polled until
``succeeded``, ``failed`` or ``canceled``, within ``options.deadline_s``. Outputs are URLs
(served for an hour): the first is fetched as soon as the prediction succeeds. A prediction
that failed because the safety checker flagged the image (``NSFW content detected``) is a
refusal; any other failure an error.

``options.prefer_wait`` sends ``Prefer: wait=N`` (the answer holds the output when it is done
within N seconds); the job id is then known only when that answer comes.

A submit whose answer was lost (a run killed with it in flight, or during a ``Prefer: wait``)
is looked for in ``GET /v1/predictions?created_after=...`` (newest first, 100 a page): the
prediction of the same model or version with exactly our input is polled, not paid for again.
Replicate takes no client tag on a prediction (only webhook settings), so the input is the
match. When the list proves there is none, the image is submitted; when it cannot tell (API
inputs are removed after an hour: ``data_removed``), the submit is reported, not resent.
An output that could not be downloaded keeps its prediction in the journal (reported, not
paid for again, unless ``options.resubmit_expired``).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

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
from harness.generators.http import HTTPClient, ProviderError, aspect_ratio, to_png
from harness.types import GenRequest, GenResult

FINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_NSFW = re.compile(r"nsfw|safety checker|sensitive", re.IGNORECASE)
LIST_PAGES = 20
"""Pages of ``GET /v1/predictions`` (100 predictions each) searched for a lost submit."""


def replicate_error(status: int, body: Any, text: str) -> tuple[str | None, str]:
    """``{"title": ..., "detail": ..., "status": 422, "invalid_fields": [...]}``."""
    if isinstance(body, dict) and ("detail" in body or "title" in body):
        title = body.get("title")
        return (str(title) if title else None), str(body.get("detail") or title or text)
    return None, text or f"HTTP {status}"


def _utc(value: str) -> datetime:
    """An ISO 8601 time as Replicate writes it (``...Z``; Python 3.10 reads no ``Z``)."""
    t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


class ReplicateImages(JobGenerator, Generator):
    """Any text-to-image model on Replicate (FLUX schnell/dev/pro, SD 3.5, Ideogram ...)."""

    kind = "replicate"
    batch_dependent = False
    provider = "replicate"
    auth_header = ("Authorization", "Bearer {key}")
    key_help = "your Replicate API token (r8_..., from https://replicate.com/account/api-tokens)"

    @dataclasses.dataclass
    class Options(JobOptions):
        base_url: str = "https://api.replicate.com/v1"
        """API root (a proxy or the test fake)."""
        api_key_env: str = "REPLICATE_API_TOKEN"
        """Environment variable holding the token."""
        poll_interval_s: float = 1.0
        """Seconds between polls of one prediction."""
        prefer_wait: int | None = None
        """Send ``Prefer: wait=N`` (1-60 s); None: submit and poll (resumable)."""
        input_size: str = "aspect_ratio"
        """How width and height are sent: ``aspect_ratio`` (FLUX and most official models),
        ``width_height`` (models that take pixels) or ``none``."""
        edit_input: str = "input_image"
        """Input field an instruction edit's source goes to, as a data URI (``input_image`` on
        black-forest-labs/flux-kontext-*; ``image`` on others: read the model's schema)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if not re.fullmatch(r"[\w.-]+/[\w.-]+", self.model_id):
            raise ConfigError(f"models.{self.name}.model_id: {self.model_id!r}; use the "
                              "model's owner/name as on replicate.com (black-forest-labs/flux-schnell).")
        if self.revision is not None and not re.fullmatch(r"[0-9a-f]{64}", str(self.revision)):
            raise ConfigError(f"models.{self.name}.revision: a Replicate version id is 64 hex "
                              f"digits, got {self.revision!r}.")
        if self.options.input_size not in ("aspect_ratio", "width_height", "none"):
            raise ConfigError(f"models.{self.name}.options.input_size: "
                              f"{self.options.input_size!r}; use aspect_ratio, width_height or none.")
        pw = self.options.prefer_wait
        if pw is not None and not 1 <= int(pw) <= 60:
            raise ConfigError(f"models.{self.name}.options.prefer_wait: {pw}; 1 to 60 seconds.")
        self._first: dict[str, Any] = {}
        """Final states that came with a ``Prefer: wait`` submit answer, by prediction id."""

    def error_parser(self, status: int, body: Any, text: str) -> tuple[str | None, str]:
        return replicate_error(status, body, text)

    async def _lookup_model(self, http: HTTPClient) -> PreflightLine:
        """``GET /v1/models/{owner}/{name}`` (with ``revision``: ``.../versions/{id}``), free,
        as the official client's ``models.get`` / ``versions.get``."""
        path = f"/models/{self.model_id}"
        if self.revision:
            path += f"/versions/{self.revision}"
        data = (await http.get(path)).json
        data = data if isinstance(data, dict) else {}
        if self.revision:
            return PreflightLine("model", "ok", f"replicate lists version {data.get('id')} of "
                                 f"{self.model_id}")
        return PreflightLine("model", "ok", f"replicate lists {self.model_id}"
                             + (f" ({data['visibility']})" if data.get("visibility") else ""))

    def _input(self, r: GenRequest) -> dict[str, Any]:
        inp: dict[str, Any] = {"prompt": r.prompt, "seed": r.seed, "output_format": "png"}
        if self.options.input_size == "aspect_ratio":
            inp["aspect_ratio"] = aspect_ratio(r.width, r.height)
        elif self.options.input_size == "width_height":
            inp |= {"width": r.width, "height": r.height}
        if r.negative_prompt:
            inp["negative_prompt"] = r.negative_prompt
        if r.steps is not None:
            inp["num_inference_steps"] = r.steps
        if r.guidance is not None:
            inp["guidance"] = r.guidance
        add_edit_input(inp, r.controls, self.options.edit_input, r.width, r.height)
        return inp | {k: v for k, v in dict(r.params).items() if v is not None}

    async def _submit(self, http: HTTPClient, r: GenRequest) -> tuple[Job, dict[str, Any]]:
        headers = {}
        if self.options.prefer_wait:
            headers["Prefer"] = f"wait={int(self.options.prefer_wait)}"
        if r.revision:
            path, body = "/predictions", {"version": r.revision, "input": self._input(r)}
        else:
            path, body = f"/models/{r.model_id}/predictions", {"input": self._input(r)}
        resp = await http.post(path, idempotent=False, retry_5xx=False, json=body, headers=headers)
        data = resp.json
        job = Job(str(data["id"]), str((data.get("urls") or {}).get("get")
                                       or f"{http.base_url}/predictions/{data['id']}"))
        if data.get("status") in FINAL:  # Prefer: wait answered with the final state
            self._first[job.id] = data
        return job, {"submit_attempts": resp.attempts}

    async def _poll(self, http: HTTPClient, job: Job) -> JobState:
        first = self._first.pop(job.id, None)
        data = first if first is not None else (await self._get_own(http, job.poll_url)).json
        status = str(data.get("status"))
        return JobState(status, status in FINAL, data)

    async def _recover(self, http: HTTPClient, r: GenRequest, since: datetime) -> Recovery:
        """Find the lost submit's prediction in the list of predictions by model and input."""
        after = since - timedelta(seconds=self.options.recover_window_s)
        url: str | None = (f"{http.base_url}/predictions?" + urlencode(
            {"created_after": after.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")}))
        inp, matches, removed = self._input(r), [], 0
        for _ in range(LIST_PAGES):
            if url is None:
                break
            data = (await self._get_own(http, url)).json
            older = False
            for p in data.get("results") or []:
                created = _utc(str(p.get("created_at")))
                if created < after:
                    older = True  # newest first: the rest is older still
                    continue
                if p.get("source", "api") != "api" or not self._same_model(p, r):
                    continue
                if p.get("data_removed") or p.get("input") is None:
                    removed += 1
                elif p["input"] == inp:
                    matches.append((created, p))
            url = None if older else data.get("next")
        else:
            if url is not None and not matches:
                return Recovery(note=f"not in the first {LIST_PAGES} pages of the prediction "
                                     "list")
        if matches:
            p = max(matches, key=lambda m: m[0])[1]
            pid = str(p["id"])
            return Recovery(job=Job(pid, str((p.get("urls") or {}).get("get")
                                             or f"{http.base_url}/predictions/{pid}")),
                            note=f"found prediction {pid} in the prediction list")
        if removed:
            return Recovery(note=f"{removed} prediction(s) of this model since then had their "
                                 "input removed (after an hour), so the list cannot tell")
        return Recovery(absent=True, note="no prediction with this input in the prediction list")

    def _same_model(self, p: dict[str, Any], r: GenRequest) -> bool:
        if r.revision:
            return str(p.get("version", "")).rsplit(":", 1)[-1] == r.revision
        return p.get("model") == r.model_id

    async def _finish(self, http: HTTPClient, r: GenRequest, job: Job, state: JobState,
                      info: dict[str, Any]) -> GenResult:
        data = state.body or {}
        if data.get("version"):
            info["version"] = data["version"]
        if data.get("metrics"):
            info["metrics"] = data["metrics"]
        if state.status != "succeeded":
            err = str(data.get("error") or state.status)
            if state.status == "failed" and _NSFW.search(err):
                return GenResult(status="refused", refusal_reason="NSFW",
                                 info=info | {"refusal_message": err})
            return GenResult(status="error", info=info,
                             error=f"replicate: prediction {job.id} {state.status}: {err}")
        out = data.get("output")
        url = out[0] if isinstance(out, list) and out else out
        if not isinstance(url, str):
            return GenResult(status="error", info=info,
                             error=f"replicate: prediction {job.id} succeeded with no output URL")
        try:
            got = await http.download(url)
        except ProviderError as e:
            return GenResult(status="error", info=info | {KEEP_JOB: True}, error=(
                f"replicate: the output of prediction {job.id} could not be downloaded ({e}); "
                "outputs of API predictions are removed an hour after they finish. " + (
                    "options.resubmit_expired is set: the next run pays for a new image."
                    if self.options.resubmit_expired else
                    "The prediction stays in the submit journal, so the next run fetches it "
                    "again instead of paying for a new one; set "
                    f"models.{self.name}.options.resubmit_expired=true to pay anew.")))
        seed = re.search(r"seed:\s*(\d+)", str(data.get("logs") or ""), re.IGNORECASE)
        if seed:
            info["seed"] = int(seed.group(1))
        cost = self._cost(r.model_id, f"{r.width}x{r.height}", None, info)
        return GenResult(status="ok", image=to_png(got.content), cost_usd=cost, info=info)
