"""Google image models through the Gemini API: Imagen (``:predict``) and Gemini image models
(``:generateContent`` with ``responseModalities: ["IMAGE"]``).

The model id picks the endpoint: ``imagen-*`` models take ``instances``/``parameters``
(``sampleCount``, ``aspectRatio``, ``personGeneration`` ...); ``gemini-*`` models take
``contents`` and ``generationConfig``. Refusals are results, never retried: an Imagen answer
whose images were all filtered (``raiFilteredReason``, always asked for), a Gemini answer
blocked at the prompt (``promptFeedback.blockReason``), finished for a safety reason
(``finishReason`` IMAGE_SAFETY, IMAGE_PROHIBITED_CONTENT, NO_IMAGE, SAFETY ...), or with no
image in it. The key goes in the ``x-goog-api-key`` header, never in the URL.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from harness.errors import ConfigError
from harness.generators.api import APIGenerator, APIOptions
from harness.generators.base import Generator
from harness.generators.http import HTTPClient, aspect_ratio, to_png
from harness.types import GenRequest, GenResult

IMAGEN_SIZES = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896),
                "9:16": (768, 1408), "16:9": (1408, 768)}
"""Imagen's aspect ratios and the 1K pixel size of each
(https://ai.google.dev/gemini-api/docs/imagen)."""

GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")

FINISH_OK = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED", "MAX_TOKENS"})
"""finishReason values that are not a refusal (any other one is: IMAGE_SAFETY,
IMAGE_PROHIBITED_CONTENT, IMAGE_OTHER, NO_IMAGE, IMAGE_RECITATION, SAFETY, PROHIBITED_CONTENT,
BLOCKLIST, SPII, RECITATION, OTHER ...)."""


def _google_error(status: int, body: Any, text: str) -> tuple[str | None, str]:
    """``{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED"}}``."""
    e = body.get("error") if isinstance(body, dict) else None
    if isinstance(e, dict):
        return (str(e.get("status")) if e.get("status") else None), str(e.get("message") or text)
    return None, text or f"HTTP {status}"


class GoogleImages(APIGenerator, Generator):
    """Imagen 3/4 and Gemini image models (``gemini-2.5-flash-image`` ...)."""

    kind = "google"
    batch_dependent = False
    provider = "google"
    auth_header = ("x-goog-api-key", "{key}")
    key_help = "your Gemini API key (from https://aistudio.google.com/apikey)"
    request_id_header = "x-request-id"

    @dataclasses.dataclass
    class Options(APIOptions):
        base_url: str = "https://generativelanguage.googleapis.com/v1beta"
        """API root (a proxy or the test fake)."""
        api_key_env: str = "GEMINI_API_KEY"
        """Environment variable holding the key."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        w, h = int(self.params.get("width", 1024)), int(self.params.get("height", 1024))
        if self.model_id.startswith("imagen"):
            self.endpoint = "predict"
            by_size = {v: k for k, v in IMAGEN_SIZES.items()}
            ar = by_size.get((w, h)) or aspect_ratio(w, h)
            if ar not in IMAGEN_SIZES:
                raise ConfigError(
                    f"models.{self.name}.params: Imagen makes no {w}x{h} images. Valid width x "
                    f"height: {', '.join(f'{a}x{b}' for a, b in IMAGEN_SIZES.values())} (or any "
                    f"size of aspect ratio {', '.join(IMAGEN_SIZES)}).")
        elif self.model_id.startswith("gemini"):
            self.endpoint = "generateContent"
            ar = aspect_ratio(w, h)
            if ar not in GEMINI_ASPECTS:
                raise ConfigError(f"models.{self.name}.params: {w}x{h} is aspect ratio {ar}; "
                                  f"Gemini image models take {', '.join(GEMINI_ASPECTS)}.")
        else:
            raise ConfigError(f"models.{self.name}.model_id: {self.model_id!r} is neither an "
                              "Imagen (imagen-...) nor a Gemini (gemini-...) model.")
        self.aspect = ar

    def error_parser(self, status: int, body: Any, text: str) -> tuple[str | None, str]:
        return _google_error(status, body, text)

    def _body(self, r: GenRequest) -> dict[str, Any]:
        extra = {k: v for k, v in dict(r.params).items() if v is not None}
        if self.endpoint == "predict":
            params = {"sampleCount": 1, "aspectRatio": self.aspect, "includeRaiReason": True,
                      "outputOptions": {"mimeType": "image/png"}} | extra
            return {"instances": [{"prompt": r.prompt}], "parameters": params}
        gen = {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": self.aspect}}
        for k, v in extra.items():  # imageConfig merges (imageSize next to aspectRatio)
            gen[k] = (gen.get(k, {}) | v) if isinstance(v, dict) else v
        return {"contents": [{"role": "user", "parts": [{"text": r.prompt}]}],
                "generationConfig": gen}

    async def _one(self, http: HTTPClient, r: GenRequest) -> GenResult:
        body = self._body(r)
        info: dict[str, Any] = {"endpoint": self.endpoint, "aspect_ratio": self.aspect}
        # Not idempotent: an answer that was lost may still have been billed.
        resp = await http.post(f"/models/{r.model_id}:{self.endpoint}", idempotent=False,
                               retry_5xx=False, json=body)
        info |= {"attempts": resp.attempts, "waited_s": round(resp.waited_s, 3)}
        data = resp.json if isinstance(resp.json, dict) else {}
        rid = data.get("responseId") or resp.request_id
        if data.get("modelVersion"):
            info["model_version"] = data["modelVersion"]
        if self.endpoint == "predict":
            image, refusal = self._from_predict(data, info)
        else:
            image, refusal = self._from_content(data, info)
        if image is None:
            return GenResult(status="refused", refusal_reason=refusal, provider_request_id=rid,
                             info=info)
        size = f"{r.width}x{r.height}"
        cost = self._cost(r.model_id, size, dict(r.params).get("sampleImageSize"), info)
        return GenResult(status="ok", image=image, cost_usd=cost, provider_request_id=rid,
                         info=info)

    @staticmethod
    def _from_predict(data: dict[str, Any], info: dict[str, Any]) -> tuple[bytes | None, str]:
        preds = data.get("predictions") or []
        for p in preds:
            if p.get("bytesBase64Encoded"):
                if p.get("prompt"):
                    info["enhanced_prompt"] = p["prompt"]
                return to_png(base64.b64decode(p["bytesBase64Encoded"])), ""
        reasons = [p["raiFilteredReason"] for p in preds if p.get("raiFilteredReason")]
        if reasons:
            info["refusal_message"] = reasons[0]
        # An empty answer is Imagen's way of saying every image was filtered.
        return None, "RAI_FILTERED"

    @staticmethod
    def _from_content(data: dict[str, Any], info: dict[str, Any]) -> tuple[bytes | None, str]:
        if data.get("usageMetadata"):
            info["usage"] = data["usageMetadata"]
        block = (data.get("promptFeedback") or {}).get("blockReason")
        cands = data.get("candidates") or []
        if block or not cands:
            return None, f"blockReason:{block or 'NO_CANDIDATES'}"
        cand = cands[0]
        finish = str(cand.get("finishReason") or "STOP")
        texts = []
        for part in (cand.get("content") or {}).get("parts") or []:
            blob = part.get("inlineData") or part.get("inline_data")
            if blob and str(blob.get("mimeType", blob.get("mime_type", ""))).startswith("image/"):
                return to_png(base64.b64decode(blob["data"])), ""
            if part.get("text"):
                texts.append(part["text"])
        if texts:
            info["text"] = " ".join(texts)[:500]
        # No image: a safety finish, or the model answered in words (a refusal all the same).
        return None, finish if finish not in FINISH_OK else "NO_IMAGE"
