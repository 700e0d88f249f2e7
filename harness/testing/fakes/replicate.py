"""Replicate predictions: create (by model or by version), get, list, and the output files.

``GET /v1/predictions`` lists the predictions newest first, 100 a page, with ``next`` and
``previous`` cursor URLs and the ``created_after`` (at or after) / ``created_before`` (before)
filters of Replicate's OpenAPI spec (``PredictionListParams``); each result carries ``source``.

Outcomes (:meth:`FakeProviders.set_outcome`): "moderated" (failed: NSFW content detected),
"failed", "canceled", "expired" (output URLs already expired), "pending:N".
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from harness.testing.fakes.server import (
    MIME,
    Auth,
    FakeProviders,
    Job,
    Provider,
    Reply,
    Request,
    file_route,
    no_prompt,
    prompt_image,
)

REPLICATE_MODELS = ("black-forest-labs/flux-schnell", "black-forest-labs/flux-dev",
                    "black-forest-labs/flux-1.1-pro", "black-forest-labs/flux-pro",
                    "stability-ai/stable-diffusion-3.5-large", "ideogram-ai/ideogram-v3-turbo",
                    "recraft-ai/recraft-v3", "google/imagen-4")
_REPLICATE_TITLES = {404: "Not found", 422: "Input validation failed", 429: "Too Many Requests",
                     500: "Internal Server Error", 503: "Service Unavailable"}


def replicate_error(status: int, message: str) -> dict[str, Any]:
    """Replicate's problem-details error body for a status."""
    if status == 429:
        message = "Request was throttled. Expected available in 1 second."
    return {"title": _REPLICATE_TITLES.get(status, "Error"), "detail": message, "status": status}


def _replicate_key(h: Any, q: dict[str, str], key: str) -> bool:
    return h.get("Authorization") in (f"Bearer {key}", f"Token {key}")


def _deny() -> Reply:
    return Reply(401, {"title": "Unauthenticated", "status": 401,
                       "detail": "You did not pass a valid authentication token"})


AUTH = Auth(_replicate_key, _deny)


def _input_prompt(req: Request) -> str | None:
    inp = (req.json or {}).get("input") if isinstance(req.json, dict) else None
    p = inp.get("prompt") if isinstance(inp, dict) else None
    return p if isinstance(p, str) else None


def replicate_routes(fake: FakeProviders) -> None:
    """``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/predictions`` (a version),
    ``GET /v1/predictions/{id}`` and the output files."""
    kw: dict[str, Any] = {"auth": AUTH, "error": replicate_error}
    fake.route("POST", "/v1/models/{owner}/{name}/predictions", _replicate_create,
               name="replicate.create", prompt_of=_input_prompt, **kw)
    fake.route("POST", "/v1/predictions", _replicate_create, name="replicate.create",
               prompt_of=_input_prompt, **kw)
    fake.route("GET", "/v1/predictions/{id}", _replicate_get, name="replicate.get",
               prompt_of=no_prompt, **kw)
    fake.route("GET", "/v1/predictions", _replicate_list, name="replicate.list",
               prompt_of=no_prompt, **kw)
    fake.route("GET", "/v1/models/{owner}/{name}", _replicate_model, name="replicate.model",
               prompt_of=no_prompt, **kw)
    fake.route("GET", "/v1/models/{owner}/{name}/versions/{version}", _replicate_model,
               name="replicate.model", prompt_of=no_prompt, **kw)
    fake.route("GET", "/replicate-delivery/{token}.{ext}", file_route, name="replicate.file",
               auth=None, error=replicate_error, prompt_of=no_prompt)


PROVIDER = Provider("replicate", replicate_routes, "/v1", "REPLICATE_API_TOKEN",
                    "replicate_flux_schnell")


def _replicate_model(fake: FakeProviders, req: Request) -> Reply:
    """``GET /v1/models/{owner}/{name}`` (and ``.../versions/{id}``): the model object of
    Replicate's HTTP API (``url``, ``owner``, ``name``, ``visibility``, ``latest_version`` ...)
    for the models :data:`REPLICATE_MODELS` serves; anything else is 404."""
    model = f"{req.params['owner']}/{req.params['name']}"
    if model not in REPLICATE_MODELS:
        return Reply(404, replicate_error(404, "Not found"))
    version = {"id": req.params.get("version") or "0" * 64, "created_at": _iso(1.7e9),
               "cog_version": "0.9.0", "openapi_schema": {}}
    if "version" in req.params:
        return Reply(200, version)
    return Reply(200, {"url": f"https://replicate.com/{model}", "owner": req.params["owner"],
                       "name": req.params["name"], "description": "", "visibility": "public",
                       "run_count": 0, "latest_version": version})


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _replicate_create(fake: FakeProviders, req: Request) -> Reply:
    body = req.json if isinstance(req.json, dict) else {}
    if "owner" in req.params:
        model, version = f"{req.params['owner']}/{req.params['name']}", "hidden"
        if model not in REPLICATE_MODELS:
            return Reply(404, replicate_error(404, "The requested resource could not be found."))
    else:
        version = str(body.get("version") or "")
        if not re.fullmatch(r"([\w.-]+/[\w.-]+:)?[0-9a-f]{64}", version):
            return Reply(422, {"title": "Invalid version", "status": 422, "detail":
                               "The specified version does not exist (or perhaps you don't "
                               "have permission to use it?)"})
        model, version = "unknown/community-model", version.rsplit(":", 1)[-1]
    inp = body.get("input")
    if not isinstance(inp, dict) or not inp.get("prompt"):
        return Reply(422, {"title": "Input validation failed", "status": 422,
                           "detail": "- input: prompt is required", "invalid_fields": [
                               {"type": "required", "field": "input", "description":
                                "prompt is required"}]})
    job = fake.new_job("replicate", inp["prompt"], {"input": inp, "model": model,
                                                     "version": version, "seed": inp.get("seed")})
    wait = req.headers.get("prefer", "")
    if wait.startswith("wait"):
        limit = float(wait.partition("=")[2] or 60)
        left = fake.job_seconds - (time.time() - job.created)
        if left > 0 and fake.wait(min(left, limit)):
            return Reply(503, replicate_error(503, "shutting down"))
        if left <= limit:
            job.polls = job.pending_polls + 1
    return Reply(201, _replicate_state(fake, job))


