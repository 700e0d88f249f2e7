"""Google image models through the Gemini API or Vertex AI: Gemini image models
(``:generateContent`` with ``contents`` and ``generationConfig.responseModalities: ["IMAGE"]``).

Imagen (``:predict``) is gone: Google shut every Imagen model down on the Gemini API and on
Vertex AI on 2026-08-17 and names Gemini 3.x image models as the replacements
(https://firebase.google.com/docs/ai-logic/imagen-models-migration), so ``imagen-*`` ids are
refused before any request.

Refusals are results, never retried: an answer blocked at the prompt
(``promptFeedback.blockReason``), finished for a safety reason (``finishReason`` IMAGE_SAFETY,
IMAGE_PROHIBITED_CONTENT, NO_IMAGE, SAFETY ...), or with no image in it.

Two ways in, as google-genai has them:

* the Gemini API (``generativelanguage.googleapis.com/v1beta/models/{model}:...``): the key goes
  in the ``x-goog-api-key`` header, never in the URL;
* Vertex AI (``options.vertex: true``): ``{root}/v1/projects/{project}/locations/{location}/
  publishers/google/models/{model}:...`` with an OAuth bearer token from Application Default
  Credentials (``gcloud auth application-default login``, or a service-account key file named by
  ``GOOGLE_APPLICATION_CREDENTIALS``) through google-auth. Project and location come from the
  options, else ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION`` (as the SDK reads them),
  else the credentials' project and ``global``.

A model Google has shut down (:data:`RETIRED`) is refused before any request, naming its
replacement.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import os
import threading
from collections.abc import Callable
from typing import Any

from harness.errors import ConfigError
from harness.generators.api import APIGenerator, APIOptions, PreflightLine
from harness.generators.base import Generator
from harness.generators.http import (
    ErrorInfo,
    HTTPClient,
    ProviderError,
    aspect_ratio,
    register_secret,
    to_png,
)
from harness.types import GenRequest, GenResult

GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9",
                  "1:8", "8:1", "1:4", "4:1")
"""Aspect ratios of Gemini image models: google-genai's ``ImageConfigAspectRatio`` (generated
from Google's API spec; a test checks this table against it)."""

GEMINI_API_ROOT = "https://generativelanguage.googleapis.com/v1beta"
VERTEX_API_VERSION = "v1"
"""Vertex AI's GA version (google-genai defaults to v1beta1; both serve these calls)."""
VERTEX_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
"""The OAuth scope google-genai asks Application Default Credentials for."""

RETIRED: dict[str, tuple[str, str, str]] = {
    # model: (shut down on, use instead, official source). Imagen: every Imagen model is shut down
    # on both the Gemini API and Vertex AI; Google names the Gemini 3.x image replacements.
    **{m: ("2026-08-17", use, "https://firebase.google.com/docs/ai-logic/imagen-models-migration")
       for m, use in (("imagen-4.0-generate-001", "gemini-3.1-flash-image"),
                      ("imagen-4.0-fast-generate-001", "gemini-3.1-flash-image"),
                      ("imagen-4.0-ultra-generate-001", "gemini-3-pro-image"),
                      ("imagen-3.0-capability-001", "gemini-3.1-flash-image"),
                      ("imagen-3.0-generate-001", "gemini-3.1-flash-image"),
                      ("imagen-3.0-fast-generate-001", "gemini-3.1-flash-image"))},
    "imagen-3.0-generate-002": (
        "2025-11-10", "gemini-3.1-flash-image", "https://ai.google.dev/gemini-api/docs/deprecations"),
    "gemini-2.5-flash-image": (
        "2026-10-02", "gemini-3.1-flash-image", "https://ai.google.dev/gemini-api/docs/deprecations"),
    "gemini-2.5-flash-image-preview": (
        "2026-01-15", "gemini-3.1-flash-image", "https://ai.google.dev/gemini-api/docs/changelog"),
    "gemini-3.1-flash-image-preview": (
        "2026-06-25", "gemini-3.1-flash-image", "https://ai.google.dev/gemini-api/docs/deprecations"),
    "gemini-3-pro-image-preview": (
        "2026-06-25", "gemini-3-pro-image", "https://ai.google.dev/gemini-api/docs/deprecations"),
}
"""Google image models shut down, each with its date, Google's recommended replacement and the
page that says so. The only such table: google-genai carries no shutdown dates."""


def retired(model_id: str, today: datetime.date | None = None) -> str | None:
    """Why ``model_id`` can no longer be called ("X was shut down on DATE; use Y"), or None."""
    hit = RETIRED.get(model_id)
    if hit is None or datetime.date.fromisoformat(hit[0]) > (today or datetime.date.today()):
        return None
    return f"{model_id} was shut down on {hit[0]}; use {hit[1]} (see {hit[2]})"


