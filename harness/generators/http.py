"""The async HTTP layer shared by closed-API adapters.

One :class:`HTTPClient` per generator holds the provider's settings (base URL, timeouts, retry
budget, concurrency, requests-per-minute). For each batch the adapter opens a
:meth:`HTTPClient.session` inside :func:`run_sync` (one ``asyncio.run`` per batch) and sends
its requests concurrently through it.

Retry policy (the part that costs money when wrong):

* Connect errors and connect/pool timeouts are always retried: the request never reached the
  server, so nothing was submitted or billed.
* 408 and 429 are retried: the provider refused the request before doing any work. The wait is
  the provider's when it states one: ``retry-after-ms`` (OpenAI), ``Retry-After`` (seconds or
  an HTTP date), else a delay the adapter's error parser read from the body (Gemini's
  ``google.rpc.RetryInfo``) or from the provider's documented lockout (Stability's 60 s). A
  stated wait pauses every request of the client, not only the one that was refused.
* 5xx, read/write timeouts and connections dropped mid-answer are retried only for calls marked
  ``idempotent=True`` (or ``retry_5xx=True`` for 5xx, where the provider documents that a
  failed request did no billable work). A paid submit that may have started is never sent twice.
* 400, 401, 402, 403, 404, 422 (and every other 4xx) are never retried; neither is an answer
  the adapter's error parser calls final (:class:`ErrorInfo`: OpenAI's ``insufficient_quota``
  429, billing, auth) or one with ``x-should-retry: false`` (OpenAI's header, as its SDK obeys).
* After an auth or billing refusal (401, 402, or an answer the parser marks ``auth`` /
  ``billing``) the client sends no more paid (non-idempotent) requests: they fail at once with
  code ``circuit_open``. :attr:`HTTPClient.halt` is the same switch for the adapter's circuit
  breaker (:class:`harness.generators.api.APIGenerator`).

Errors carry the status code and the provider's error code and message, never headers, and
every secret the client was given is scrubbed from them (:func:`scrub`: any substring of 6 or
more characters of a key, masked echoes such as ``sk-abc***...wxyz``, key-shaped strings, URL
query strings). Log records are scrubbed the same way, and httpx's per-request INFO lines (which
carry signed result URLs) are kept out of the logs.

httpx is imported only when a session opens, so adapters construct without the ``api`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

NEVER_RETRY = frozenset({400, 401, 402, 403, 404, 422})
"""Statuses that mean the request itself is wrong (or unpaid, or unauthorised): retrying
cannot help."""

NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout", "circuit_open"})
"""Error codes of requests that were never sent (httpx's errors raised before sending, and
requests held back by :attr:`HTTPClient.halt`): the server never saw them."""

ACCOUNT_FINAL = frozenset({"auth", "billing"})
"""Final reasons that hold for every later request with the same key: after one, the client
sends no more paid requests."""

_KEY_LIKE = re.compile(r"\b(?:sk|r8)[-_](?=[A-Za-z0-9_\-]*\d)[A-Za-z0-9_\-]{12,}")
"""Strings shaped like API keys (OpenAI ``sk-...``, Stability ``sk-...``, Replicate ``r8_...``:
a prefix, then 12+ key characters with a digit among them): scrubbed from provider messages
even when they are not our key. Model names (``fal_flux_dev``) do not match."""

_MASKED = re.compile(r"[A-Za-z0-9_\-]*\*{3,}(?:(?:\.{2,3}|\u2026)\**)?[A-Za-z0-9_\-]*")
"""A key echoed with its middle masked: ``sk-abc***...wxyz``, ``zz9PLAN***\u20261b4d``,
``sk-VKMIs*****wjh3`` (OpenAI's 401 echoes the first 8 and last 4 characters)."""

_URL_QUERY = re.compile(r"(\bhttps?://[^\s?#'\"<>]+)\?[^\s'\"<>]*")
"""A URL's query string (signed result URLs carry their signature there)."""

REDACTED = "***"


@dataclass(frozen=True)
class ErrorInfo:
    """What a provider's error answer means, as the adapter's error parser reads it.

    An error parser returns this (or a plain ``(code, message)`` tuple, which means "decide by
    the status code")."""

    code: str | None
    """The provider's error code (``insufficient_quota``, ``RESOURCE_EXHAUSTED`` ...)."""
    message: str
    """The provider's message (scrubbed of secrets by the client)."""
    retry: bool | None = None
    """False: never retry (whatever the status); True: the provider refused before doing any
    work, retry like a 429; None: decide by the status code."""
    delay_s: float | None = None
    """Seconds the provider asks to wait before a retry, read from the body or its documented
    lockout (a ``Retry-After`` header, when present, wins)."""
    final: str | None = None
    """Why the error is final, when it is: ``auth``, ``billing``, ``policy``, ``quota`` ...
    (``auth`` and ``billing`` stop the client's later paid requests)."""


class ProviderError(Exception):
    """A provider call that failed for good (after any retries).

    Attributes:
        status: HTTP status, or None when no answer came (timeout, connection error, not sent).
        code: The provider's error code (``moderation_blocked``, ``invalid_api_key`` ...), the
            httpx error's name, or ``circuit_open`` (held back: see :attr:`HTTPClient.halt`).
        message: The provider's message, with secrets scrubbed.
        attempts: How many times the request was sent.
        request_id: The provider's request id, when the answer carried one.
        final: Why it was not retried, when the provider's answer says it is final (``auth``,
            ``billing``, ``policy`` ...).
    """

    def __init__(self, provider: str, status: int | None, code: str | None, message: str,
                 attempts: int = 1, request_id: str | None = None,
                 final: str | None = None) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = message
        self.attempts = attempts
        self.request_id = request_id
        self.final = final
        self.never_reached = status is None and code in NOT_SENT
        """True when the request provably never reached the server (nothing was submitted)."""
        super().__init__(message)

    def __str__(self) -> str:  # built when read: ``message`` may be amended after raising
        if self.code == "circuit_open":
            return f"{self.provider}: not sent: {self.message}"
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        final = f" ({self.final} error: not retried)" if self.final else ""
        return (f"{self.provider}: {where}{f' [{self.code}]' if self.code else ''}: "
                f"{self.message}{final} (after {self.attempts} "
                f"attempt{'s' if self.attempts != 1 else ''})")


@dataclass
class Response:
    """A successful (2xx) answer."""

    status: int
    json: Any
    """Parsed JSON body (None when the body is not JSON)."""
    request_id: str | None
    """The provider's request id header, if any (the only header kept)."""
    attempts: int
    """Times the request was sent (1 = no retry)."""
    waited_s: float
    """Seconds spent waiting between attempts (backoff and Retry-After)."""
    content: bytes = field(default=b"", repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """The answer's headers, lower-cased (the server's, never the ones we sent)."""


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        with contextlib.suppress(ValueError):
            return max(0.0, float(ms) / 1000.0)
    ra = headers.get("retry-after")
    if not ra:
        return None
    try:
        return max(0.0, float(ra))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


MIN_SECRET_PART = 6
"""Any run of this many characters of a secret is scrubbed (a key cut in two, a prefix echoed)."""


def _secret_spans(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of ``text`` that are substrings of ``secret`` at least ``MIN_SECRET_PART`` long
    (the whole secret when it is shorter), longest match first from each position."""
    n = min(MIN_SECRET_PART, len(secret))
    grams = {secret[i:i + n] for i in range(len(secret) - n + 1)}
    spans, i = [], 0
    while i <= len(text) - n:
        if text[i:i + n] in grams:
            j = i + n
            while j < len(text) and text[i:j + 1] in secret:
                j += 1
            spans.append((i, j))
            i = j
        else:
            i += 1
    return spans


def scrub(text: str, secrets: tuple[str, ...] | frozenset[str] = (), *,
          registered: bool = True) -> str:
    """``text`` without secrets: masked key echoes (``sk-abc***...wxyz``), every substring of
    6+ characters of each of ``secrets`` (and, with ``registered``, of every key registered
    with :func:`register_secret`), key-shaped strings and URL query strings are replaced."""
    if not text:
        return text
    # Whole shapes first (an echo, a key-like token), so that a known piece of a key replaced
    # inside one cannot leave the rest of it standing.
    text = _KEY_LIKE.sub(REDACTED, _MASKED.sub(REDACTED, text))
    for s in {*secrets, *(_SECRETS if registered else ())}:
        if s:
            spans = _secret_spans(text, s)
            for a, b in reversed(spans):
                text = text[:a] + REDACTED + text[b:]
    return _URL_QUERY.sub(r"\1?" + REDACTED, text)


def scrub_obj(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """:func:`scrub` applied to every string in nested dicts, lists and tuples."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: scrub_obj(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_obj(v, secrets) for v in value)
    return value


_SECRETS: set[str] = set()
_LOG_GUARD: list[bool] = []


def register_secret(value: str) -> None:
    """Scrub ``value`` from every later log record of this process and every :func:`scrub`
    (a key read from the environment). Also keeps httpx's request lines out of the logs."""
    if value and len(value) >= 4:
        _SECRETS.add(value)
    _guard_logs()


def forget_secrets() -> None:
    """Drop every registered secret (a long-lived process that switched keys; test isolation:
    one test's planted key must not scrub words out of another's messages)."""
    _SECRETS.clear()


def _guard_logs() -> None:
    """Once per process: scrub every log record as it is made (whatever handler writes it:
    the console, run.log), and keep httpx's INFO line per request (``HTTP Request: GET
    https://...?...&sig=...``) out: it carries signed result URLs."""
    if _LOG_GUARD:
        return
    _LOG_GUARD.append(True)
    httpx_log = logging.getLogger("httpx")
    if httpx_log.level == logging.NOTSET:  # a user who set it explicitly keeps their level
        httpx_log.setLevel(logging.WARNING)
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if _SECRETS or record.name.startswith(("httpx", "httpcore")):
            try:
                msg = record.getMessage()
            except Exception:  # a malformed record: leave it to logging's own error path
                return record
            clean = scrub(msg)
            if clean != msg:
                record.msg, record.args = clean, None
            if record.exc_info and not record.exc_text:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


class RateLimiter:
    """Spaces request starts at least ``60 / rpm`` seconds apart (across batches)."""

    def __init__(self, rpm: float | None) -> None:
        self.interval = 60.0 / rpm if rpm else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:  # reserving a slot is synchronous: no await between read and write
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class HTTPClient:
    """Settings and retry policy for one provider; open a :meth:`session` per batch.

    Args:
        provider: Name used in errors and logs.
        base_url: Prefix of every path.
        headers: Headers sent with every request (auth included). Never logged or repr'd.
        timeout_s: Read timeout per attempt (connect timeout is min(10, timeout_s)).
        max_retries: Retries after the first attempt.
        concurrency: Requests in flight at once.
        rpm: Requests started per minute at most (None: no limit).
        backoff_s: First backoff; doubles per retry, with jitter, capped at ``max_backoff_s``.
        max_wait_s: A stated wait (Retry-After, a body's retry delay, a lockout) longer than
            this gives up instead of waiting.
        request_id_header: Header holding the provider's request id.
        error_parser: ``(status, json_or_None, text) -> (code, message)`` or an
            :class:`ErrorInfo`, for the provider's error shape and what it means.
    """

    def __init__(self, *, provider: str, base_url: str, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 120.0, max_retries: int = 3, concurrency: int = 4,
                 rpm: float | None = None, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 max_wait_s: float = 300.0, request_id_header: str = "x-request-id",
                 error_parser=None) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        self._secrets = tuple(v.split(" ", 1)[-1] for v in self._headers.values() if v)
        for secret in self._secrets:
            register_secret(secret)
        self.timeout_s = float(timeout_s)
        self.max_retries = max(0, int(max_retries))
        self.concurrency = max(1, int(concurrency))
        self.limiter = RateLimiter(rpm)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_wait_s = float(max_wait_s)
        self.request_id_header = request_id_header.lower()
        self.error_parser = error_parser or default_error
        self._client: Any = None
        self._plain: Any = None
        self._sem: asyncio.Semaphore | None = None
        self.halt: str | None = None
        """When set, the reason paid (non-idempotent) requests are no longer sent: they fail at
        once with code ``circuit_open``. Set after an auth or billing refusal, or by the
        adapter's circuit breaker; reads (polls, downloads) still go."""
        self._pause_until = 0.0
        """``time.monotonic()`` before which no request starts (a provider's stated wait)."""
        self.in_flight = 0
        """Requests sent and not yet answered, now."""
        self._flight_area = 0.0
        self._flight_t0: float | None = None
        self._flight_last = 0.0

    def secrets(self) -> tuple[str, ...]:
        """The secrets this client sends (its header values without the scheme), for
        :func:`scrub`."""
        return self._secrets

    def __repr__(self) -> str:  # headers hold the key: never show them
        return (f"HTTPClient(provider={self.provider!r}, base_url={self.base_url!r}, "
                f"concurrency={self.concurrency}, max_retries={self.max_retries})")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[HTTPClient]:
        """Open the connection pool for one batch (inside the running event loop)."""
        import httpx

        timeout = httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
        limits = httpx.Limits(max_connections=self.concurrency)
        self._sem = asyncio.Semaphore(self.concurrency)
        # A second pool without the provider's headers for downloads from other hosts (signed
        # CDN URLs of results): the key is only ever sent to the provider's API. Both share one
        # TLS context per process (building one costs ~50 ms of CPU, per batch otherwise).
        ssl = _ssl_context()
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                     timeout=timeout, limits=limits, verify=ssl) as client, \
                httpx.AsyncClient(timeout=timeout, limits=limits, verify=ssl) as plain:
            self._client, self._plain = client, plain
            try:
                yield self
            finally:
                self._client = self._plain = None
                self._sem = None

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    async def post(self, path: str, *, idempotent: bool, retry_5xx: bool | None = None,
                   json: Any = None, data: Mapping[str, Any] | None = None,
                   files: Mapping[str, Any] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
        """POST with the retry policy of the module docstring.

        Args:
            idempotent: True when sending the request twice cannot do (or bill) the work twice.
                False for paid submits: then a read timeout is final.
            retry_5xx: Retry 5xx answers; defaults to ``idempotent``. Set it for a
                non-idempotent call only where the provider documents that a 5xx did no work.
            headers: Extra headers for this request (``accept``, ``Prefer``).

        Raises:
            ProviderError: a non-2xx answer not retried, the retry budget spent, or no answer.
        """
        return await self.request("POST", path, idempotent=idempotent, retry_5xx=retry_5xx,
                                  json=json, data=data, files=files, headers=headers)

    async def get(self, path: str, **kw: Any) -> Response:
        """GET (idempotent by definition). ``path`` may be an absolute URL on the provider's
        API (a polling URL it returned)."""
        return await self.request("GET", path, idempotent=True, **kw)

    async def download(self, url: str) -> Response:
        """GET an absolute URL without the provider's auth headers (a result on a CDN), with
        the retry policy of an idempotent call."""
        return await self.request("GET", url, idempotent=True, auth=False)

    async def request(self, method: str, path: str, *, idempotent: bool,
                      retry_5xx: bool | None = None, auth: bool = True, **kw: Any) -> Response:
        """Send one request with the retry policy of the module docstring.

        Args:
            path: Relative to ``base_url``, or an absolute URL.
            auth: Send the provider's headers (False: a plain request, for downloads).
            kw: Passed to httpx (``json``, ``data``, ``files``, ``headers``, ``params``).
        """
        import httpx

        if self._client is None or self._sem is None:
            raise RuntimeError("HTTPClient.request outside 'async with client.session()'")
        http = self._client if auth else self._plain
        retry_5xx = idempotent if retry_5xx is None else retry_5xx
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            wait: float | None = None
            async with self._sem:
                waited += await self._hold()
                await self.limiter.wait()
                if self.halt is not None and not idempotent:  # after the waits: it may be new
                    raise ProviderError(self.provider, None, "circuit_open", self.halt,
                                        attempt - 1)
                before = BEFORE_PAID_SEND.get()
                if before is not None and not idempotent:
                    before()  # journal "sending" now that it leaves, not while queued
                try:
                    resp = await self._send(http, method, path, kw)
                except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                    # Never reached the server: always safe to send again.
                    err = ProviderError(self.provider, None, type(e).__name__,
                                        f"could not connect to {self.base_url}", attempt)
                    retry = True
                except httpx.TimeoutException as e:
                    err = ProviderError(self.provider, None, type(e).__name__,
                                        f"no answer within {self.timeout_s:g}s"
                                        + ("" if idempotent else "; not retried because the "
                                           "request may have been processed (and billed)"),
                                        attempt)
                    retry = idempotent
                except httpx.TransportError as e:
                    err = ProviderError(self.provider, None, type(e).__name__,
                                        scrub(str(e) or "connection lost", self._secrets), attempt)
                    retry = idempotent
                else:
                    rid = resp.headers.get(self.request_id_header)
                    if resp.is_success:
                        body = None
                        ctype = resp.headers.get("content-type", "")
                        if "json" in ctype or not ctype:  # never JSON-parse image bytes
                            with contextlib.suppress(ValueError):
                                body = resp.json()
                        return Response(resp.status_code, body, rid, attempt, waited, resp.content,
                                        {k.lower(): v for k, v in resp.headers.items()})
                    err, meaning = self._error(resp, attempt, rid)
                    retry = self._retryable(resp, meaning, retry_5xx)
                    if retry:
                        wait = parse_retry_after(resp.headers)
                        if wait is None:
                            wait = meaning.delay_s
            if not retry or attempt > self.max_retries:
                raise err
            delay = self.backoff(attempt) if wait is None else wait + random.uniform(0, 0.05)
            if delay > self.max_wait_s:
                err.message += (f" (asked to wait {delay:.0f}s, more than max_wait_s="
                                f"{self.max_wait_s:g}s)")
                raise err
            log.info("%s %s %s: %s; retry %d/%d in %.2fs%s", self.provider, method,
                     path.split("?", 1)[0],
                     f"HTTP {err.status}" if err.status else err.code, attempt,
                     self.max_retries, delay, " (the provider's wait)" if wait is not None else "")
            if wait is not None:
                # The provider's stated wait holds every request of this client (the others
                # would only be refused too, and a lockout may grow with each refusal).
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
                waited += await self._hold()
            else:
                await asyncio.sleep(delay)
                waited += delay

    async def _hold(self) -> float:
        """Sleep until no stated wait is pending; returns the seconds slept."""
        slept = 0.0
        while (left := self._pause_until - time.monotonic()) > 0:
            await asyncio.sleep(left)
            slept += left
        return slept

    @staticmethod
    def _retryable(resp: Any, meaning: ErrorInfo, retry_5xx: bool) -> bool:
        """Whether an error answer may be sent again (module docstring)."""
        if meaning.retry is False or meaning.final is not None:
            return False
        if resp.headers.get("x-should-retry") == "false":  # OpenAI's, obeyed as its SDK does
            return False
        # fal's: every model error carries it (https://fal.ai/docs/documentation/model-apis/errors).
        if str(resp.headers.get("x-fal-retryable", "")).lower() == "false":
            return False
        if meaning.retry is True:
            return True
        s = resp.status_code
        return s in (408, 429) or (s >= 500 and retry_5xx)

    async def _send(self, http: Any, method: str, path: str, kw: dict[str, Any]) -> Any:
        self._flight(+1)
        try:
            return await http.request(method, path, **kw)
        finally:
            self._flight(-1)

    def _flight(self, delta: int) -> None:
        now = time.perf_counter()
        if self._flight_t0 is None:
            self._flight_t0 = now
        else:
            self._flight_area += self.in_flight * (now - self._flight_last)
        self._flight_last = now
        self.in_flight += delta

    def in_flight_mean(self) -> float:
        """Time-weighted mean of requests in flight, from the first request sent to the last
        answer (since this client was made or :meth:`reset_stats`)."""
        if self._flight_t0 is None or self._flight_last <= self._flight_t0:
            return 0.0
        return self._flight_area / (self._flight_last - self._flight_t0)

    def reset_stats(self) -> None:
        self._flight_area, self._flight_t0, self._flight_last = 0.0, None, 0.0

    def _error(self, resp: Any, attempt: int,
               rid: str | None) -> tuple[ProviderError, ErrorInfo]:
        try:
            body = resp.json()
        except ValueError:
            body = None
        meaning = as_error_info(self.error_parser(resp.status_code, body, resp.text[:500]))
        final = meaning.final or {401: "auth", 402: "billing"}.get(resp.status_code)
        err = ProviderError(self.provider, resp.status_code, meaning.code,
                            scrub(meaning.message, self._secrets), attempt, rid, final)
        if final in ACCOUNT_FINAL and self.halt is None:
            self.halt = (f"an earlier request was refused for {final} reasons (HTTP "
                         f"{resp.status_code}{f' [{err.code}]' if err.code else ''}: "
                         f"{err.message}), so no more paid requests are sent in this run; "
                         "fix the key or the account and run again (the run resumes with "
                         "the requests not sent)")
            log.warning("%s: %s", self.provider, self.halt)
        return err, meaning


def as_error_info(parsed: ErrorInfo | tuple[str | None, str]) -> ErrorInfo:
    """An error parser's answer as an :class:`ErrorInfo` (a tuple is ``(code, message)``)."""
    if isinstance(parsed, ErrorInfo):
        return parsed
    code, message = parsed
    return ErrorInfo(code, message)


_SSL: list[Any] = []


def _ssl_context() -> Any:
    """The default TLS context (certifi's CA bundle, as httpx builds it), made once."""
    if not _SSL:
        import ssl

        import certifi

        _SSL.append(ssl.create_default_context(cafile=certifi.where()))
    return _SSL[0]


def default_error(status: int, body: Any, text: str) -> tuple[str | None, str]:
    """``{"error": {"code", "message"}}`` (OpenAI and many others), else the raw text."""
    if isinstance(body, dict):
        e = body.get("error", body)
        if isinstance(e, dict):
            code = e.get("code") or e.get("type")
            return (str(code) if code else None), str(e.get("message") or e.get("detail") or text)
        if isinstance(e, str):
            return None, e
    return None, text or f"HTTP {status}"


def detail_error(status: int, body: Any, text: str) -> tuple[str | None, str]:
    """FastAPI-style errors (BFL, fal): ``{"detail": "..."}`` or a validation list
    ``{"detail": [{"loc", "msg", "type"}]}``."""
    d = body.get("detail") if isinstance(body, dict) else None
    if isinstance(d, list):
        msgs = [f"{'.'.join(str(x) for x in e.get('loc', [])[1:])}: {e.get('msg')}"
                for e in d if isinstance(e, dict)]
        return "validation_error", "; ".join(msgs) or text
    if d:
        return None, str(d)
    return None, text or f"HTTP {status}"


def run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code: ``asyncio.run``, or in a helper thread when this thread
    already runs an event loop (a notebook)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["v"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as e:  # re-raised in the caller's thread
            box["e"] = e

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


# -- the skeleton every closed-API adapter shares ----------------------------------------------

BEFORE_PAID_SEND: ContextVar[Callable[[], None] | None] = ContextVar("before_paid_send",
                                                                    default=None)
"""Called (in the sending task's context) just before each non-idempotent request leaves,
after its concurrency slot and rate-limit wait: the submit journal's ``sending`` write, so a
run killed while submits wait for a slot strands none of them as "sent"."""


def to_png(data: bytes) -> bytes:
    """Image bytes in any format PIL reads, as PNG (PNG bytes are returned as they are)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            im = im.convert("RGB")
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def aspect_ratio(width: int, height: int) -> str:
    """``width:height`` in lowest terms (1024x576 -> ``16:9``)."""
    import math

    g = math.gcd(int(width), int(height)) or 1
    return f"{int(width) // g}:{int(height) // g}"


def same_host(url: str, base_url: str, also: tuple[str, ...] = ()) -> bool:
    """True when ``url`` is on the host of ``base_url`` (or a host ending with one of
    ``also``): only then may the provider's key be sent to it."""
    from urllib.parse import urlsplit

    host, base = urlsplit(url).hostname or "", urlsplit(base_url).hostname or ""
    return host == base or any(host == a.lstrip(".") or host.endswith(a) for a in also)
