"""Black Forest Labs (Flux): submit, the polling URL, and expiring sample URLs.

Outcomes (:meth:`FakeProviders.set_outcome`): "moderated" (Request Moderated),
"content_moderated" (Content Moderated), "failed" (Error), "expired" (the first sample URL
handed out has already expired; a later ``get_result`` signs a fresh one), "gone" (every sample
URL handed out has expired), "pending:N".

Each Ready ``get_result`` signs a new sample URL valid for ``sample_ttl_s``. BFL documents that
sample URLs expire (10 minutes) but not whether a later ``get_result`` re-signs them; "expired"
and "gone" are the two possibilities, so a client is tested against both.
"""

from __future__ import annotations

import time
from typing import Any

from harness.testing.fakes.server import (
    MIME,
    Auth,
    FakeProviders,
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

BFL_FLUX2_MODELS = ("flux-2-pro", "flux-2-max", "flux-2-flex", "flux-2-klein-4b",
                    "flux-2-klein-9b")
"""FLUX.2 endpoints, width/height multiples of 16 from 64, at most 4 MP: BFL's API reference
(https://github.com/black-forest-labs/skills/blob/main/skills/bfl-api/references/endpoints.md)
and pricing page (https://docs.bfl.ai/quick_start/pricing)."""
BFL_MODELS = ("flux-pro-1.1", "flux-pro-1.1-ultra", "flux-pro", "flux-dev", "flux-kontext-pro",
              "flux-kontext-max", *BFL_FLUX2_MODELS)

bfl_error = detail_error({
    429: "You have exceeded the number of active tasks (24). Please wait for some tasks to "
         "complete.",
    402: "Insufficient credits. Please add credits at https://dashboard.bfl.ai."})
"""BFL's error body for a status."""
AUTH = Auth(header_key("x-key"), detail_denial(403, "Not authenticated - Invalid Authentication"))


def bfl_routes(fake: FakeProviders) -> None:
    """``POST /v1/{model}`` (submit), ``GET /v1/get_result?id=`` (the polling URL) and the
    expiring sample files. Added last: ``/v1/{model}`` would shadow other ``/v1/x`` routes."""
    fake.route("GET", "/v1/get_result", _bfl_result, name="bfl.poll", auth=AUTH,
               error=bfl_error, prompt_of=no_prompt)
    fake.route("POST", "/v1/{model}", _bfl_submit, name="bfl.submit", auth=AUTH,
               error=bfl_error)
    fake.route("GET", "/bfl-delivery/{token}.{ext}", file_route, name="bfl.sample", auth=None,
               error=bfl_error, prompt_of=no_prompt)


PROVIDER = Provider("bfl", bfl_routes, "", "BFL_API_KEY", "flux_pro")


def _bfl_invalid(field_: str, msg: str, value: Any) -> Reply:
    return Reply(422, {"detail": [{"type": "value_error", "loc": ["body", field_], "msg": msg,
                                   "input": value}]})


def _is_image_ref(value: Any) -> bool:
    """A URL, or base64 that decodes to PNG/JPEG/WebP bytes."""
    import base64
    import binascii

    if not isinstance(value, str) or not value:
        return False
    if value.startswith(("http://", "https://")):
        return True
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or data[8:12] == b"WEBP"


def _bfl_submit(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    if model not in BFL_MODELS:
        return Reply(404, {"detail": "Not Found"})
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("prompt"):
        return _bfl_invalid("prompt", "Field required", None)
    flux2 = model in BFL_FLUX2_MODELS
    for dim in ("width", "height"):
        v = body.get(dim)
        if v is None:
            continue
        if flux2 and (not isinstance(v, int) or v % 16 or v < 64):
            return _bfl_invalid(dim, "Input should be a multiple of 16 of at least 64", v)
        if not flux2 and (not isinstance(v, int) or v % 32 or not 256 <= v <= 1440):
            return _bfl_invalid(dim, "Input should be a multiple of 32 between 256 and 1440", v)
    if flux2 and int(body.get("width") or 0) * int(body.get("height") or 0) > 4_000_000:
        return _bfl_invalid("width", "width x height should be at most 4 megapixels",
                            body.get("width"))
    if flux2 and model != "flux-2-flex" and ("steps" in body or "guidance" in body):
        return _bfl_invalid("steps", "Extra inputs are not permitted", body.get("steps"))
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        return _bfl_invalid("output_format", "Input should be 'jpeg' or 'png'",
                            body.get("output_format"))
    # Image editing (FLUX.2, Kontext): input_image is a URL or a base64-encoded image.
    src = body.get("input_image")
    if src is not None and not _is_image_ref(src):
        return _bfl_invalid("input_image", "Input should be a URL or a base64-encoded image",
                            str(src)[:40])
    job = fake.new_job("bfl", body["prompt"], dict(body) | {"model": model})
    return Reply(200, {"id": job.id, "polling_url": f"{fake.url}/v1/get_result?id={job.id}"})


def _bfl_result(fake: FakeProviders, req: Request) -> Reply:
    jid = req.query.get("id", "")
    job = fake.job(jid, "bfl")
    if job is None:
        return Reply(404, {"id": jid, "status": "Task not found", "result": None,
                           "progress": None, "details": None})
    job.polls += 1
    d: dict[str, Any] = {"id": job.id, "status": "Pending", "result": None, "progress": None,
                         "details": None}
    if not job.ready(fake):
        return Reply(200, d | {"progress": round(min(0.95, 0.1 * job.polls), 2)})
    if job.outcome == "moderated":
        return Reply(200, d | {"status": "Request Moderated",
                               "details": {"Moderation Reasons": ["Derivative Works"]}})
    if job.outcome == "content_moderated":
        return Reply(200, d | {"status": "Content Moderated",
                               "details": {"Moderation Reasons": ["NSFW"]}})
    if job.outcome == "failed":
        return Reply(200, d | {"status": "Error", "details": {"error": "Generation failed"}})
    fmt = str(job.params.get("output_format") or "jpeg")
    expired = job.outcome == "gone" or (job.outcome == "expired" and not job.result_urls)
    job.result_urls.append(fake.host_file(prompt_image(job.prompt, fmt), MIME[fmt],
                                          "bfl-delivery", fmt, expired=expired))
    now = time.time()
    return Reply(200, d | {"status": "Ready", "result": {
        "sample": job.result_urls[-1], "prompt": job.prompt, "seed": job.seed,
        "start_time": job.created, "end_time": now, "duration": round(now - job.created, 3)}})