FINISH_OK = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED", "MAX_TOKENS"})
"""finishReason values that are not a refusal (any other one is: IMAGE_SAFETY,
IMAGE_PROHIBITED_CONTENT, IMAGE_OTHER, NO_IMAGE, IMAGE_RECITATION, SAFETY, PROHIBITED_CONTENT,
BLOCKLIST, SPII, RECITATION, OTHER ...)."""


RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
"""The ``@type`` of the error detail that says how long to wait (google/rpc/error_details.proto:
``RetryInfo.retry_delay``, a ``google.protobuf.Duration``). Gemini's 429 carries it in the body,
``{"error": {"details": [{"@type": ..., "retryDelay": "30s"}]}}``, and sends no Retry-After."""
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
AUTH_REASONS = frozenset({"API_KEY_INVALID"})
"""``ErrorInfo.reason`` values that mean the key itself is refused (Gemini answers a wrong key
with HTTP 400 INVALID_ARGUMENT and this reason)."""


def rpc_duration_s(value: Any) -> float | None:
    """A ``google.protobuf.Duration`` in its JSON form (seconds with an ``s`` suffix and up to
    nine fractional digits: ``"30s"``, ``"1.5s"``, ``"45.837906927s"``) in seconds; None when
    it is not one."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    digits = value[:-1]
    if not digits or not all(c.isdigit() or c in ".-" for c in digits):
        return None
    try:
        seconds = float(digits)
    except ValueError:
        return None
    return max(0.0, seconds)


def google_error(status: int, body: Any, text: str) -> ErrorInfo:
    """``{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED", "details":
    [...]}}`` (google.rpc.Status): the wait from a ``RetryInfo`` detail, and a refused key from
    an ``ErrorInfo`` detail."""
    e = body.get("error") if isinstance(body, dict) else None
    if not isinstance(e, dict):
        return ErrorInfo(None, text or f"HTTP {status}")
    delay, final = None, None
    for d in e.get("details") or []:
        if not isinstance(d, dict):
            continue
        if d.get("@type") == RETRY_INFO:
            delay = rpc_duration_s(d.get("retryDelay"))
        elif d.get("@type") == ERROR_INFO and d.get("reason") in AUTH_REASONS:
            final = "auth"
    return ErrorInfo(str(e["status"]) if e.get("status") else None, str(e.get("message") or text),
                     delay_s=delay, final=final)


def _edit_png_b64(control: Any, width: int, height: int) -> str:
    """Base64 PNG of an edit_image control's file at the request's size."""
    import base64

    from harness.generators.controls import edit_source_png

    return base64.b64encode(edit_source_png(control, width, height)).decode("ascii")


class GoogleImages(APIGenerator, Generator):
    """Gemini image models (``gemini-3.1-flash-image`` ...) on the Gemini API or Vertex AI."""

    kind = "google"
    batch_dependent = False
    provider = "google"
    auth_header = ("x-goog-api-key", "{key}")
    key_help = "your Gemini API key (from https://aistudio.google.com/apikey)"
    request_id_header = "x-request-id"

    @dataclasses.dataclass
    class Options(APIOptions):
        base_url: str | None = None
        """API root (a proxy or the test fake); None: the Gemini API's, or with ``vertex`` the
        Vertex AI root of ``location`` (``https://{location}-aiplatform.googleapis.com/v1``)."""
        api_key_env: str = "GEMINI_API_KEY"
        """Environment variable holding the Gemini API key (not used with ``vertex``)."""
        vertex: bool = False
        """Call Vertex AI with Google Cloud credentials instead of the Gemini API with a key."""
        project: str | None = None
        """Vertex AI: Google Cloud project; None: ``GOOGLE_CLOUD_PROJECT``, else the project of
        the Application Default Credentials."""
        location: str | None = None
        """Vertex AI: region (``us-central1``, ``global`` ...); None: ``GOOGLE_CLOUD_LOCATION``,
        else ``global``."""

    def __init__(self, *, token_source: Callable[[], str] | None = None, **kw: Any) -> None:
        """``token_source``: returns a Vertex AI bearer token (tests inject one; by default
        google-auth's Application Default Credentials make it)."""
        super().__init__(**kw)
        self._token_source = token_source
        why = retired(self.model_id)
        if why:
            raise ConfigError(f"models.{self.name}.model_id: {why}.")
        w, h = int(self.params.get("width", 1024)), int(self.params.get("height", 1024))
        if self.model_id.startswith("imagen"):
            raise ConfigError(
                f"models.{self.name}.model_id: every Imagen model was shut down on 2026-08-17, on "
                "the Gemini API and on Vertex AI; use gemini-3.1-flash-image (or "
                "gemini-3-pro-image for Imagen Ultra) "
                "(see https://firebase.google.com/docs/ai-logic/imagen-models-migration).")
        if not self.model_id.startswith("gemini"):
            raise ConfigError(f"models.{self.name}.model_id: {self.model_id!r} is not a Gemini "
                              "image model (gemini-...-image).")
        self.endpoint = "generateContent"
        ar = aspect_ratio(w, h)
        if ar not in GEMINI_ASPECTS:
            raise ConfigError(f"models.{self.name}.params: {w}x{h} is aspect ratio {ar}; "
                              f"Gemini image models take {', '.join(GEMINI_ASPECTS)}.")
        self.aspect = ar
        self.project: str | None = None
        self.location: str | None = None
        if self.options.base_url is None and not self.options.vertex:
            self.options.base_url = GEMINI_API_ROOT

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self.options.vertex:
            d["api"] = {"provider": self.provider, "vertex": True,
                        "base_url": self.options.base_url or "(from location)",
                        "project": self.project or self.options.project,
                        "location": self.location or self.options.location}
        return d

    def _credentials(self) -> dict[str, str]:
        """The Gemini API key's header; with ``vertex``, no header (each request carries a fresh
        OAuth token, :meth:`_auth_headers`) but the project, location and Vertex AI root."""
        if not self.options.vertex:
            return super()._credentials()
        o = self.options
        project = o.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
        if self._token_source is None:
            self._token_source, adc_project = _adc_token_source(self.name)
            project = project or adc_project
        if not project:
            raise ConfigError(
                f"models.{self.name}: no Google Cloud project for Vertex AI. Set "
                f"models.{self.name}.options.project, or export GOOGLE_CLOUD_PROJECT=...")
        location = o.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global"
        self.project, self.location = project, location
        if o.base_url is None:
            # As google-genai builds it: global and multi-regions have their own hosts.
            host = ("aiplatform.googleapis.com" if location == "global" else
                    f"aiplatform.{location}.rep.googleapis.com" if location in ("us", "eu") else
                    f"{location}-aiplatform.googleapis.com")
            o.base_url = f"https://{host}/{VERTEX_API_VERSION}"
        return {}

    def _path(self, model_id: str) -> str:
        if self.options.vertex:
            return (f"/projects/{self.project}/locations/{self.location}/publishers/google/"
                    f"models/{model_id}:{self.endpoint}")
        return f"/models/{model_id}:{self.endpoint}"

    async def _auth_headers(self) -> dict[str, str] | None:
        """Vertex AI: a bearer token (refreshed by google-auth when near expiry); else None."""
        if not self.options.vertex:
            return None
        source = self._token_source
        assert source is not None
        try:
            token = await asyncio.to_thread(source)
        except Exception as e:  # google-auth's RefreshError, TransportError ...
            raise ProviderError(self.provider, None, "auth", "could not get a Google Cloud "
                                f"access token ({type(e).__name__}); run 'gcloud auth "
                                "application-default login' or check GOOGLE_APPLICATION_"
                                "CREDENTIALS") from None
        # The token is a secret as much as a key: scrubbed from every error, log line and record.
        register_secret(token)
        return {"Authorization": f"Bearer {token}"}

    def error_parser(self, status: int, body: Any, text: str) -> ErrorInfo:
        return google_error(status, body, text)

    def price_args(self, r: GenRequest) -> tuple[str, str | None]:
        # Google prices by the image size tier (512, 1K, 2K, 4K), 1K unless asked otherwise.
        return f"{r.width}x{r.height}", (dict(r.params).get("imageConfig") or {}).get(
            "imageSize", "1K")

    def key_check(self) -> PreflightLine:
        """Gemini API: the key's variable. Vertex AI: Application Default Credentials, looked
        for where google-auth looks first (GOOGLE_APPLICATION_CREDENTIALS, then gcloud's file)."""
        if not self.options.vertex:
            return super().key_check()
        if self._token_source is not None:
            return PreflightLine("key", "ok", "Vertex AI: a token source was given")
        named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        if named:
            ok = os.path.isfile(named)
            return PreflightLine("key", "ok" if ok else "missing", (
                "Vertex AI: GOOGLE_APPLICATION_CREDENTIALS names a file" if ok else
                "Vertex AI: GOOGLE_APPLICATION_CREDENTIALS names no file; point it at a "
                "service-account key file or unset it"))
        cfg = os.environ.get("CLOUDSDK_CONFIG") or os.path.join(
            os.environ.get("APPDATA", "") if os.name == "nt" else os.path.expanduser("~/.config"),
            "gcloud")
        if os.path.isfile(os.path.join(cfg, "application_default_credentials.json")):
            return PreflightLine("key", "ok", "Vertex AI: gcloud's Application Default "
                                 "Credentials file is there")
        return PreflightLine("key", "warn", "Vertex AI: no Application Default Credentials file "
                             "found (run 'gcloud auth application-default login' or export "
                             "GOOGLE_APPLICATION_CREDENTIALS=...); on Google Cloud the metadata "
                             "server may still provide them")

    async def _lookup_model(self, http: HTTPClient) -> PreflightLine:
        """The free model metadata call google-genai's ``models.get`` makes: Gemini API
        ``GET /v1beta/models/{model}``; Vertex AI the publisher model,
        ``GET /v1/publishers/google/models/{model}`` (no project or location in the path)."""
        path = (f"/publishers/google/models/{self.model_id}" if self.options.vertex
                else f"/models/{self.model_id}")
        resp = await http.get(path, headers=await self._auth_headers())
        data = resp.json if isinstance(resp.json, dict) else {}
        methods = data.get("supportedGenerationMethods")
        if isinstance(methods, list) and "generateContent" not in methods:
            return PreflightLine("model", "warn", f"google lists {self.model_id} without "
                                 "generateContent among its supportedGenerationMethods")
        return PreflightLine("model", "ok", f"google lists {data.get('name') or self.model_id}"
                             + (f" (version {data['versionId']})" if data.get("versionId") else ""))

    def _body(self, r: GenRequest) -> dict[str, Any]:
        extra = {k: v for k, v in dict(r.params).items() if v is not None}
        gen = {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": self.aspect}}
        for k, v in extra.items():  # imageConfig merges (imageSize next to aspectRatio)
            gen[k] = (gen.get(k, {}) | v) if isinstance(v, dict) else v
        parts: list[dict[str, Any]] = [{"text": r.prompt}]
        edit = next((c for c in r.controls if c.get("kind") == "edit_image"), None)
        if edit is not None:
            # Image editing: the instruction, then the source image inline (base64 PNG at the
            # request's size), as Gemini's image-editing examples send them.
            parts.append({"inlineData": {"mimeType": "image/png",
                                         "data": _edit_png_b64(edit, r.width, r.height)}})
        return {"contents": [{"role": "user", "parts": parts}], "generationConfig": gen}

    async def _one(self, http: HTTPClient, r: GenRequest) -> GenResult:
        body = self._body(r)
        info: dict[str, Any] = {"endpoint": self.endpoint, "aspect_ratio": self.aspect}
        # Not idempotent: an answer that was lost may still have been billed.
        resp = await http.post(self._path(r.model_id), idempotent=False, retry_5xx=False,
                               json=body, headers=await self._auth_headers())
        info |= {"attempts": resp.attempts, "waited_s": round(resp.waited_s, 3)}
        data = resp.json if isinstance(resp.json, dict) else {}
        rid = data.get("responseId") or resp.request_id
        if data.get("modelVersion"):
            info["model_version"] = data["modelVersion"]
        image, refusal = self._from_content(data, info)
        if image is None:
            return GenResult(status="refused", refusal_reason=refusal, provider_request_id=rid,
                             info=info)
        size = f"{r.width}x{r.height}"
        # Google prices by the image size tier (512, 1K, 2K, 4K), 1K unless asked otherwise.
        tier = (dict(r.params).get("imageConfig") or {}).get("imageSize", "1K")
        cost = self._cost(r.model_id, size, tier, info)
        return GenResult(status="ok", image=image, cost_usd=cost, provider_request_id=rid,
                         info=info)

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


def _adc_token_source(name: str) -> tuple[Callable[[], str], str | None]:
    """A bearer-token source from Application Default Credentials (the user's gcloud login, a
    service-account key file in ``GOOGLE_APPLICATION_CREDENTIALS``, or the metadata server),
    and the credentials' project."""
    try:
        import google.auth
        import google.auth.exceptions
        from google.auth.transport.requests import Request
    except ImportError:
        raise ConfigError(f"models.{name}: Vertex AI needs google-auth for credentials. Install "
                          "it with: pip install 'google-auth[requests]'") from None
    try:
        creds, project = google.auth.default(scopes=[VERTEX_SCOPE])
    except google.auth.exceptions.DefaultCredentialsError:
        raise ConfigError(
            f"models.{name}: no Google Cloud credentials found for Vertex AI. Run 'gcloud auth "
            "application-default login', or export GOOGLE_APPLICATION_CREDENTIALS=/path/to/"
            "service-account.json") from None
    lock = threading.Lock()

    def token() -> str:
        with lock:  # one refresh at a time; google-auth refreshes shortly before expiry
            if not creds.valid:
                creds.refresh(Request())
            return str(creds.token)

    return token, project
