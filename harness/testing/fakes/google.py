"""Google: Gemini image models (``:generateContent``), and Imagen's ``:predict`` answering 404
NOT_FOUND as it does since Imagen was shut down (:data:`IMAGEN_SHUTDOWN`), on the Gemini
API (``/v1beta/models/{model}``, key in ``x-goog-api-key``) and on Vertex AI
(``/{v1,v1beta1}/projects/{project}/locations/{location}/publishers/google/models/{model}``,
``Authorization: Bearer <token>``; the fake's key stands for the token).

Outcomes (:meth:`FakeProviders.set_outcome`): "moderated" (finishReason IMAGE_SAFETY), any Gemini
finishReason by name (IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT, NO_IMAGE, SAFETY ...), "blocked"
(promptFeedback.blockReason) and "text_only" (the model answers in words, no image).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from harness.testing.fakes.server import (
    Auth,
    FakeProviders,
    Provider,
    Reply,
    Request,
    no_prompt,
    prompt_image,
)

_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}
_GOOGLE_MESSAGES = {429: "Resource has been exhausted (e.g. check quota).",
                    500: "An internal error has occurred. Please retry or report in "
                         "https://developers.generativeai.google/guide/troubleshooting",
                    503: "The model is overloaded. Please try again later."}
GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
                  "1:8", "8:1", "1:4", "4:1")
"""google-genai's ``ImageConfigAspectRatio`` (from Google's API spec); a test checks it."""
GEMINI_IMAGE_SIZES = ("1K", "2K", "4K", "512")
"""google-genai's ``ImageConfigImageSize``; a test checks it."""
GEMINI_FINISH_REFUSALS = ("IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE",
                          "IMAGE_RECITATION", "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
                          "RECITATION", "OTHER")