PAGE = 100
"""Predictions per page of the list, as Replicate's reference says."""


def _when(value: str) -> float | None:
    try:
        t = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def _replicate_list(fake: FakeProviders, req: Request) -> Reply:
    after = _when(req.query["created_after"]) if "created_after" in req.query else None
    before = _when(req.query["created_before"]) if "created_before" in req.query else None
    if (after is None and "created_after" in req.query) or (
            before is None and "created_before" in req.query):
        return Reply(400, replicate_error(400, "created_after and created_before take an ISO "
                                               "8601 date-time"))
    jobs = sorted((j for j in list(fake.jobs.values()) if j.provider == "replicate"
                   and (after is None or j.created >= after)
                   and (before is None or j.created < before)),
                  key=lambda j: j.created, reverse=True)
    page = int(req.query.get("cursor") or 0)
    chunk = jobs[page * PAGE:(page + 1) * PAGE]

    def link(n: int) -> str:
        q = {k: v for k, v in req.query.items() if k != "cursor"} | {"cursor": str(n)}
        return f"{fake.url}/v1/predictions?{urlencode(q)}"

    return Reply(200, {"next": link(page + 1) if len(jobs) > (page + 1) * PAGE else None,
                       "previous": link(page - 1) if page > 0 else None,
                       "results": [_replicate_state(fake, j) | {"source": "api"}
                                   for j in chunk]})


def _replicate_get(fake: FakeProviders, req: Request) -> Reply:
    job = fake.job(req.params["id"], "replicate")
    if job is None:
        return Reply(404, replicate_error(404, "The requested resource could not be found."))
    job.polls += 1
    return Reply(200, _replicate_state(fake, job))


def _replicate_state(fake: FakeProviders, job: Job) -> dict[str, Any]:
    base = f"{fake.url}/v1/predictions/{job.id}"
    inp = job.params["input"]
    d: dict[str, Any] = {
        "id": job.id, "model": job.params["model"], "version": job.params["version"],
        "input": inp, "logs": "", "output": None, "data_removed": False, "error": None,
        "status": "starting", "created_at": _iso(job.created), "started_at": None,
        "completed_at": None, "urls": {"cancel": base + "/cancel", "get": base,
                                       "stream": f"{fake.url}/v1/stream/{job.id}",
                                       "web": f"https://replicate.com/p/{job.id}"}}
    if job.polls == 0 and not job.ready(fake):
        return d
    d["started_at"] = _iso(job.created + 0.01)
    if not job.ready(fake):
        d["status"] = "processing"
        d["logs"] = f"Using seed: {job.seed}\n"
        return d
    d["completed_at"] = _iso(time.time())
    d["metrics"] = {"predict_time": 0.42, "total_time": round(time.time() - job.created, 3)}
    d["logs"] = f"Using seed: {job.seed}\n"
    if job.outcome == "moderated":
        d |= {"status": "failed", "error": "NSFW content detected. Try running it again, or try "
              "a different prompt."}
    elif job.outcome == "failed":
        d |= {"status": "failed", "error": "CUDA error: out of memory"}
    elif job.outcome == "canceled":
        d |= {"status": "canceled"}
    else:
        if not job.result_urls:
            fmt = str(inp.get("output_format") or "webp")
            n = int(inp.get("num_outputs") or 1)
            job.result_urls = [fake.host_file(prompt_image(job.prompt if i == 0 else
                                                           f"{job.prompt}#{i}", fmt),
                                              MIME.get(fmt, "image/webp"), "replicate-delivery",
                                              fmt, expired=job.outcome == "expired")
                               for i in range(n)]
        single = job.params["model"] in ("black-forest-labs/flux-1.1-pro", "google/imagen-4")
        d |= {"status": "succeeded", "output": job.result_urls[0] if single else job.result_urls}
    return d
