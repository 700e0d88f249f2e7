"""OpenAI Images API (gpt-image-1, dall-e-3): generations, and edits for inpainting.

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

from harness.errors import ConfigError
from harness.generators.api import APIGenerator, APIOptions
from harness.generators.base import Generator
from harness.generators.http import HTTPClient, ProviderError, to_png
from harness.types import GenRequest, GenResult

SIZES = {
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
"""Sizes each model family accepts (https://platform.openai.com/docs/api-reference/images)."""

QUALITIES = {
    "gpt-image": ("low", "medium", "high", "auto"),
    "dall-e-3": ("standard", "hd"),
    "dall-e-2": ("standard",),
}

REFUSAL_CODES = frozenset({"moderation_blocked", "content_policy_violation",
                           "content_filter", "safety_violations"})
"""Error codes that mean the provider declined the prompt: a result, never retried."""


def _family(model_id: str) -> str:
    return "gpt-image" if model_id.startswith("gpt-image") else model_id


class OpenAIImages(APIGenerator, Generator):
    """OpenAI's image models through ``/v1/images/generations`` and ``/v1/images/edits``."""

    kind = "openai"
    batch_dependent = False
    provider = "openai"
    auth_header = ("Authorization", "Bearer {key}")
    key_help = "your OpenAI API key (sk-...)"
    request_id_header = "x-request-id"

    @dataclasses.dataclass
    class Options(APIOptions):
        base_url: str = "https://api.openai.com/v1"
        """API root (a proxy, Azure-compatible gateway or the test fake)."""
        api_key_env: str = "OPENAI_API_KEY"
        """Environment variable holding the key (the key itself never goes into config)."""
        timeout_s: float = 180.0
        """Seconds to wait for one answer (gpt-image-1 at high quality can take a minute+)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        fam = _family(self.model_id)
        size = f"{self.params.get('width', 1024)}x{self.params.get('height', 1024)}"
        valid = SIZES.get(fam)
        if valid is not None and size not in valid:
            raise ConfigError(
                f"models.{self.name}.params: {self.model_id} does not make {size} images. "
                f"Valid width x height: {', '.join(valid)}.")
        q = self.request_params().get("quality")
        if q is not None and fam in QUALITIES and q not in QUALITIES[fam]:
            raise ConfigError(f"models.{self.name}.params.extra.quality: {q!r} is not a quality "
                              f"of {self.model_id}. Valid: {', '.join(QUALITIES[fam])}.")

    # -- one request ----------------------------------------------------------------------

    def _body(self, r: GenRequest) -> dict[str, Any]:
        fam = _family(r.model_id)
        body: dict[str, Any] = {"model": r.model_id, "prompt": r.prompt,
                                "size": f"{r.width}x{r.height}", "n": 1}
        for k, v in dict(r.params).items():
            if v is not None:
                body[k] = v
        if fam != "gpt-image":  # gpt-image always answers base64 and rejects the parameter
            body["response_format"] = "b64_json"
        return body

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
            return GenResult(status="error", error=f"openai: unexpected answer ({type(e).__name__}: "
                             f"{e}); no b64_json image in data[0]", latency_s=latency,
                             provider_request_id=resp.request_id, info=info)
        if item.get("revised_prompt"):
            info["revised_prompt"] = item["revised_prompt"]
        if resp.json.get("usage"):
            info["usage"] = resp.json["usage"]
        quality = body.get("quality") or ("standard" if _family(r.model_id) == "dall-e-3" else None)
        cost = self._cost(r.model_id, str(body["size"]), quality, info)
        return GenResult(status="ok", image=image, latency_s=latency, cost_usd=cost,
                         provider_request_id=resp.request_id, info=info)

    def _edit_form(self, r: GenRequest, body: dict[str, Any],
                   controls: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, Any]]:
        from harness.generators.controls import find_input, load_mask, load_rgb

        extra = set(controls) - {"init_image", "mask"}
        if extra:
            raise ValueError(f"{r.model_id} takes an init_image (and mask) only; this prompt "
                             f"has {', '.join(sorted(extra))}")
        if "init_image" not in controls:
            raise ValueError("a mask needs an init_image (the picture to inpaint)")
        if _family(r.model_id) == "dall-e-3":
            raise ValueError("dall-e-3 has no edits endpoint; use gpt-image-1 for inpainting")
        init = controls["init_image"]
        image = load_rgb(find_input(init["sha256"], init.get("path")), r.width, r.height)
        files: dict[str, Any] = {"image": ("image.png", _png(image), "image/png")}
        if "mask" in controls:
            m = controls["mask"]
            mask = load_mask(find_input(m["sha256"], m.get("path")), r.width, r.height)
            files["mask"] = ("mask.png", _png(openai_mask(mask)), "image/png")
        data = {k: str(v) for k, v in body.items() if k != "response_format"}
        return data, files


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

