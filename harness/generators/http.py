"""The async HTTP layer shared by closed-API adapters.

One :class:`HTTPClient` per generator holds the provider's settings (base URL, timeouts, retry
budget, concurrency, requests-per-minute). For each batch the adapter opens a
:meth:`HTTPClient.session` inside :func:`run_sync` (one ``asyncio.run`` per batch) and sends
its requests concurrently through it.

Retry policy (the part that costs money when wrong):

* Connect errors and connect/pool timeouts are always retried: the request never reached the
  server, so nothing was submitted or billed.
* 408 and 429 are retried: the provider refused the request before doing any work.
  ``Retry-After`` (seconds or an HTTP date) and ``retry-after-ms`` are honoured.
* 5xx, read/write timeouts and connections dropped mid-answer are retried only for calls marked
  ``idempotent=True`` (or ``retry_5xx=True`` for 5xx, where the provider documents that a
  failed request did no billable work). A paid submit that may have started is never sent twice.
* 400, 401, 402, 403, 404, 422 (and every other 4xx) are never retried.

Errors carry the status code and the provider's error code and message, never headers, and
any secret the client was given is scrubbed from the message.

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
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

NEVER_RETRY = frozenset({400, 401, 402, 403, 404, 422})
"""Statuses that mean the request itself is wrong (or unpaid, or unauthorised): retrying
cannot help."""

NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "PoolTimeout"})
"""httpx errors raised before a request was sent: the server never saw it."""

_KEY_LIKE = re.compile(r"\b(sk|key|r8|fal)[-_][A-Za-z0-9_\-*]{6,}")
"""Strings shaped like API keys (OpenAI ``sk-...``, Replicate ``r8_...``): scrubbed from provider
messages even when they are not our key (OpenAI echoes a masked key on 401)."""


class ProviderError(Exception):
    """A provider call that failed for good (after any retries).

    Attributes:
        status: HTTP status, or None when no answer came (timeout, connection error).
        code: The provider's error code (``moderation_blocked``, ``invalid_api_key`` ...).
        message: The provider's message, with secrets scrubbed.
        attempts: How many times the request was sent.
        request_id: The provider's request id, when the answer carried one.
    """

    def __init__(self, provider: str, status: int | None, code: str | None, message: str,
                 attempts: int = 1, request_id: str | None = None) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.message = message
        self.attempts = attempts
        self.request_id = request_id
        where = f"HTTP {status}" if status is not None else "no answer"
        self.never_reached = status is None and code in NOT_SENT
        """True when the request provably never reached the server (nothing was submitted)."""
        super().__init__(f"{provider}: {where}{f' [{code}]' if code else ''}: {message} "
                         f"(after {attempts} attempt{'s' if attempts != 1 else ''})")


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


def scrub(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every secret and every key-shaped string replaced by ``***``."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _KEY_LIKE.sub("***", text)


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
        max_wait_s: A Retry-After longer than this gives up instead of waiting.
        request_id_header: Header holding the provider's request id.
        error_parser: ``(status, json_or_None, text) -> (code, message)`` for the provider's
            error shape.
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
        self.in_flight = 0
        """Requests sent and not yet answered, now."""
        self._flight_area = 0.0
        self._flight_t0: float | None = None
        self._flight_last = 0.0

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
                await self.limiter.wait()
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
                    err = self._error(resp, attempt, rid)
                    s = resp.status_code
                    retry = (s in (408, 429)) or (s >= 500 and retry_5xx)
                    if retry:
                        wait = parse_retry_after(resp.headers)
            if not retry or attempt > self.max_retries:
                raise err
            delay = self.backoff(attempt) if wait is None else wait + random.uniform(0, 0.05)
            if delay > self.max_wait_s:
                err.message += f" (asked to wait {delay:.0f}s, more than max_wait_s)"
                raise err
            log.info("%s %s %s: %s; retry %d/%d in %.2fs", self.provider, method,
                     path.split("?", 1)[0],
                     f"HTTP {err.status}" if err.status else err.code, attempt,
                     self.max_retries, delay)
            await asyncio.sleep(delay)
            waited += delay

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

    def _error(self, resp: Any, attempt: int, rid: str | None) -> ProviderError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        code, message = self.error_parser(resp.status_code, body, resp.text[:500])
        return ProviderError(self.provider, resp.status_code, code,
                             scrub(message, self._secrets), attempt, rid)


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
