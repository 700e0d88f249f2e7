"""OpenAI Images API (the GPT image models): generations, and edits for inpainting.

Which models exist, which are retired, and which sizes, qualities and body fields each takes
come from the installed official ``openai`` SDK's types (:mod:`harness.generators.openai_spec`),
not from a table here: a config naming a model the SDK lists as retired or shut down fails when
it is built, before any request, with the SDK's date and replacement.

The key is read from the environment variable named by ``options.api_key_env`` when the first
batch runs (constructing never needs it) and lives only in the HTTP client's headers: never in
describe(), records, logs or reprs. Requests of a batch are sent concurrently (``batch_size``
of them, at most ``options.concurrency`` in flight), and every paid answer is recorded in the
journal the moment it arrives (:class:`harness.generators.api.APIGenerator`).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import time
from collections.abc import Mapping
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.generators.api import APIGenerator, APIOptions, PreflightLine, UnreadableAnswer
from harness.generators.base import Generator
from harness.generators.http import ErrorInfo, HTTPClient, ProviderError, default_error, to_png
from harness.generators.openai_spec import ImagesSpec, sdk_spec
from harness.types import GenRequest, GenResult

BODY_FIELDS = frozenset({"model", "prompt", "size", "n", "stream"})
"""Fields the adapter sets itself (or never: it reads one JSON answer, not a stream);
``params.extra`` may set any other field the SDK's ``ImageGenerateParams`` lists."""

REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation",
                           "content_filter", "safety_violations"})
"""Error codes that mean the provider declined the prompt: a result, never retried."""

BILLING_CODES = frozenset({"insufficient_quota", "credit_balance_exhausted",
                           "organization_spend_limit_exceeded", "project_spend_limit_exceeded",
                           "organization_usage_limit_exceeded"})
"""``error.type`` / ``error.code`` values of a refusal for money, not speed: a 429 with type
``insufficient_quota`` ("You exceeded your current quota, please check your plan and billing
details": https://help.openai.com/en/articles/6891831) and the codes that name which limit
(OpenAI's error-codes guide, as quoted by
https://learn.microsoft.com/microsoft-cloud/dev/dev-proxy/concepts/openai-insufficient-quota).
Retrying cannot help until someone adds credit or raises the limit."""


