"""Stability AI v2beta stable-image generate (multipart form; an image or JSON back).

Outcomes (:meth:`FakeProviders.set_outcome`): "moderated" (403 content_moderation) and
"filtered" (200, finish-reason CONTENT_FILTERED, a blurred image).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from harness.testing.fakes.server import (
    MIME,
    Auth,
    FakeProviders,
    Provider,
    Reply,
    Request,
    bearer,
    prompt_image,
)

# The sd3 service's models and the aspect ratios of the v2beta generate API reference
# (https://platform.stability.ai/docs/api-reference#tag/Generate); the page itself could not be
# read for this table on 2026-12-01, so it was checked against copies of its schema.
STABILITY_ASPECTS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
STABILITY_SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
_STABILITY_NAMES = {400: "bad_request", 401: "unauthorized", 402: "payment_required",
                    403: "content_moderation", 404: "not_found", 413: "payload_too_large",
                    422: "invalid_parameters", 429: "rate_limit_exceeded", 500: "internal_error"}


def _body(status: int, message: str) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "name": _STABILITY_NAMES.get(status, "error"),
            "errors": [message]}


def stability_error(status: int, message: str) -> dict[str, Any]:
    """Stability's error body for a status (its own wording for rate limits and 5xx)."""
    if status == 429:
        message = ("You have exceeded the rate limit of 150 requests within a 10 second period, "
                   "and have been timed out for 60 seconds.")
    elif status >= 500:
        message = "An unexpected server error has occurred, please try again later."
    return _body(status, message)


def _stability_bad(message: str, status: int = 400) -> Reply:
    return Reply(status, _body(status, message))


AUTH = Auth(bearer, lambda: Reply(401, _body(401, "authorization: invalid or missing API key")))


def stability_routes(fake: FakeProviders) -> None:
    """``POST /v2beta/stable-image/generate/{core|ultra|sd3}`` (multipart form)."""
    fake.route("POST", "/v2beta/stable-image/generate/{service}", _stability_generate,
               name="stability.generate", auth=AUTH, error=stability_error)


PROVIDER = Provider("stability", stability_routes, "", "STABILITY_API_KEY", "stability_core")


def _stability_generate(fake: FakeProviders, req: Request) -> Reply:
    service = req.params["service"]
    if service not in ("core", "ultra", "sd3"):
        return _stability_bad(f"/v2beta/stable-image/generate/{service} not found", 404)
    if not req.headers.get("content-type", "").startswith("multipart/form-data"):
        return _stability_bad("content-type: must be multipart/form-data")
    accept = req.headers.get("accept", "image/*")
    if accept not in ("image/*", "application/json"):
        return _stability_bad("accept: must be one of image/* or application/json")
    f = req.form
    if not f.get("prompt"):
        return _stability_bad("prompt: cannot be empty")
    if f.get("aspect_ratio", "1:1") not in STABILITY_ASPECTS:
        return _stability_bad(f"aspect_ratio: must be one of {', '.join(STABILITY_ASPECTS)}")
    fmt = f.get("output_format", "png")
    if fmt not in ("png", "jpeg", "webp") or (service == "sd3" and fmt == "webp"):
        return _stability_bad(f"output_format: {fmt!r} is not supported")
    if service == "sd3" and f.get("model", "sd3.5-large") not in STABILITY_SD3_MODELS:
        return _stability_bad(f"model: must be one of {', '.join(STABILITY_SD3_MODELS)}")
    try:
        seed = int(f.get("seed", "0"))
    except ValueError:
        return _stability_bad("seed: must be an integer")
    if not 0 <= seed <= 4294967294:
        return _stability_bad("seed: must be between 0 and 4294967294")
    outcome = fake.outcome(f["prompt"])
    if outcome == "moderated":
        return _stability_bad("Your request was flagged by our content moderation system, as a "
                              "result your request was denied and you were not charged.", 403)
    seed = seed or fake.next_seed()
    finish = "CONTENT_FILTERED" if outcome == "filtered" else "SUCCESS"
    img = prompt_image(f["prompt"] + ("#blurred" if finish != "SUCCESS" else ""), fmt)
    if accept == "application/json":
        return Reply(200, {"image": base64.b64encode(img).decode(), "finish_reason": finish,
                           "seed": seed})
    return Reply(200, None, {"finish-reason": finish, "seed": str(seed)}, raw=img,
                 content_type=MIME[fmt])
