"""Stability AI's v2beta stable-image generate API (Stable Image Core, Ultra, SD 3.5).

``POST /v2beta/stable-image/generate/{core|ultra|sd3}`` with a multipart form. The model id
picks the service: ``stable-image-core``, ``stable-image-ultra``, or an SD 3.5 model name
(``sd3.5-large``, ``sd3.5-large-turbo``, ``sd3.5-medium``, ``sd3.5-flash``) sent as the form's
``model``. Width and height give the aspect ratio (the service picks the pixels, ~1 MP). The
harness seed is sent, so a run is reproducible, and the seed the service used is recorded.

Refusals, stored as results and never retried: ``finish-reason: CONTENT_FILTERED`` on a 200
answer, and a 403 ``content_moderation`` answer.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from harness.errors import ConfigError
from harness.generators.api import APIGenerator, APIOptions
from harness.generators.base import Generator
from harness.generators.http import ErrorInfo, HTTPClient, ProviderError, aspect_ratio, to_png
from harness.types import GenRequest, GenResult

ASPECTS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
SERVICES = {"stable-image-core": "core", "stable-image-ultra": "ultra",
            **{m: "sd3" for m in SD3_MODELS}}
REFUSAL_CODES = frozenset({"content_moderation"})


LOCKOUT_S = 60.0
"""Stability's stated lockout after a rate limit: "150 requests per 10 seconds. Exceeding this
limit results in a 429 response, followed by a timeout lasting 60 seconds"
(https://stabilityplatform.freshdesk.com/support/solutions/articles/150000186026). Retrying
sooner only meets the same lockout, so a 429 waits it out (all requests of the model)."""


def stability_error(status: int, body: Any, text: str,
                     lockout_s: float = LOCKOUT_S) -> ErrorInfo:
    """``{"id": ..., "name": "bad_request", "errors": ["prompt: cannot be empty"]}``; a 429
    waits out the lockout; a refused prompt (``content_moderation``) is final."""
    code, msg = None, text or f"HTTP {status}"
    if isinstance(body, dict) and ("name" in body or "errors" in body):
        errs = body.get("errors") or []
        msg = ("; ".join(str(e) for e in errs) if isinstance(errs, list) else str(errs)) or msg
        code = str(body["name"]) if body.get("name") else None
    if status == 429:
        return ErrorInfo(code, msg, delay_s=lockout_s)
    if code in REFUSAL_CODES:
        return ErrorInfo(code, msg, retry=False, final="policy")
    return ErrorInfo(code, msg)


class StabilityImages(APIGenerator, Generator):
    """Stable Image Core / Ultra and SD 3.5 through Stability's REST API."""

    kind = "stability"
    batch_dependent = False
    provider = "stability"
    auth_header = ("Authorization", "Bearer {key}")
    key_help = "your Stability AI key (sk-..., from https://platform.stability.ai/account/keys)"

    @dataclasses.dataclass
    class Options(APIOptions):
        base_url: str = "https://api.stability.ai"
        """API root (a proxy or the test fake)."""
        api_key_env: str = "STABILITY_API_KEY"
        """Environment variable holding the key."""
        response: str = "image"
        """``image`` (``accept: image/*``: raw bytes, finish reason and seed in headers) or
        ``json`` (base64 in a JSON body)."""
        lockout_s: float = LOCKOUT_S
        """Seconds a 429 waits before the next request (Stability's stated lockout, unless the
        answer carries a Retry-After)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.model_id not in SERVICES:
            raise ConfigError(f"models.{self.name}.model_id: unknown Stability model "
                              f"{self.model_id!r}. Valid: {', '.join(SERVICES)}.")
        w, h = int(self.params.get("width", 1024)), int(self.params.get("height", 1024))
        self.aspect = aspect_ratio(w, h)
        if self.aspect not in ASPECTS:
            raise ConfigError(f"models.{self.name}.params: {w}x{h} is aspect ratio "
                              f"{self.aspect}; Stability takes {', '.join(ASPECTS)}.")
        if self.options.response not in ("image", "json"):
            raise ConfigError(f"models.{self.name}.options.response: {self.options.response!r}; "
                              "use image or json.")

    def error_parser(self, status: int, body: Any, text: str) -> ErrorInfo:
        return stability_error(status, body, text, self.options.lockout_s)

    def _form(self, r: GenRequest) -> dict[str, str]:
        form = {"prompt": r.prompt, "aspect_ratio": self.aspect, "output_format": "png",
                "seed": str(r.seed)}
        if r.negative_prompt:
            form["negative_prompt"] = r.negative_prompt
        if SERVICES[r.model_id] == "sd3":
            form["model"] = r.model_id
            if r.guidance is not None:
                form["cfg_scale"] = str(r.guidance)
        for k, v in dict(r.params).items():
            if v is not None:
                form[k] = str(v)
        return form

    async def _one(self, http: HTTPClient, r: GenRequest) -> GenResult:
        service = SERVICES[r.model_id]
        form = self._form(r)
        accept = "image/*" if self.options.response == "image" else "application/json"
        info: dict[str, Any] = {"service": service, "aspect_ratio": self.aspect}
        try:
            # The form must go as multipart/form-data: an empty file part makes httpx send it so.
            resp = await http.post(f"/v2beta/stable-image/generate/{service}", idempotent=False,
                                   retry_5xx=False, data=form, files={"none": ("", b"")},
                                   headers={"accept": accept})
        except ProviderError as e:
            if e.code in REFUSAL_CODES:
                return GenResult(status="refused", refusal_reason=e.code,
                                 provider_request_id=e.request_id,
                                 info=info | {"refusal_message": e.message, "http_status": e.status})
            raise
        info |= {"attempts": resp.attempts, "waited_s": round(resp.waited_s, 3)}
        if isinstance(resp.json, dict):
            finish = str(resp.json.get("finish_reason") or "SUCCESS")
            seed = resp.json.get("seed")
            raw = base64.b64decode(resp.json["image"]) if finish == "SUCCESS" else b""
        else:
            finish = resp.headers.get("finish-reason", "SUCCESS")
            seed = resp.headers.get("seed")
            raw = resp.content
        if seed is not None:
            info["seed"] = int(seed)
        if finish == "CONTENT_FILTERED":
            return GenResult(status="refused", refusal_reason=finish,
                             provider_request_id=resp.request_id, info=info)
        if finish != "SUCCESS":
            return GenResult(status="error", error=f"stability: finish reason {finish}",
                             provider_request_id=resp.request_id, info=info)
        cost = self._cost(r.model_id, f"{r.width}x{r.height}", None, info)
        return GenResult(status="ok", image=to_png(raw), cost_usd=cost,
                         provider_request_id=resp.request_id, info=info)