def openai_error(status: int, body: Any, text: str) -> ErrorInfo:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``: billing refusals (a 429 like
    a rate limit) are final; refusals of the prompt are final (results, not errors)."""
    code, message = default_error(status, body, text)
    e = body.get("error") if isinstance(body, dict) else None
    kinds = {str(e.get(k)) for k in ("type", "code") if e.get(k)} if isinstance(e, dict) else set()
    if kinds & BILLING_CODES:
        return ErrorInfo(code, message, retry=False, final="billing")
    if code == "invalid_api_key":
        return ErrorInfo(code, message, retry=False, final="auth")
    if kinds & REFUSAL_CODES:
        return ErrorInfo(code, message, retry=False, final="policy")
    return ErrorInfo(code, message)


class OpenAIImages(APIGenerator, Generator):
    """OpenAI's image models through ``/v1/images/generations`` and ``/v1/images/edits``."""

    kind = "openai"
    batch_dependent = False
    provider = "openai"
    auth_header = ("Authorization", "Bearer {key}")
    key_help = "your OpenAI API key (sk-...)"
    request_id_header = "x-request-id"

    def error_parser(self, status: int, body: Any, text: str) -> ErrorInfo:
        return openai_error(status, body, text)

    @dataclasses.dataclass
    class Options(APIOptions):
        base_url: str = "https://api.openai.com/v1"
        """API root (a proxy, Azure-compatible gateway or the test fake)."""
        api_key_env: str = "OPENAI_API_KEY"
        """Environment variable holding the key (the key itself never goes into config)."""
        timeout_s: float = 180.0
        """Seconds to wait for one answer (high quality and large sizes can take a minute+)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        check_config(self.name, self.model_id, int(self.params.get("width", 1024)),
                     int(self.params.get("height", 1024)), self.request_params(), sdk_spec())

    # -- one request ----------------------------------------------------------------------

    def _body(self, r: GenRequest) -> dict[str, Any]:
        # No response_format: the SDK calls it a legacy field of retired models that GPT image
        # models do not take (they always answer base64); check_config refuses it in extra.
        body: dict[str, Any] = {"model": r.model_id, "prompt": r.prompt,
                                "size": f"{r.width}x{r.height}", "n": 1}
        for k, v in dict(r.params).items():
            if v is not None:
                body[k] = v
        return body

    def price_args(self, r: GenRequest) -> tuple[str, str | None]:
        return f"{r.width}x{r.height}", dict(r.params).get("quality")

    async def _lookup_model(self, http: HTTPClient) -> PreflightLine:
        """``GET /models/{model}`` (the SDK's ``client.models.retrieve``: free), answered with
        the SDK's ``Model``: ``id``, ``owned_by`` and ``shutdown_date`` when one is announced."""
        import datetime as dt

        resp = await http.get(f"/models/{self.model_id}")
        data = resp.json if isinstance(resp.json, dict) else {}
        if data.get("id") != self.model_id:
            return PreflightLine("model", "warn", f"GET /models/{self.model_id} answered "
                                 f"{str(data)[:120]}")
        shutdown = data.get("shutdown_date")
        if shutdown:
            try:
                past = dt.date.fromisoformat(str(shutdown)[:10]) <= dt.date.today()
            except ValueError:
                past = False
            return PreflightLine("model", "missing" if past else "warn",
                                 f"openai lists {self.model_id} with shutdown_date {shutdown}")
        return PreflightLine("model", "ok", f"openai lists {self.model_id} "
                             f"(owned by {data.get('owned_by')})")

    async def _one(self, http: HTTPClient, r: GenRequest) -> GenResult:
        t0 = time.perf_counter()
        body = self._body(r)
        info: dict[str, Any] = {"size": body["size"], "quality": body.get("quality")}
        try:
            controls = {c["kind"]: c for c in r.controls}
            if controls:
                endpoint = "edits"
                data, files = self._edit_form(r, body, controls)
                resp = await http.post("/images/edits", idempotent=False, retry_5xx=False,
                                       data=data, files=files)
            else:
                endpoint = "generations"
                # Not idempotent: a submit that reached the server (a 5xx answer, a read timeout)
                # may still have made and billed an image, so it is not retried within the run;
                # it becomes an error result. Only 408/429 and never-sent requests are retried.
                resp = await http.post("/images/generations", idempotent=False, retry_5xx=False,
                                       json=body)
        except ProviderError as e:
            res_info = info | {"attempts": e.attempts, "http_status": e.status, "code": e.code}
            if e.code in REFUSAL_CODES:
                return GenResult(status="refused", refusal_reason=e.code, error=None,
                                 latency_s=time.perf_counter() - t0,
                                 provider_request_id=e.request_id,
                                 info=res_info | {"message": e.message})
            return GenResult(status="error", error=str(e), latency_s=time.perf_counter() - t0,
                             provider_request_id=e.request_id, info=res_info)
        except (ValueError, OSError) as e:  # unreadable control input
            return GenResult(status="error", error=f"{type(e).__name__}: {e}",
                             latency_s=time.perf_counter() - t0, info=info)
        latency = time.perf_counter() - t0
        info |= {"endpoint": endpoint, "attempts": resp.attempts, "waited_s": round(resp.waited_s, 3)}
        try:
            item = resp.json["data"][0]
            image = to_png(base64.b64decode(item["b64_json"]))
        except (KeyError, IndexError, TypeError, ValueError, OSError) as e:
            raise UnreadableAnswer(f"{type(e).__name__}: {e}; no b64_json image in data[0]",
                                   resp.request_id, info) from e
        if item.get("revised_prompt"):
            info["revised_prompt"] = item["revised_prompt"]
        if resp.json.get("usage"):
            info["usage"] = resp.json["usage"]
        cost = self._cost(r.model_id, str(body["size"]), body.get("quality"), info)
        return GenResult(status="ok", image=image, latency_s=latency, cost_usd=cost,
                         provider_request_id=resp.request_id, info=info)

    def _edit_form(self, r: GenRequest, body: dict[str, Any],
                   controls: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, Any]]:
        from harness.generators.controls import find_input, load_mask, load_rgb

        extra = set(controls) - {"init_image", "mask", "edit_image"}
        if extra:
            raise ValueError(f"{r.model_id} takes an init_image (and mask) or an edit_image "
                             f"only; this prompt has {', '.join(sorted(extra))}")
        if "edit_image" in controls and len(controls) > 1:
            raise ValueError("an edit_image (instruction edit) takes no other control input")
        # An instruction edit is the same endpoint: the source image and the instruction as
        # prompt, no mask (the model decides what to change).
        init = controls.get("edit_image") or controls.get("init_image")
        if init is None:
            raise ValueError("a mask needs an init_image (the picture to inpaint)")
        image = load_rgb(find_input(init["sha256"], init.get("path")), r.width, r.height)
        files: dict[str, Any] = {"image": ("image.png", _png(image), "image/png")}
        if "mask" in controls:
            m = controls["mask"]
            mask = load_mask(find_input(m["sha256"], m.get("path")), r.width, r.height)
            files["mask"] = ("mask.png", _png(openai_mask(mask)), "image/png")
        data = {k: str(v) for k, v in body.items()}
        return data, files


