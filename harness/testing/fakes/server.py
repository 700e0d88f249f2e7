"""The fake providers' HTTP server: routing, counters, scripted faults, jobs and result files.

Provider modules (:mod:`.openai`, :mod:`.google` ...) add their routes to it; this module knows
none of them. The package wires the default set (:func:`register`), so a bare
``FakeProviders()`` serves every provider.

Routes live in a table of ``(method, path pattern)``. Every route has a name (``bfl.submit``,
``replicate.get`` ...) and :attr:`FakeProviders.calls` counts each call under both its literal
path and its route name. Scripted faults are queued per path or route name
(:meth:`FakeProviders.push`) or per prompt (:meth:`FakeProviders.push_for_prompt`) and each is
used by one call. What a provider does with a prompt (moderate it, fail the job, let its result
URL expire, stay Pending) is set per prompt with :meth:`FakeProviders.set_outcome`. Images are
small deterministic images derived from the prompt (:func:`prompt_image`).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


def error_body(message: str, type_: str, code: str | None,
               param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape: the OpenAI fake's errors, and the server's own (an unknown URL)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass
class Fault:
    """One scripted misbehaviour, used by one call."""

    status: int = 500
    """Status to answer with (ignored when ``then_ok``)."""
    body: dict[str, Any] | None = None
    """JSON body of the error answer (None: the provider's error shape for the status)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Seconds to wait before answering (a hang when longer than the client's timeout)."""
    then_ok: bool = False
    """After the delay, answer normally (a slow answer) instead of with ``status``."""
    processed: bool = False
    """The provider looked at the prompt before answering (a moderation refusal): counted in
    :attr:`FakeProviders.paid`, unlike rate limits, 5xx and hangs, which refuse before any work."""

    @classmethod
    def rate_limit(cls, retry_after: float | str | None = None,
                   retry_after_ms: int | None = None,
                   body: dict[str, Any] | None = None) -> Fault:
        """429; ``retry_after`` in seconds, or a string sent as is (an HTTP date);
        ``body``: the provider's error body (None: its usual 429 shape)."""
        h = {}
        if retry_after is not None:
            h["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        if retry_after_ms is not None:
            h["retry-after-ms"] = str(retry_after_ms)
        return cls(429, body, h)

    @classmethod
    def retry_info(cls, retry_delay: str | float) -> Fault:
        """Google's 429 with the wait in the body only (no Retry-After header): a
        ``google.rpc.Status`` whose details hold a ``google.rpc.RetryInfo``. ``retry_delay`` is
        a ``google.protobuf.Duration`` in JSON form (``"30s"``), or seconds."""
        delay = retry_delay if isinstance(retry_delay, str) else f"{retry_delay:.3f}s"
        return cls(429, {"error": {
            "code": 429, "message": "Resource has been exhausted (e.g. check quota).",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                         "retryDelay": delay}]}})

    @classmethod
    def insufficient_quota(cls) -> Fault:
        """OpenAI's billing refusal: a 429 like a rate limit, but final
        (https://help.openai.com/en/articles/6891831)."""
        return cls(429, error_body(
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota", "insufficient_quota"))

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx with the provider's error body."""
        return cls(status, None)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """A normal answer, ``delay_s`` late."""
        return cls(200, None, {}, delay_s, then_ok=True)

    @classmethod
    def hang(cls, delay_s: float = 30.0) -> Fault:
        """No answer for ``delay_s`` (then a 504): longer than a client's timeout."""
        return cls(504, None, {}, delay_s)

    @classmethod
    def moderation(cls) -> Fault:
        """gpt-image-1's safety-system rejection."""
        return cls(400, error_body("Your request was rejected by the safety system.",
                                   "image_generation_user_error", "moderation_blocked"),
                   processed=True)

    @classmethod
    def content_policy(cls) -> Fault:
        """dall-e-3's content-policy rejection."""
        return cls(400, error_body("Your request was rejected as a result of our safety system.",
                                   "invalid_request_error", "content_policy_violation"),
                   processed=True)


@dataclass
class Request:
    """What a handler sees: parsed body, form fields, files; headers without auth."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    """Path parameters of the route pattern (``{model}`` ...)."""
    query: dict[str, str] = field(default_factory=dict)
    route: str = ""
    """Name of the route that served it (``bfl.submit`` ...)."""


@dataclass
class Reply:
    """What a handler answers: a status and a JSON body, or raw bytes."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    """Bytes sent as is instead of JSON (an image, an XML error)."""
    content_type: str = "application/json"


Handler = Callable[["FakeProviders", Request], Reply]
ErrorShape = Callable[[int, str], Any]
"""(status, message) -> a provider's error body, for faults without a body."""


@dataclass(frozen=True)
class Auth:
    """How a provider takes its API key, and what it answers to a wrong one."""

    check: Callable[[Any, dict[str, str], str], bool]
    """(headers (case-insensitive), query, key) -> authorised."""
    deny: Callable[[], Reply]
    deny_key: Callable[[Any], Reply] | None = None
    """(headers) -> the answer to a wrong key, for providers that echo the key they were sent
    (partly masked); None: ``deny()``."""


@dataclass
class Route:
    """One ``(method, path pattern)`` of a provider and how it is served."""

    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: Auth | None
    """None: public (result downloads)."""
    error: ErrorShape
    prompt_of: Callable[[Request], str | None]
    provider: str = ""
    """Name of the provider whose installer added the route (the counters' key)."""


@dataclass(frozen=True)
class Provider:
    """One fake provider: what adds its routes, and how a client reaches it."""

    name: str
    install: Callable[[FakeProviders], None]
    """Adds the provider's routes to a server."""
    base_path: str
    """Appended to the server's URL: the ``options.base_url`` the provider's adapter takes."""
    env_var: str
    """The environment variable the provider's model configs read the key from."""
    demo_model: str
    """A model config of this provider, for the demo command's example."""


_registered: dict[str, Provider] = {}


def register(*providers: Provider) -> None:
    """Add providers to the default set of :class:`FakeProviders`, in the order their routes are
    matched (a provider already registered under the name is replaced in place)."""
    for p in providers:
        _registered[p.name] = p


def registered() -> tuple[Provider, ...]:
    """The default providers, in route-matching order."""
    return tuple(_registered.values())


@dataclass
class Job:
    """A submitted job of a submit-and-poll provider."""

    id: str
    provider: str
    prompt: str
    params: dict[str, Any]
    created: float
    outcome: str | None
    pending_polls: int
    seed: int
    polls: int = 0
    result_urls: list[str] = field(default_factory=list)

    def ready(self, fake: FakeProviders) -> bool:
        """Whether the job has its result: polled enough, old enough, and not held."""
        if self.provider in fake.held:
            return False
        return self.polls > self.pending_polls and time.time() - self.created >= fake.job_seconds


def prompt_png(prompt: str, size: int = 64) -> bytes:
    """A small deterministic PNG for a prompt: two colours from its hash."""
    return prompt_image(prompt, "png", size)


def prompt_image(prompt: str, fmt: str = "png", size: int = 64) -> bytes:
    """The prompt's image encoded as ``png``, ``jpeg`` or ``webp``."""
    from PIL import Image

    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    im = Image.new("RGB", (size, size), tuple(h[0:3]))
    im.paste(Image.new("RGB", (size, size // 2), tuple(h[3:6])), (0, size // 2))
    buf = io.BytesIO()
    im.save(buf, format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
    return buf.getvalue()


MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
"""Content type of each image format a provider may answer with."""


def json_prompt(req: Request) -> str | None:
    """The prompt of a JSON body or form with a top-level ``prompt`` (the routes' default)."""
    if isinstance(req.json, dict):
        p = req.json.get("prompt")
        return p if isinstance(p, str) else None
    return req.form.get("prompt")


def no_prompt(req: Request) -> str | None:
    """For routes that carry no prompt (polls, downloads): not counted per prompt."""
    return None


class FakeProviders:
    """A threaded HTTP server on a free port of 127.0.0.1; a context manager.

    Every provider accepts the same ``api_key`` in its own header.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        calls: Calls per literal path and per route name (faulted ones included).
        prompt_calls: Calls per prompt text (submits only: calls that carry a prompt).
        requests: Every request received, in order (auth headers removed).
        latency_s: Seconds every answer is delayed (the benchmark's simulated latency).
        pending_polls: Polls a job answers "not ready" before its result (BFL, Replicate, fal).
        job_seconds: A job is also not ready before this many seconds after its submit.
        sample_ttl_s: Seconds a result URL stays valid (BFL's expire in minutes).
        jobs: Submitted jobs by id.
        paid: Per provider, the submits it processed, counted per prompt (:meth:`paid_stats`).
        sent_images: Every image the server sent, in order: (provider, route name, sha256 of
            the bytes as they left: a file, or the decoded base64 of a JSON answer).
    """

    def __init__(self, api_key: str = "sk-fake-key",
                 providers: tuple[Callable[[FakeProviders], None], ...] | None = None,
                 port: int = 0) -> None:
        """``providers``: route installers (``Provider.install``); None: every registered one."""
        self.api_key = api_key
        self.routes: list[Route] = []
        self.calls: Counter[str] = Counter()
        self.prompt_calls: Counter[str] = Counter()
        self.requests: list[Request] = []
        self.latency_s = 0.0
        self.pending_polls = 1
        self.job_seconds = 0.0
        self.sample_ttl_s = 600.0
        self.held: set[str] = set()
        """Providers whose jobs stay pending until removed from this set (kill-and-resume tests)."""
        self.jobs: dict[str, Job] = {}
        self.files: dict[str, tuple[bytes, str, float]] = {}
        """Result files by token: (bytes, content type, expiry time)."""
        self._port = port
        self._faults: dict[str, deque[Fault]] = {}
        self._prompt_faults: dict[str, deque[Fault]] = {}
        self._windows: dict[str, tuple[float, Callable[[float], Fault]]] = {}
        self._outcomes: dict[str, str] = {}
        self._seeds = itertools.count(1000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._area = 0.0
        self._t_first: float | None = None
        self._t_last = 0.0
        self._max_in_flight = 0
        self.paid: dict[str, Counter[str]] = {}
        self.sent_images: list[tuple[str, str, str]] = []
        installers = ([(p.name, p.install) for p in registered()] if providers is None else
                      [(getattr(add, "__module__", "").rpartition(".")[2], add)
                       for add in providers])
        for name, add in installers:
            first = len(self.routes)
            add(self)
            for r in self.routes[first:]:
                r.provider = r.provider or name

    # -- scripting ------------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler, *, auth: Auth | None,
              error: ErrorShape, name: str | None = None,
              prompt_of: Callable[[Request], str | None] = json_prompt) -> None:
        """Add a route. ``path`` may hold ``{name}`` (one segment) and ``{name:path}`` (the
        rest) parameters; the first matching route (in the order added) serves a request.

        Args:
            auth: The provider's key check; None: public (result downloads).
            error: The provider's error body for a status, used by faults without a body.
        """
        rx = re.escape(path)
        rx = re.sub(r"\\\{(\w+):path\\\}", r"(?P<\1>.+)", rx)
        rx = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", rx)
        self.routes.append(Route(name or path, method.upper(), re.compile(rx + "$"), handler,
                                 auth, error, prompt_of))

    def push(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next calls to ``path`` (a literal path or a route name)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def fault_window(self, path: str, seconds: float, make: Callable[[float], Fault]) -> None:
        """For the next ``seconds``, every call to ``path`` (a literal path or a route name)
        that has no queued fault is answered with ``make(seconds_left)``: a quota window, a
        lockout (``lambda left: Fault.retry_info(left)``)."""
        with self._lock:
            self._windows[path] = (time.monotonic() + seconds, make)

    def push_for_prompt(self, prompt: str, *faults: Fault) -> None:
        """Queue faults for the next calls with this prompt (one each)."""
        with self._lock:
            self._prompt_faults.setdefault(prompt, deque()).extend(faults)

    def set_outcome(self, prompt: str, outcome: str | None) -> None:
        """What the provider does with this prompt (each provider's module lists its outcomes:
        ``moderated``, ``failed``, ``expired``, ``pending:N`` ...); None: a normal image."""
        with self._lock:
            if outcome is None:
                self._outcomes.pop(prompt, None)
            else:
                self._outcomes[prompt] = outcome

    def outcome(self, prompt: str | None) -> str | None:
        """The outcome set for this prompt (None: a normal image)."""
        return self._outcomes.get(prompt or "")

    def reset(self) -> None:
        """Forget counters, requests, faults, outcomes and jobs (routes and settings stay)."""
        with self._lock:
            self.calls.clear()
            self.prompt_calls.clear()
            self.requests.clear()
            self._faults.clear()
            self._prompt_faults.clear()
            self._windows.clear()
            self._outcomes.clear()
            self.jobs.clear()
            self.paid.clear()
            self.sent_images.clear()
            self._area, self._t_first, self._t_last, self._max_in_flight = 0.0, None, 0.0, 0

    def in_flight_stats(self) -> dict[str, float]:
        """Requests being served: time-weighted mean between the first request's arrival and
        the last answer, and the maximum."""
        with self._lock:
            span = (self._t_last - self._t_first) if self._t_first is not None else 0.0
            return {"mean": self._area / span if span > 0 else 0.0, "max": self._max_in_flight,
                    "seconds": span}

    def paid_stats(self) -> dict[str, dict[str, int]]:
        """Per provider: ``paid`` (submits the provider processed: the route carries a prompt
        and the provider's handler answered it below 500 other than 429, refusals and
        validation errors included, or a scripted moderation fault; injected rate limits, 5xx,
        hangs and auth denials are not, as they refuse before any work; a client that hung up
        before the answer still counts: the provider did the work), ``prompts`` (distinct
        prompts among them), ``duplicates`` (paid minus prompts: the same prompt processed
        again) and ``images`` (images sent, result downloads included)."""
        with self._lock:
            out = {p: {"paid": sum(c.values()), "prompts": len(c),
                       "duplicates": sum(c.values()) - len(c), "images": 0}
                   for p, c in self.paid.items()}
            for provider, _, _ in self.sent_images:
                out.setdefault(provider, {"paid": 0, "prompts": 0, "duplicates": 0,
                                          "images": 0})["images"] += 1
        return out

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first (with FakeProviders() as fake)"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeProviders:
        """Serve in a background thread; returns self."""
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY: the headers and the body leave in two writes; with Nagle on, the body
            # waits for the client's delayed ACK of the headers (~40 ms on Linux), a stall no
            # real provider adds, which showed as ~20% fewer requests in flight at the server.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many clients connect at once in the benchmark

        self._stop.clear()
        self._server = Server(("127.0.0.1", self._port), H)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; handlers still waiting (hangs, latency) drop their connection."""
        self._stop.set()  # wakes hanging handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers for provider handlers ----------------------------------------------------

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the server is stopping (give up the answer)."""
        return self._stop.wait(seconds)

    def next_seed(self) -> int:
        """A fresh seed, for answers that report the seed used when none was asked for."""
        return next(self._seeds)

    def new_job(self, provider: str, prompt: str, params: dict[str, Any]) -> Job:
        """Submit a job: its outcome and pending polls follow :meth:`set_outcome`."""
        outcome = self.outcome(prompt)
        pending = self.pending_polls
        if outcome and outcome.startswith("pending:"):
            pending, outcome = int(outcome.split(":", 1)[1]), None
        seed = params.get("seed")
        job = Job(uuid.uuid4().hex, provider, prompt, params, time.time(), outcome, pending,
                  int(seed) if isinstance(seed, int) and seed else self.next_seed())
        with self._lock:
            self.jobs[job.id] = job
        return job

    def job(self, job_id: str, provider: str) -> Job | None:
        """The provider's job with this id (None: unknown, or another provider's)."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.provider == provider else None

    def host_file(self, data: bytes, content_type: str, prefix: str, ext: str,
                  expired: bool = False) -> str:
        """Serve ``data`` at a public, signed-looking URL that expires after ``sample_ttl_s``."""
        token = uuid.uuid4().hex
        expires = time.time() + (-1.0 if expired else self.sample_ttl_s)
        with self._lock:
            self.files[token] = (data, content_type, expires)
        return f"{self.url}/{prefix}/{token}.{ext}?se={int(expires)}&sig={token[:16]}"

    # -- serving --------------------------------------------------------------------------

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for r in self.routes:
            if r.method == method:
                m = r.pattern.match(path)
                if m:
                    return r, m.groupdict()
        return None, {}

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if h.path.startswith("/_fake/"):
            # Control calls are not provider traffic: counted, a stats call after a batch would
            # stretch the in-flight window over the idle gap before it (and a reset would start
            # it early), lowering the mean the benchmark reads.
            return self._serve(h, method)
        t_in = time.perf_counter()
        with self._lock:
            self._account(t_in, +1)
        try:
            self._serve(h, method)
        finally:
            with self._lock:
                self._account(time.perf_counter(), -1)

    def _account(self, now: float, delta: int) -> None:
        if self._t_first is None:
            self._t_first = now
        else:
            self._area += self._in_flight * (now - self._t_last)
        self._t_last = now
        self._in_flight += delta
        self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path, _, qs = h.path.partition("?")
        query = {k: v[-1] for k, v in parse_qs(qs).items()}
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        if path.startswith("/_fake/"):
            return self._send(h, self._control(path, method), "")
        headers = {k.lower(): v for k, v in h.headers.items()
                   if k.lower() not in ("authorization", "x-goog-api-key", "x-key")}
        route, params = self._match(method, path)
        req = Request(method, path, headers, params=params, query=query,
                      route=route.name if route else "")
        ctype = h.headers.get("Content-Type", "")
        if ctype.startswith("application/json") and raw:
            try:
                req.json = json.loads(raw)
            except ValueError:
                req.json = None
        elif ctype.startswith("multipart/form-data"):
            req.form, req.files = _parse_multipart(ctype, raw)
        elif ctype.startswith("application/x-www-form-urlencoded"):
            req.form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
        prompt = route.prompt_of(req) if route else None
        with self._lock:
            self.calls[path] += 1
            if route and route.name != path:
                self.calls[route.name] += 1
            if prompt is not None:
                self.prompt_calls[prompt] += 1
            self.requests.append(req)
            fault = None
            if prompt is not None and self._prompt_faults.get(prompt):
                fault = self._prompt_faults[prompt].popleft()
            elif self._faults.get(path):
                fault = self._faults[path].popleft()
            elif route and self._faults.get(route.name):
                fault = self._faults[route.name].popleft()
            else:
                now = time.monotonic()
                for name in (path, route.name if route else None):
                    until, make = self._windows.get(name or "", (0.0, None))
                    if make is not None and now < until:
                        fault = make(until - now)
                        break
        if self.latency_s and self._stop.wait(self.latency_s):
            return
        rid = f"req_{uuid.uuid4().hex[:24]}"
        ran = False  # the provider's handler looked at the request
        if route is None:
            reply = Reply(404, error_body(f"Invalid URL ({method} {path})",
                                          "invalid_request_error", None))
        elif route.auth is not None and not route.auth.check(h.headers, query, self.api_key):
            deny_key = route.auth.deny_key
            reply = deny_key(h.headers) if deny_key is not None else route.auth.deny()
        elif fault is not None:
            if fault.delay_s and self._stop.wait(fault.delay_s):
                return  # server stopping: drop the connection
            reply = route.handler(self, req) if fault.then_ok else Reply(
                fault.status, fault.body or route.error(fault.status, f"HTTP {fault.status}"),
                dict(fault.headers))
            ran = fault.then_ok or fault.processed
        else:
            reply = route.handler(self, req)
            ran = True
        if route is not None:
            self._count(route, prompt if ran and reply.status < 500 and reply.status != 429
                        else None, reply)
        self._send(h, reply, rid)

    def _count(self, route: Route, paid_prompt: str | None, reply: Reply) -> None:
        """Count a processed submit (``paid_prompt``: its prompt; :meth:`paid_stats`) and the
        images a reply carries."""
        shas = _image_shas(reply) if reply.status < 300 else []
        with self._lock:
            if paid_prompt is not None:
                self.paid.setdefault(route.provider, Counter())[paid_prompt] += 1
            self.sent_images.extend((route.provider, route.name, s) for s in shas)

    def _control(self, path: str, method: str) -> Reply:
        """``GET /_fake/stats`` (counters, in-flight) and ``POST /_fake/reset``, for demos and
        the benchmark (which runs the fake in another process)."""
        if path == "/_fake/stats":
            return Reply(200, {"calls": dict(self.calls), "in_flight": self.in_flight_stats()})
        if path == "/_fake/paid":
            return Reply(200, self.paid_stats())
        if path == "/_fake/images":
            with self._lock:
                sent = [list(t) for t in self.sent_images]
            return Reply(200, {"images": sent})
        if path == "/_fake/reset" and method == "POST":
            self.reset()
            return Reply(200, {"reset": True})
        return Reply(404, {"detail": "unknown control path"})

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply, rid: str) -> None:
        data = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            h.send_header("Content-Length", str(len(data)))
            if rid:
                h.send_header("x-request-id", rid)
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass


_MAGIC_B64 = ("iVBORw0KGgo", "/9j/", "UklGR")
"""How base64 of a PNG, a JPEG and a WebP file begins."""


def _image_shas(reply: Reply) -> list[str]:
    """sha256 of each image in a reply: raw image bytes, or base64 images anywhere in a JSON
    body (``b64_json``, ``inlineData.data``, ``bytesBase64Encoded``, ``data:`` URIs)."""
    import base64

    if reply.raw is not None:
        return [hashlib.sha256(reply.raw).hexdigest()] if reply.content_type.startswith(
            "image/") else []
    out: list[str] = []
    stack = [reply.body]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(reversed(list(v.values())))
        elif isinstance(v, list):
            stack.extend(reversed(v))
        elif isinstance(v, str) and len(v) > 64:
            b64 = v.partition(";base64,")[2] if v.startswith("data:image/") else v
            if b64.startswith(_MAGIC_B64):
                out.append(hashlib.sha256(base64.b64decode(b64)).hexdigest())
    return out


def _parse_multipart(ctype: str, raw: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[str(name)] = payload
        else:
            form[str(name)] = payload.decode("utf-8")
    return form, files


# -- shared by several providers ----------------------------------------------------------

def bearer(h: Any, q: dict[str, str], key: str) -> bool:
    """``Authorization: Bearer <key>`` (OpenAI, Stability)."""
    return h.get("Authorization") == f"Bearer {key}"


def header_key(header: str, scheme: str = "") -> Callable[[Any, dict[str, str], str], bool]:
    """A check for ``<header>: [<scheme> ]<key>`` (BFL's ``x-key``, fal's ``Key``)."""
    want = f"{scheme} " if scheme else ""
    return lambda h, q, key: h.get(header) == want + key


def detail_denial(status: int, detail: str) -> Callable[[], Reply]:
    """A FastAPI-style ``{"detail": ...}`` answer to a wrong key (BFL, fal)."""
    return lambda: Reply(status, {"detail": detail})


def detail_error(messages: dict[int, str]) -> ErrorShape:
    """A FastAPI-style ``{"detail": message}`` error shape; ``messages`` replaces the message of
    some statuses with the provider's own wording (BFL, fal)."""
    return lambda status, message: {"detail": messages.get(status, message)}


def file_route(fake: FakeProviders, req: Request) -> Reply:
    """A result file; past its expiry, the signed-URL error of a blob store."""
    token = req.params["token"]
    entry = fake.files.get(token)
    if entry is None:
        return Reply(404, None, raw=b"<Error><Code>BlobNotFound</Code></Error>",
                     content_type="application/xml")
    data, ctype, expires = entry
    if time.time() > expires:
        return Reply(403, None, raw=b"<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>"
                     b"AuthenticationFailed</Code><Message>Signed expiry time has passed."
                     b"</Message></Error>", content_type="application/xml")
    return Reply(200, None, raw=data, content_type=ctype)
