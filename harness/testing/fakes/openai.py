"""OpenAI Images: ``POST /v1/images/generations`` and ``POST /v1/images/edits``.

The fake takes what OpenAI takes, as the installed official ``openai`` SDK describes it (its
types are generated from OpenAI's OpenAPI spec): the model names of ``ImageModel``, less those
its docstring lists as retired or shut down (answered like an unknown model: 404
``model_not_found``); the ``size`` and ``quality`` literals of ``ImageGenerateParams`` /
``ImageEditParams``, less their "Deprecated values", with the extra qualities and the free
``WIDTHxHEIGHT`` sizes their docstrings grant some models; and the body fields of those
TypedDicts (any other is ``unknown_parameter``, as are the legacy fields the SDK says GPT image
models do not take). Nothing here copies the adapter's tables (:func:`sdk_rules`).

Answers carry ``b64_json`` and token usage, shaped as the SDK's ``ImagesResponse``. Moderation
is scripted with :meth:`Fault.moderation` (the server's ``Fault``).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import functools
import inspect
import io
import re
import time
import typing
from typing import Any

from harness.testing.fakes.server import (
    Auth,
    FakeProviders,
    Provider,
    Reply,
    Request,
    bearer,
    error_body,
    prompt_image,
)

MAX_PROMPT = 32000
"""The SDK's ``prompt`` docstring: "The maximum length is 32000 characters"."""


@dataclasses.dataclass(frozen=True)
class EndpointRules:
    """What one endpoint takes, read from one of the SDK's params TypedDicts."""

    fields: frozenset[str]
    legacy: frozenset[str]
    qualities: tuple[str, ...]
    extra_qualities: dict[str, frozenset[str]]
    sizes: tuple[str, ...]
    free_size_models: frozenset[str]
    multiple: int
    aspect: tuple[float, float]
    max_wh: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Rules:
    models: frozenset[str]
    retired: frozenset[str]
    generate: EndpointRules
    edit: EndpointRules


@functools.cache
def sdk_rules() -> Rules:
    """The Images API rules of the installed openai SDK (read at the first request)."""
    from openai.types import image_edit_params, image_generate_params, image_model

    return rules_from(image_model, image_generate_params, image_edit_params)


def rules_from(image_model: Any, gen: Any, edit: Any) -> Rules:
    models = frozenset(typing.get_args(image_model.ImageModel))
    deprecated = _deprecated(_docs(image_model).get("ImageModel", ""))
    retired = frozenset(m for m, text in deprecated.items()
                        if re.search(r"\b(retired|shut down) on ", text))
    return Rules(models, retired,
                 _endpoint(gen, "ImageGenerateParamsBase", "ImageGenerateParamsNonStreaming", models),
                 _endpoint(edit, "ImageEditParamsBase", "ImageEditParamsNonStreaming", models))


def _endpoint(module: Any, base: str, full: str, models: frozenset[str]) -> EndpointRules:
    hints = typing.get_type_hints(getattr(module, full))
    docs = _docs(module, base)
    q_doc, s_doc = docs.get("quality", ""), docs.get("size", "")
    extra: dict[str, frozenset[str]] = {}
    for sentence in _sentences(q_doc):
        if "also support" in sentence:
            names = _names(sentence, models)
            for q in re.findall(r"`([^`]+)`", sentence.split("also support", 1)[1]):
                extra[q] = names
    q_gone = _deprecated(q_doc)
    s_gone = _deprecated(s_doc)
    free = next((s for s in _sentences(s_doc) if "arbitrary resolutions" in s), "")
    flat = " ".join(s_doc.split())
    mult = re.search(r"divisible by (\d+)", flat)
    asp = re.search(r"between (\d+):(\d+) and (\d+):(\d+)", flat)
    mx = re.search(r"maximum supported resolution is `(\d+)x(\d+)`", flat)
    return EndpointRules(
        fields=frozenset(hints),
        legacy=frozenset(k for k, d in docs.items()
                         if "unsupported for gpt image models" in " ".join(d.split()).lower()),
        qualities=tuple(q for q in _literal(hints["quality"]) if q not in q_gone and q not in extra),
        extra_qualities=extra,
        sizes=tuple(s for s in _literal(hints["size"]) if s not in s_gone),
        free_size_models=_names(free, models),
        multiple=int(mult.group(1)) if mult else 1,
        aspect=(int(asp.group(1)) / int(asp.group(2)), int(asp.group(3)) / int(asp.group(4)))
        if asp else (0.0, float("inf")),
        max_wh=(int(mx.group(1)), int(mx.group(2))) if mx else (1 << 30, 1 << 30))