def check_config(name: str, model_id: str, width: int, height: int, extra: Mapping[str, Any],
                 spec: ImagesSpec) -> None:
    """Refuse, before any request, what the SDK says OpenAI will not take: a retired or unknown
    model, a size or quality the model does not make, a body field it does not have."""
    where = f"models.{name}"
    gone = spec.retired.get(model_id)
    if gone is not None:
        current = ", ".join(gone.replacements or spec.current)
        raise ConfigError(f"{where}.model_id: {gone.message()} (current models: {current}). "
                          f"Source: {gone.model!r} is listed as deprecated by the installed "
                          f"openai SDK {spec.sdk_version} (openai/types/image_model.py).")
    if model_id not in spec.models:
        raise ConfigError(f"{where}.model_id: {model_id!r} is not an image model of the installed "
                          f"openai SDK {spec.sdk_version}.{did_you_mean(model_id, spec.current)} "
                          "If OpenAI released it after this SDK, upgrade: pip install -U openai")
    bad_size = spec.size_error(model_id, width, height)
    if bad_size:
        raise ConfigError(f"{where}.params: {model_id} does not make {width}x{height} images. "
                          f"{bad_size}")
    for key in extra:
        if key in spec.legacy_params:
            raise ConfigError(f"{where}.params.extra.{key}: the openai SDK calls {key} a legacy "
                              "field of retired models that GPT image models do not take; "
                              "remove it (they always answer base64).")
        if key in BODY_FIELDS or key not in spec.params:
            valid = sorted(spec.params - BODY_FIELDS - spec.legacy_params)
            raise ConfigError(f"{where}.params.extra.{key}: not a field the harness can set in "
                              f"an Images API request.{did_you_mean(key, valid)}")
    q = extra.get("quality")
    valid_q = spec.qualities_of(model_id)
    if q is not None and q not in valid_q:
        why = (" (the SDK lists it as a quality of retired DALL-E models only)"
               if q in spec.deprecated_qualities else "")
        raise ConfigError(f"{where}.params.extra.quality: {q!r} is not a quality of "
                          f"{model_id}{why}. Valid: {', '.join(valid_q)}.")


def openai_mask(mask: Any) -> Any:
    """Harness mask (L, white = area to edit) -> OpenAI mask (RGBA, transparent = area to edit)."""
    from PIL import Image

    alpha = mask.convert("L").point(lambda v: 0 if v >= 128 else 255)
    out = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    out.putalpha(alpha)
    return out


def _png(im: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()