def _body(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message,
                      "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}


def google_error(status: int, message: str) -> dict[str, Any]:
    """Google's error body for a status (its own wording for quota and server errors)."""
    return _body(status, _GOOGLE_MESSAGES.get(status, message))


def _google_bad(message: str, status: int = 400) -> Reply:
    return Reply(status, _body(status, message))


def _goog_key(h: Any, q: dict[str, str], key: str) -> bool:
    return h.get("x-goog-api-key", q.get("key")) == key


def _deny() -> Reply:
    # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
    return Reply(400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid "
                                 "API key.", "status": "INVALID_ARGUMENT", "details": [
                                     {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                      "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})


AUTH = Auth(_goog_key, _deny)


def _bearer(h: Any, q: dict[str, str], key: str) -> bool:
    return h.get("authorization") == f"Bearer {key}"


def _deny_vertex() -> Reply:
    # Vertex AI answers a missing or bad OAuth token with 401 UNAUTHENTICATED.
    return Reply(401, {"error": {"code": 401, "message": "Request had invalid authentication "
                                 "credentials. Expected OAuth 2 access token, login cookie or "
                                 "other valid authentication credential.",
                                 "status": "UNAUTHENTICATED"}})


VERTEX_AUTH = Auth(_bearer, _deny_vertex)


def _predict_prompt(req: Request) -> str | None:
    inst = (req.json or {}).get("instances") if isinstance(req.json, dict) else None
    if isinstance(inst, list) and inst and isinstance(inst[0], dict):
        p = inst[0].get("prompt")
        return p if isinstance(p, str) else None
    return None


def _contents_prompt(req: Request) -> str | None:
    contents = (req.json or {}).get("contents") if isinstance(req.json, dict) else None
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list):
        return None
    texts = [p.get("text") for c in contents if isinstance(c, dict)
             for p in c.get("parts") or [] if isinstance(p, dict) and p.get("text")]
    return " ".join(texts) if texts else None


def google_routes(fake: FakeProviders) -> None:
    """``POST /{v1beta,v1}/models/{model}:predict`` (Imagen) and ``:generateContent`` (Gemini);
    also under ``/{version}/publishers/google/models/{model}`` (Vertex AI express mode, key) and
    ``/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}``
    (Vertex AI with a bearer token)."""
    vertex = "/{version}/projects/{project}/locations/{location}/publishers/google/models/{model}"
    for prefix, auth in (("/{version}/models/{model}", AUTH),
                         ("/{version}/publishers/google/models/{model}", AUTH),
                         (vertex, VERTEX_AUTH)):
        fake.route("POST", prefix + ":predict", _google_predict, name="google.predict",
                   auth=auth, error=google_error, prompt_of=_predict_prompt)
        fake.route("POST", prefix + ":generateContent", _google_generate_content,
                   name="google.generateContent", auth=auth, error=google_error,
                   prompt_of=_contents_prompt)


    fake.route("GET", "/{version}/models/{model}", _google_model, name="google.model",
               auth=AUTH, error=google_error, prompt_of=no_prompt)
    fake.route("GET", "/{version}/publishers/google/models/{model}", _google_model,
               name="google.model", auth=EITHER_AUTH, error=google_error, prompt_of=no_prompt)


EITHER_AUTH = Auth(lambda h, q, key: _goog_key(h, q, key) or _bearer(h, q, key), _deny_vertex)
"""Vertex AI's publisher model GET: a bearer token, or an express-mode key."""


def _google_model(fake: FakeProviders, req: Request) -> Reply:
    """The free model metadata call of google-genai's ``models.get``: the Gemini API's ``Model``
    (``name``, ``version``, ``displayName``, ``supportedGenerationMethods`` ...) or Vertex AI's
    ``PublisherModel`` (``name``, ``versionId``, ``launchStage``). Served: the Gemini image
    models ``:generateContent`` serves; an Imagen model (shut down) or anything else is 404."""
    model = req.params["model"]
    vertex = "/publishers/" in req.path
    if not (model.startswith("gemini-") and "image" in model):
        if vertex:
            return _google_bad(f"Publisher Model `publishers/google/models/{model}` not found.",
                               404)
        return _google_bad(f"models/{model} is not found for API version "
                           f"{req.params.get('version', 'v1beta')}.", 404)
    if vertex:
        return Reply(200, {"name": f"publishers/google/models/{model}", "versionId": "001",
                           "openSourceCategory": "PROPRIETARY", "launchStage": "GA"})
    return Reply(200, {"name": f"models/{model}", "baseModelId": model, "version": "001",
                       "displayName": model, "inputTokenLimit": 65536,
                       "outputTokenLimit": 32768,
                       "supportedGenerationMethods": ["generateContent", "countTokens"]})


PROVIDER = Provider("google", google_routes, "/v1beta", "GEMINI_API_KEY", "gemini_image")


IMAGEN_SHUTDOWN = "2026-08-17"
"""Google shut every Imagen model down on the Gemini API and on Vertex AI on this day
(https://firebase.google.com/docs/ai-logic/imagen-models-migration), so ``:predict`` of an Imagen
model answers 404 NOT_FOUND, as for any model the API does not serve."""


def _google_predict(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    if "project" in req.params:  # Vertex AI's wording for a publisher model it does not serve
        return _google_bad(f"Publisher Model `projects/{req.params['project']}/locations/"
                           f"{req.params['location']}/publishers/google/models/{model}` was not "
                           "found or your project does not have access to it. Please ensure you "
                           "are using a valid model version.", 404)
    return _google_bad(f"models/{model} is not found for API version "
                       f"{req.params.get('version', 'v1beta')}, or is not supported for predict. "
                       "Call ListModels to see the list of available models and their supported "
                       "methods.", 404)


def _google_generate_content(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    body = req.json if isinstance(req.json, dict) else {}
    prompt = _contents_prompt(req)
    if not prompt:
        return _google_bad("* GenerateContentRequest.contents: contents is not specified")
    for c in body.get("contents") or []:  # image inputs (editing): base64 image bytes
        for part in (c.get("parts") or []) if isinstance(c, dict) else []:
            blob = part.get("inlineData") or part.get("inline_data") if isinstance(part, dict) else None
            if blob is None:
                continue
            mime = blob.get("mimeType") or blob.get("mime_type") or ""
            try:
                data = base64.b64decode(blob.get("data") or "", validate=True)
            except (ValueError, TypeError):
                data = b""
            if not mime.startswith("image/") or not data:
                return _google_bad("Unable to process input image. Please retry or report in "
                                   "https://developers.generativeai.google/guide/troubleshooting")
    gc = body.get("generationConfig") or {}
    modalities = [str(m).upper() for m in gc.get("responseModalities") or ["TEXT"]]
    ar = (gc.get("imageConfig") or {}).get("aspectRatio", "1:1")
    if ar not in GEMINI_ASPECTS:
        return _google_bad(f"Unsupported aspect ratio: {ar}.")
    size = (gc.get("imageConfig") or {}).get("imageSize", "1K")
    if size not in GEMINI_IMAGE_SIZES:
        return _google_bad(f"Unsupported image size: {size}. Supported: "
                           f"{', '.join(GEMINI_IMAGE_SIZES)}.")
    if "IMAGE" in modalities and "image" not in model:
        return _google_bad("The requested combination of response modalities (IMAGE) is not "
                           "supported by the model.")
    words = len(prompt.split())
    rid = uuid.uuid4().hex[:22]
    base: dict[str, Any] = {"modelVersion": model, "responseId": rid}
    usage = {"promptTokenCount": words, "totalTokenCount": words,
             "promptTokensDetails": [{"modality": "TEXT", "tokenCount": words}]}
    outcome = fake.outcome(prompt)
    if outcome == "blocked":
        return Reply(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                           "usageMetadata": usage, **base})
    if outcome == "moderated":
        outcome = "IMAGE_SAFETY"
    if outcome in GEMINI_FINISH_REFUSALS:
        return Reply(200, {"candidates": [{"finishReason": outcome, "index": 0}],
                           "usageMetadata": usage, **base})
    if outcome == "text_only" or "IMAGE" not in modalities:
        parts = [{"text": "I can't create that image, but I can describe it in words."}]
    else:
        img = prompt_image(prompt, "png")
        parts = [{"inlineData": {"mimeType": "image/png", "data": base64.b64encode(img).decode()}}]
        usage = usage | {"candidatesTokenCount": 1290, "totalTokenCount": words + 1290,
                         "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}]}
    return Reply(200, {"candidates": [{"content": {"parts": parts, "role": "model"},
                                       "finishReason": "STOP", "index": 0}],
                       "usageMetadata": usage, **base})
