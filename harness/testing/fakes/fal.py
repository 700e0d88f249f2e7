"""fal's queue: submit, status, result, and the image files (``/fal`` stands in for
``https://queue.fal.run``).

Outcomes (:meth:`FakeProviders.set_outcome`): "moderated" (has_nsfw_concepts: [true]),
"failed" (the result is an error), "runner_error" (``COMPLETED`` carrying ``error`` and
``error_type``, as fal-client's ``Completed`` reads them; the result is that error),
"policy" (likewise with ``error_type: content_policy_violation``), "policy_result" (a plain
``COMPLETED``, and the result a 422 model error ``{"detail": [{"loc", "msg", "type":
"content_policy_violation", "url", "input"}]}`` with ``X-Fal-Retryable: false``, the shape of
https://fal.ai/docs/documentation/model-apis/errors), "expired" (image URLs already expired),
"pending:N".

The Platform API's request history, ``GET /fal/platform/v1/models/requests/by-endpoint``
(``https://api.fal.ai/v1/models/requests/by-endpoint``: ``endpoint_id``, ``start``, ``end``,
``status``, ``request_id``, ``expand=payloads``, ``limit`` (default 50, max 100), ``cursor``;
answers ``items``, ``next_cursor``, ``has_more``), lists a request once it has ended (the list
is of ended requests, sorted by end time; here newest first). A job nobody polls still ends
once it is old enough (``job_seconds``) and not held.
"""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone
from typing import Any

from harness.testing.fakes.server import (
    MIME,
    Auth,
    FakeProviders,
    Job,
    Provider,
    Reply,
    Request,
    detail_denial,
    detail_error,
    file_route,
    header_key,
    no_prompt,
    prompt_image,
)

FAL_APPS = ("fal-ai/flux/dev", "fal-ai/flux/schnell", "fal-ai/flux-pro/v1.1",
            "fal-ai/flux-pro/v1.1-ultra", "fal-ai/recraft-v3", "fal-ai/ideogram/v3",
            "fal-ai/imagen4/preview", "fal-ai/bytedance/seedream/v4/text-to-image",
            "bytedance/seedream/v5/pro/us/text-to-image", "fal-ai/recraft/v4.1/text-to-image",
            "fal-ai/qwen-image-2/text-to-image", "fal-ai/qwen-image-2/pro/text-to-image")
FAL_SIZES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
             "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
             "landscape_16_9": (1024, 576)}

fal_error = detail_error({429: "Too many requests"})
"""fal's error body for a status."""
AUTH = Auth(header_key("Authorization", "Key"), detail_denial(401, "Invalid or missing credentials"))


def fal_routes(fake: FakeProviders) -> None:
    """Queue submit ``POST /fal/{app}``, ``GET .../requests/{id}/status`` and
    ``GET .../requests/{id}`` (the result), and the image files."""
    kw: dict[str, Any] = {"auth": AUTH, "error": fal_error}
    fake.route("GET", "/fal/{owner}/{app}/requests/{rid}/status", _fal_status,
               name="fal.status", prompt_of=no_prompt, **kw)
    fake.route("GET", "/fal/{owner}/{app}/requests/{rid}", _fal_result, name="fal.result",
               prompt_of=no_prompt, **kw)
    fake.route("GET", "/fal/platform/v1/models", _fal_models, name="fal.models",
               prompt_of=no_prompt, **kw)
    fake.route("GET", "/fal/platform/v1/models/requests/by-endpoint", _fal_history,
               name="fal.history", prompt_of=no_prompt, **kw)
    fake.route("POST", "/fal/{app:path}", _fal_submit, name="fal.submit", **kw)
    fake.route("GET", "/fal-media/{token}.{ext}", file_route, name="fal.file", auth=None,
               error=fal_error, prompt_of=no_prompt)


PROVIDER = Provider("fal", fal_routes, "/fal", "FAL_KEY", "fal_flux_dev")


def _fal_models(fake: FakeProviders, req: Request) -> Reply:
    """The Platform API's model search in find mode, ``GET /v1/models?endpoint_id=...``
    (https://docs.fal.ai/platform-apis/v1/models): ``models`` (``endpoint_id``, ``metadata``
    with ``display_name``, ``category``, ``status`` active|deprecated), ``next_cursor``,
    ``has_more``. The apps :data:`FAL_APPS` serves are listed, as active."""
    wanted = req.query.get("endpoint_id")
    ids = [a for a in FAL_APPS if wanted is None or a == wanted]
    return Reply(200, {"models": [{"endpoint_id": a, "metadata": {
        "display_name": a, "category": "text-to-image", "status": "active"}} for a in ids],
        "next_cursor": None, "has_more": False})


def _fal_urls(fake: FakeProviders, job: Job) -> dict[str, str]:
    base = f"{fake.url}/fal/{job.params['root']}/requests/{job.id}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


def _fal_submit(fake: FakeProviders, req: Request) -> Reply:
    app = req.params["app"]
    if app not in FAL_APPS:
        return Reply(404, {"detail": f"Application '{app}' not found"})
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("prompt"):
        return Reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                       "type": "value_error.missing"}]})
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, str) and size not in FAL_SIZES:
        return Reply(422, {"detail": [{"loc": ["body", "image_size"], "msg": "value is not a "
                                       "valid enumeration member", "type": "type_error.enum"}]})
    job = fake.new_job("fal", body["prompt"], {"input": body, "app": app,
                                               "root": "/".join(app.split("/")[:2]),
                                               "seed": body.get("seed")})
    return Reply(200, {"request_id": job.id, **_fal_urls(fake, job), "queue_position": 0})