def _docs(module: Any, cls: str | None = None) -> dict[str, str]:
    """Attribute docstrings (the string after an assignment), read from the SDK's source."""
    body = ast.parse(inspect.getsource(module)).body
    if cls is not None:
        body = next((n.body for n in body if isinstance(n, ast.ClassDef) and n.name == cls), [])
    out = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        target = getattr(stmt, "target", None) or (getattr(stmt, "targets", None) or [None])[0]
        if (isinstance(target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)):
            out[target.id] = inspect.cleandoc(nxt.value.value)
    return out


def _literal(tp: Any) -> list[str]:
    if typing.get_origin(tp) is typing.Literal:
        return [str(v) for v in typing.get_args(tp)]
    return [v for arg in typing.get_args(tp) for v in _literal(arg)]


def _deprecated(doc: str) -> dict[str, str]:
    """Value -> text of each bullet under "Deprecated values:"."""
    out = {}
    tail = doc.partition("Deprecated values:")[2]
    for bullet in re.split(r"\n\s*- ", "\n" + tail.strip()):
        head, _, text = " ".join(bullet.split()).partition(":")
        for value in re.findall(r'"([^"]+)"', head):
            out[value] = text.strip()
    return out


def _sentences(doc: str) -> list[str]:
    return re.split(r"(?<=[.:])\s+(?=[-A-Z`])", " ".join(doc.split()))


def _names(text: str, models: frozenset[str]) -> frozenset[str]:
    """Model names in a sentence, plus the snapshots "including their `DATE` snapshots" adds."""
    found = {w for w in re.findall(r"`([^`]+)`", text) if w in models}
    for date in re.findall(r"`(\d{4}-\d{2}-\d{2})`", text):
        found |= {f"{m}-{date}" for m in list(found) if f"{m}-{date}" in models}
    return frozenset(found)


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


def masked_key(key: str) -> str:
    """A key as OpenAI's 401 echoes it: the first 8 and last 4 characters, the rest ``*``
    ("Incorrect API key provided: sk-VKMIs*****...*****wjh3.", as quoted in public reports of
    the error; short strings are echoed whole)."""
    return key if len(key) <= 12 else key[:8] + "*" * (len(key) - 12) + key[-4:]


def _deny_key(headers: Any) -> Reply:
    """A wrong key: OpenAI's 401, which echoes the key it was sent, masked."""
    sent = str(headers.get("Authorization") or "").removeprefix("Bearer ").strip()
    if not sent:
        return _deny()
    return Reply(401, error_body(f"Incorrect API key provided: {masked_key(sent)}. You can find "
                                 "your API key at https://platform.openai.com/account/api-keys.",
                                 "invalid_request_error", "invalid_api_key"))


AUTH = Auth(bearer, _deny, _deny_key)


def openai_routes(fake: FakeProviders) -> None:
    """``POST /v1/images/generations`` and ``POST /v1/images/edits``."""
    fake.route("POST", "/v1/images/generations", _openai_generate, auth=AUTH, error=openai_error)
    fake.route("POST", "/v1/images/edits", _openai_edit, auth=AUTH, error=openai_error)
    fake.route("GET", "/v1/models/{model}", _openai_model, name="openai.model", auth=AUTH,
               error=openai_error)


def _openai_model(fake: FakeProviders, req: Request) -> Reply:
    """``GET /v1/models/{model}`` (the SDK's ``models.retrieve``), shaped as the SDK's ``Model``
    (``id``, ``object``, ``created``, ``owned_by``; ``shutdown_date`` when announced). Image models
    are the SDK's ``ImageModel`` names; a retired one is not found, as on the images routes."""
    from openai.types import Model

    rules = sdk_rules()
    model = req.params["model"]
    if model not in rules.models or model in rules.retired:
        return _invalid(404, f"The model '{model}' does not exist", "model_not_found", "model")
    body = {"id": model, "object": "model", "created": 1_700_000_000, "owned_by": "system",
            "shutdown_date": None}
    return Reply(200, {k: v for k, v in body.items() if k in Model.model_fields})


PROVIDER = Provider("openai", openai_routes, "/v1", "OPENAI_API_KEY", "openai_gpt_image")


def _invalid(status: int, message: str, code: str, param: str | None) -> Reply:
    return Reply(status, error_body(message, "invalid_request_error", code, param))


def _size_ok(ep: EndpointRules, model: str, size: str) -> bool:
    if size in ep.sizes:
        return True
    m = re.fullmatch(r"(\d+)x(\d+)", size)
    if not m or model not in ep.free_size_models:
        return False
    w, h = int(m.group(1)), int(m.group(2))
    mw, mh = ep.max_wh
    return (w % ep.multiple == 0 and h % ep.multiple == 0 and h > 0
            and ep.aspect[0] <= w / h <= ep.aspect[1]
            and max(w, h) <= max(mw, mh) and w * h <= mw * mh)


