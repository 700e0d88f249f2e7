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
        self.error_parser = error_parser or _default_error
        self._client: Any = None
        self._sem: asyncio.Semaphore | None = None

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
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers,
                                     timeout=timeout, limits=limits) as client:
            self._client = client
            try:
                yield self
            finally:
                self._client = None
                self._sem = None

    def backoff(self, attempt: int) -> float:
        """Jittered exponential backoff before retry number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

    async def post(self, path: str, *, idempotent: bool, retry_5xx: bool | None = None,
                   json: Any = None, data: Mapping[str, Any] | None = None,
                   files: Mapping[str, Any] | None = None) -> Response:
        """POST with the retry policy of the module docstring.

        Args:
            idempotent: True when sending the request twice cannot do (or bill) the work twice.
                False for paid submits: then a read timeout is final.
            retry_5xx: Retry 5xx answers; defaults to ``idempotent``. Set it for a
                non-idempotent call only where the provider documents that a 5xx did no work.

        Raises:
            ProviderError: a non-2xx answer not retried, the retry budget spent, or no answer.
        """
        return await self.request("POST", path, idempotent=idempotent, retry_5xx=retry_5xx,
                                  json=json, data=data, files=files)

    async def get(self, path: str, **kw: Any) -> Response:
        """GET (idempotent by definition)."""
        return await self.request("GET", path, idempotent=True, **kw)

    async def request(self, method: str, path: str, *, idempotent: bool,
                      retry_5xx: bool | None = None, **kw: Any) -> Response:
        import httpx

        if self._client is None or self._sem is None:
            raise RuntimeError("HTTPClient.request outside 'async with client.session()'")
        retry_5xx = idempotent if retry_5xx is None else retry_5xx
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            wait: float | None = None
            async with self._sem:
                await self.limiter.wait()
                try:
                    resp = await self._client.request(method, path, **kw)
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
                        try:
                            body = resp.json()
                        except ValueError:
                            body = None
                        return Response(resp.status_code, body, rid, attempt, waited, resp.content)
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
            log.info("%s %s %s: %s; retry %d/%d in %.2fs", self.provider, method, path,
                     f"HTTP {err.status}" if err.status else err.code, attempt,
                     self.max_retries, delay)
            await asyncio.sleep(delay)
            waited += delay

    def _error(self, resp: Any, attempt: int, rid: str | None) -> ProviderError:
        try:
            body = resp.json()
        except ValueError:
            body = None
        code, message = self.error_parser(resp.status_code, body, resp.text[:500])
        return ProviderError(self.provider, resp.status_code, code,
                             scrub(message, self._secrets), attempt, rid)


def _default_error(status: int, body: Any, text: str) -> tuple[str | None, str]:
    """``{"error": {"code", "message"}}`` (OpenAI and many others), else the raw text."""
    if isinstance(body, dict):
        e = body.get("error", body)
        if isinstance(e, dict):
            code = e.get("code") or e.get("type")
            return (str(code) if code else None), str(e.get("message") or e.get("detail") or text)
        if isinstance(e, str):
            return None, e
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