def _fal_status(fake: FakeProviders, req: Request) -> Reply:
    job = fake.job(req.params["rid"], "fal")
    if job is None:
        return Reply(404, {"detail": "Request not found"})
    job.polls += 1
    urls = _fal_urls(fake, job)
    if job.ready(fake):
        done = {"status": "COMPLETED", "request_id": job.id, **urls, "logs": None,
                "metrics": {"inference_time": 0.42}}
        return Reply(200, done | _FAILED_STATUS.get(job.outcome or "", {}))
    if job.polls <= job.pending_polls // 2:
        return Reply(202, {"status": "IN_QUEUE", "request_id": job.id, **urls,
                           "queue_position": job.pending_polls // 2 - job.polls})
    return Reply(202, {"status": "IN_PROGRESS", "request_id": job.id, **urls, "logs": None})


_FAILED_STATUS = {
    "runner_error": {"error": "The runner encountered an internal server error.",
                     "error_type": "runner_server_error"},
    "policy": {"error": "The content was flagged by a content checker.",
               "error_type": "content_policy_violation"},
}
"""What a ``COMPLETED`` status of a failed request adds (error types from fal's request-errors
and errors pages)."""


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _utc(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 date or date-time (UTC unless it says)."""
    t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _ended(fake: FakeProviders, job: Job) -> bool:
    return "fal" not in fake.held and time.time() - job.created >= fake.job_seconds


def _fal_history(fake: FakeProviders, req: Request) -> Reply:
    q = req.query
    endpoints = {e for e in q.get("endpoint_id", "").split(",") if e}
    if not endpoints:
        return Reply(422, {"detail": [{"loc": ["query", "endpoint_id"], "msg": "Field required",
                                       "type": "missing"}]})
    try:
        start = _utc(q["start"]) if "start" in q else time.time() - 86400
        end = _utc(q["end"]) if "end" in q else None
        limit = int(q.get("limit") or 50)
        page = int(base64.b64decode(q["cursor"]).decode()) if q.get("cursor") else 0
    except ValueError as e:
        return Reply(422, {"detail": [{"loc": ["query"], "msg": str(e), "type": "value_error"}]})
    if not 1 <= limit <= 100:
        return Reply(422, {"detail": [{"loc": ["query", "limit"], "msg": "Input should be "
                                       "between 1 and 100", "type": "value_error"}]})
    jobs = sorted((j for j in list(fake.jobs.values()) if j.provider == "fal"
                   and j.params["app"] in endpoints and _ended(fake, j)
                   and j.created >= start and (end is None or j.created < end)
                   and q.get("request_id", j.id) == j.id),
                  key=lambda j: j.created, reverse=True)
    chunk = jobs[page * limit:(page + 1) * limit]
    items = []
    for j in chunk:
        failed = j.outcome in ("failed", "policy_result", *_FAILED_STATUS)
        item = {"request_id": j.id, "endpoint_id": j.params["app"], "sent_at": _iso(j.created),
                "started_at": _iso(j.created + 0.01), "ended_at": _iso(j.created + 0.43),
                "status_code": 422 if failed else 200, "duration": 0.42}
        if "payloads" in q.get("expand", "").split(","):
            item |= {"json_input": j.params["input"], "json_output": None}
        items.append(item)
    more = len(jobs) > (page + 1) * limit
    return Reply(200, {"items": items, "has_more": more,
                       "next_cursor": base64.b64encode(str(page + 1).encode()).decode()
                       if more else None})


def _fal_result(fake: FakeProviders, req: Request) -> Reply:
    job = fake.job(req.params["rid"], "fal")
    if job is None:
        return Reply(404, {"detail": "Request not found"})
    if not job.ready(fake):
        return Reply(400, {"detail": "Request is still in progress"})
    if job.outcome == "failed":
        return Reply(422, {"detail": [{"loc": ["body"], "msg": "Generation failed: the model "
                                       "raised an error", "type": "runtime_error"}]})
    if job.outcome == "policy_result":
        return Reply(422, {"detail": [{
            "loc": ["body", "prompt"], "msg": "The content was flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation",
            "input": job.prompt}]}, {"X-Fal-Retryable": "false"})
    if job.outcome in _FAILED_STATUS:
        err = _FAILED_STATUS[job.outcome]
        return Reply(500 if job.outcome == "runner_error" else 422,
                     {"detail": err["error"], "error_type": err["error_type"]},
                     {"X-Fal-Error-Type": err["error_type"]})
    inp = job.params["input"]
    fmt = str(inp.get("output_format") or "jpeg")
    size = inp.get("image_size", "landscape_4_3")
    w, h = FAL_SIZES[size] if isinstance(size, str) else (size["width"], size["height"])
    nsfw = job.outcome == "moderated"
    if not job.result_urls:
        for i in range(int(inp.get("num_images") or 1)):
            img = prompt_image("#black" if nsfw else job.prompt if i == 0 else f"{job.prompt}#{i}",
                               fmt)
            if inp.get("sync_mode"):
                job.result_urls.append(f"data:{MIME[fmt]};base64,{base64.b64encode(img).decode()}")
            else:
                job.result_urls.append(fake.host_file(img, MIME[fmt], "fal-media", fmt,
                                                      expired=job.outcome == "expired"))
    images = [{"url": u, "width": w, "height": h, "content_type": MIME[fmt]}
              for u in job.result_urls]
    return Reply(200, {"images": images, "timings": {"inference": 0.42}, "seed": job.seed,
                       "has_nsfw_concepts": [nsfw] * len(images), "prompt": job.prompt})