def _openai_check(params: dict[str, Any], ep: EndpointRules, ignore: frozenset[str] = frozenset()
                  ) -> Reply | None:
    rules = sdk_rules()
    for key in params:
        if key in ep.legacy or (key not in ep.fields and key not in ignore):
            return _invalid(400, f"Unknown parameter: '{key}'.", "unknown_parameter", key)
    if not params.get("model"):  # the SDK: "Specify a model explicitly."
        return _invalid(400, "Missing required parameter: 'model'.",
                        "missing_required_parameter", "model")
    model = str(params["model"])
    # A retired model is answered like one that never existed (the exact wire shape OpenAI
    # uses for a shut-down image model is not in its published docs).
    if model not in rules.models or model in rules.retired:
        return _invalid(404, f"The model '{model}' does not exist.", "model_not_found", "model")
    prompt = params.get("prompt")
    if not prompt:
        return _invalid(400, "Missing required parameter: 'prompt'.",
                        "missing_required_parameter", "prompt")
    if len(str(prompt)) > MAX_PROMPT:
        return _invalid(400, f"Invalid 'prompt': string too long. Expected a string with maximum "
                        f"length {MAX_PROMPT}, but got a string with length {len(str(prompt))} "
                        "instead.", "string_above_max_length", "prompt")
    size = params.get("size")
    if size is not None and not _size_ok(ep, model, str(size)):
        return _invalid(400, f"Invalid value: '{size}'. Supported values are: "
                        f"{', '.join(repr(s) for s in ep.sizes)}"
                        + (f", or WIDTHxHEIGHT in multiples of {ep.multiple}"
                           if model in ep.free_size_models else "") + ".", "invalid_value", "size")
    q = params.get("quality")
    valid_q = ep.qualities + tuple(x for x, ms in ep.extra_qualities.items() if model in ms)
    if q is not None and q not in valid_q:
        return _invalid(400, f"Invalid value: '{q}'. Supported values are: "
                        f"{', '.join(repr(s) for s in valid_q)}.", "invalid_value", "quality")
    try:
        n = int(params.get("n") or 1)
    except ValueError:
        n = 0
    if not 1 <= n <= 10:  # the SDK: "Must be between 1 and 10."
        return _invalid(400, f"Invalid value: '{params.get('n')}'. n must be between 1 and 10.",
                        "invalid_value", "n")
    return None


def _openai_images(params: dict[str, Any]) -> Reply:
    prompt = str(params["prompt"])
    n = int(params.get("n") or 1)
    fmt = str(params.get("output_format") or "png")
    data = [{"b64_json": base64.b64encode(
        prompt_image(prompt if i == 0 else f"{prompt}#{i}", fmt if fmt in ("jpeg", "webp")
                     else "png")).decode()} for i in range(n)]
    words = len(prompt.split())
    quality = params.get("quality")
    size = params.get("size")
    # Shaped as the SDK's ImagesResponse: "auto" is resolved to what was made.
    body: dict[str, Any] = {
        "created": int(time.time()), "data": data,
        "background": "transparent" if params.get("background") == "transparent" else "opaque",
        "output_format": fmt,
        "quality": quality if quality not in (None, "auto") else "medium",
        "size": size if size not in (None, "auto") else "1024x1024",
        "usage": {"input_tokens": words, "output_tokens": 1056 * n,
                  "total_tokens": words + 1056 * n,
                  "input_tokens_details": {"text_tokens": words, "image_tokens": 0},
                  "output_tokens_details": {"image_tokens": 1056 * n, "text_tokens": 0}},
    }
    return Reply(200, body)


def _openai_generate(fake: FakeProviders, req: Request) -> Reply:
    params = req.json if isinstance(req.json, dict) else {}
    return _openai_check(params, sdk_rules().generate) or _openai_images(params)


def _openai_edit(fake: FakeProviders, req: Request) -> Reply:
    from PIL import Image

    params: dict[str, Any] = dict(req.form)
    bad = _openai_check(params, sdk_rules().edit)
    if bad:
        return bad
    image = req.files.get("image") or req.files.get("image[]")
    if not image:
        return _invalid(400, "Missing required parameter: 'image'.",
                        "missing_required_parameter", "image")
    if "mask" in req.files and "markup" in req.files:  # the SDK: "Cannot be combined with mask."
        return _invalid(400, "markup cannot be combined with mask.", "invalid_value", "markup")
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
