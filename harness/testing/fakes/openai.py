"""OpenAI Images: ``POST /v1/images/generations`` and ``POST /v1/images/edits``.

gpt-image models answer ``b64_json`` and report token usage; dall-e-3 revises the prompt and
takes n=1 only; dall-e-2 answers URLs unless asked for ``b64_json``. Moderation is scripted with
:meth:`Fault.moderation` / :meth:`Fault.content_policy` (the server's ``Fault``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from typing import Any

from harness.testing.fakes.server import (
    Auth,
    FakeProviders,
    Provider,
    Reply,
    Request,
    bearer,
    error_body,
    prompt_png,
)

OPENAI_SIZES = {
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
OPENAI_QUALITIES = {
    "gpt-image": ("low", "medium", "high", "auto"),
    "dall-e-3": ("standard", "hd"),
    "dall-e-2": ("standard",),
}


def openai_error(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error body for a status."""
    if status == 429:
        return error_body("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    if status >= 500:
        return error_body("The server had an error while processing your request.",
                          "server_error", None)
    return error_body(message, "invalid_request_error", None)


def _deny() -> Reply:
    return Reply(401, error_body("Incorrect API key provided. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.",
                                 "invalid_request_error", "invalid_api_key"))


AUTH = Auth(bearer, _deny)


def _family(model: str) -> str:
    return "gpt-image" if model.startswith("gpt-image") else model


def openai_routes(fake: FakeProviders) -> None:
    """``POST /v1/images/generations`` and ``POST /v1/images/edits``."""
    fake.route("POST", "/v1/images/generations", _openai_generate, auth=AUTH, error=openai_error)
    fake.route("POST", "/v1/images/edits", _openai_edit, auth=AUTH, error=openai_error)


PROVIDER = Provider("openai", openai_routes, "/v1", "OPENAI_API_KEY", "openai_gpt_image")


def _invalid(status: int, message: str, code: str, param: str) -> Reply:
    return Reply(status, error_body(message, "invalid_request_error", code, param))


def _openai_check(params: dict[str, Any]) -> Reply | None:
    model = str(params.get("model") or "dall-e-2")
    fam = _family(model)
    if fam not in OPENAI_SIZES:
        return _invalid(404, f"The model '{model}' does not exist.", "model_not_found", "model")
    if not params.get("prompt"):
        return _invalid(400, "Missing required parameter: 'prompt'.",
                        "missing_required_parameter", "prompt")
    size = params.get("size")
    if size is not None and size not in OPENAI_SIZES[fam]:
        return _invalid(400, f"Invalid value: '{size}'. Supported values are: "
                        f"{', '.join(repr(s) for s in OPENAI_SIZES[fam])}.", "invalid_value", "size")
    q = params.get("quality")
    if q is not None and q not in OPENAI_QUALITIES[fam]:
        return _invalid(400, f"Invalid value: '{q}'. Supported values are: "
                        f"{', '.join(repr(s) for s in OPENAI_QUALITIES[fam])}.", "invalid_value",
                        "quality")
    n = int(params.get("n") or 1)
    if fam == "dall-e-3" and n != 1:
        return _invalid(400, "You must provide n=1 for this model.", "invalid_value", "n")
    if fam == "gpt-image" and "response_format" in params:
        return _invalid(400, "Unknown parameter: 'response_format'.", "unknown_parameter",
                        "response_format")
    return None


def _openai_images(params: dict[str, Any]) -> Reply:
    model = str(params.get("model") or "dall-e-2")
    fam = _family(model)
    prompt = str(params["prompt"])
    n = int(params.get("n") or 1)
    data = []
    for i in range(n):
        item: dict[str, Any] = {}
        png = prompt_png(prompt if i == 0 else f"{prompt}#{i}")
        if fam == "gpt-image" or params.get("response_format") == "b64_json":
            item["b64_json"] = base64.b64encode(png).decode()
        else:  # URLs expire; the adapter never asks for them
            item["url"] = f"https://fake.invalid/{hashlib.sha1(png).hexdigest()}.png"
        if fam == "dall-e-3":
            item["revised_prompt"] = f"A detailed rendering of: {prompt}"
        data.append(item)
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if fam == "gpt-image":
        words = len(prompt.split())
        body.update({
            "background": "opaque", "output_format": "png",
            "quality": params.get("quality") or "medium", "size": params.get("size") or "1024x1024",
            "usage": {"input_tokens": words, "output_tokens": 1056 * n,
                      "total_tokens": words + 1056 * n,
                      "input_tokens_details": {"text_tokens": words, "image_tokens": 0}},
        })
    return Reply(200, body)


def _openai_generate(fake: FakeProviders, req: Request) -> Reply:
    params = req.json if isinstance(req.json, dict) else {}
    return _openai_check(params) or _openai_images(params)


def _openai_edit(fake: FakeProviders, req: Request) -> Reply:
    from PIL import Image

    params: dict[str, Any] = dict(req.form)
    if _family(str(params.get("model") or "dall-e-2")) == "dall-e-3":
        return _invalid(400, "dall-e-3 does not support image edits.", "invalid_value", "model")
    bad = _openai_check(params)
    if bad:
        return bad
    image = req.files.get("image") or req.files.get("image[]")
    if not image:
        return _invalid(400, "Missing required parameter: 'image'.",
                        "missing_required_parameter", "image")
    try:
        with Image.open(io.BytesIO(image)) as im:
            isize = im.size
        if "mask" in req.files:
            with Image.open(io.BytesIO(req.files["mask"])) as m:
                if m.size != isize:
                    return _invalid(400, "The image and mask must have the same dimensions.",
                                    "invalid_value", "mask")
                if "A" not in m.getbands():
                    return _invalid(400, "Invalid input image - format must be in ['RGBA', "
                                    "'LA', 'L'], got RGB.", "invalid_image_format", "mask")
    except OSError:
        return _invalid(400, "Invalid image file.", "invalid_image", "image")
    return _openai_images(params)
