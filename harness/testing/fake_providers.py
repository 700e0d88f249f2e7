"""A real HTTP server on 127.0.0.1 that speaks providers' wire formats, for tests and demos.

::

    with FakeProviders(api_key="sk-test") as fake:
        fake.push("/v1/images/generations", Fault.rate_limit(retry_after=1))
        ... OpenAIImages(options={"base_url": fake.url + "/v1"}) ...
        assert fake.calls["/v1/images/generations"] == 2

Providers: OpenAI Images, Google (Imagen ``:predict``, Gemini ``:generateContent``), Stability
v2beta stable-image, Black Forest Labs (submit, ``polling_url``, expiring sample URLs),
Replicate predictions and fal's queue (``/fal`` stands in for ``https://queue.fal.run``).

Routes live in a table of ``(method, path pattern)``; a provider is a function that adds its
routes (:func:`openai_routes`, :func:`google_routes` ...). Every route has a name
(``bfl.submit``, ``replicate.get`` ...) and :attr:`FakeProviders.calls` counts each call under
both its literal path and its route name. Scripted faults are queued per path or route name
(:meth:`FakeProviders.push`) or per prompt (:meth:`FakeProviders.push_for_prompt`) and each is
used by one call. What a provider does with a prompt (moderate it, fail the job, let its result
URL expire, stay Pending) is set per prompt with :meth:`FakeProviders.set_outcome`. Images are
small deterministic images derived from the prompt (PNG, or JPEG/WebP where the provider's
default is); the size asked for is validated and recorded but not rendered.

``harness fake-providers`` serves it for demos (:func:`main`).
"""

from __future__ import annotations

import argparse
import base64
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

    @classmethod
    def rate_limit(cls, retry_after: float | str | None = None,
                   retry_after_ms: int | None = None) -> Fault:
        """429; ``retry_after`` in seconds, or a string sent as is (an HTTP date)."""
        h = {}
        if retry_after is not None:
            h["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        if retry_after_ms is not None:
            h["retry-after-ms"] = str(retry_after_ms)
        return cls(429, None, h)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status, None)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        return cls(200, None, {}, delay_s, then_ok=True)

    @classmethod
    def hang(cls, delay_s: float = 30.0) -> Fault:
        return cls(504, None, {}, delay_s)

    @classmethod
    def moderation(cls) -> Fault:
        """gpt-image-1's safety-system rejection."""
        return cls(400, _err("Your request was rejected by the safety system.",
                             "image_generation_user_error", "moderation_blocked"))

    @classmethod
    def content_policy(cls) -> Fault:
        """dall-e-3's content-policy rejection."""
        return cls(400, _err("Your request was rejected as a result of our safety system.",
                             "invalid_request_error", "content_policy_violation"))


def _err(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        return _err("Rate limit reached for requests", "requests", "rate_limit_exceeded")
    if status >= 500:
        return _err("The server had an error while processing your request.", "server_error", None)
    return _err(message, "server_error" if status >= 500 else "invalid_request_error", None)


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
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    """Bytes sent as is instead of JSON (an image, an XML error)."""
    content_type: str = "application/json"


Handler = Callable[["FakeProviders", Request], Reply]


@dataclass
class Route:
    name: str
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    auth: Callable[[Any, dict[str, str], str], bool] | None
    """(headers (case-insensitive), query, key) -> authorised; None: public (downloads)."""
    unauthorized: Callable[[], Reply]
    error: Callable[[int, str], Any]
    """(status, message) -> the provider's error body, for faults without a body."""
    prompt_of: Callable[[Request], str | None]


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


_MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}


def _json_prompt(req: Request) -> str | None:
    if isinstance(req.json, dict):
        p = req.json.get("prompt")
        return p if isinstance(p, str) else None
    return req.form.get("prompt")


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
    """

    def __init__(self, api_key: str = "sk-fake-key",
                 providers: tuple[Callable[[FakeProviders], None], ...] | None = None,
                 port: int = 0) -> None:
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
        for add in providers or ALL_PROVIDERS:
            add(self)

    # -- scripting ------------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler, *, name: str | None = None,
              auth: str | None = "bearer", error: Callable[[int, str], Any] | None = None,
              prompt_of: Callable[[Request], str | None] = _json_prompt) -> None:
        """Add a route. ``path`` may hold ``{name}`` (one segment) and ``{name:path}`` (the
        rest) parameters; the first matching route (in the order added) serves a request.

        Args:
            auth: ``bearer`` (``Authorization: Bearer``), ``goog`` (``x-goog-api-key`` or
                ``?key=``), ``x-key`` (BFL), ``fal`` (``Authorization: Key``), ``replicate``
                (Bearer or Token) or None (public).
        """
        rx = re.escape(path)
        rx = re.sub(r"\\\{(\w+):path\\\}", r"(?P<\1>.+)", rx)
        rx = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", rx)
        checks, denials = _AUTH[auth] if auth else (None, _deny_openai)
        self.routes.append(Route(name or path, method.upper(), re.compile(rx + "$"), handler,
                                 checks, denials, error or _openai_error, prompt_of))

    def push(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next calls to ``path`` (a literal path or a route name)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def push_for_prompt(self, prompt: str, *faults: Fault) -> None:
        """Queue faults for the next calls with this prompt (one each)."""
        with self._lock:
            self._prompt_faults.setdefault(prompt, deque()).extend(faults)

    def set_outcome(self, prompt: str, outcome: str | None) -> None:
        """What the provider does with this prompt (each provider's section lists its outcomes:
        ``moderated``, ``failed``, ``expired``, ``pending:N`` ...); None: a normal image."""
        with self._lock:
            if outcome is None:
                self._outcomes.pop(prompt, None)
            else:
                self._outcomes[prompt] = outcome

    def outcome(self, prompt: str | None) -> str | None:
        return self._outcomes.get(prompt or "")

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.prompt_calls.clear()
            self.requests.clear()
            self._faults.clear()
            self._prompt_faults.clear()
            self._outcomes.clear()
            self.jobs.clear()
            self._area, self._t_first, self._t_last, self._max_in_flight = 0.0, None, 0.0, 0

    def in_flight_stats(self) -> dict[str, float]:
        """Requests being served: time-weighted mean between the first request's arrival and
        the last answer, and the maximum."""
        with self._lock:
            span = (self._t_last - self._t_first) if self._t_first is not None else 0.0
            return {"mean": self._area / span if span > 0 else 0.0, "max": self._max_in_flight,
                    "seconds": span}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first (with FakeProviders() as fake)"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeProviders:
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

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

    def new_job(self, provider: str, prompt: str, params: dict[str, Any]) -> Job:
        outcome = self.outcome(prompt)
        pending = self.pending_polls
        if outcome and outcome.startswith("pending:"):
            pending, outcome = int(outcome.split(":", 1)[1]), None
        seed = params.get("seed")
        job = Job(uuid.uuid4().hex, provider, prompt, params, time.time(), outcome, pending,
                  int(seed) if isinstance(seed, int) and seed else next(self._seeds))
        with self._lock:
            self.jobs[job.id] = job
        return job

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
        if self.latency_s and self._stop.wait(self.latency_s):
            return
        rid = f"req_{uuid.uuid4().hex[:24]}"
        if route is None:
            reply = Reply(404, _err(f"Invalid URL ({method} {path})", "invalid_request_error", None))
        elif route.auth is not None and not route.auth(h.headers, query, self.api_key):
            reply = route.unauthorized()
        elif fault is not None:
            if fault.delay_s and self._stop.wait(fault.delay_s):
                return  # server stopping: drop the connection
            reply = route.handler(self, req) if fault.then_ok else Reply(
                fault.status, fault.body or route.error(fault.status, f"HTTP {fault.status}"),
                dict(fault.headers))
        else:
            reply = route.handler(self, req)
        self._send(h, reply, rid)

    def _control(self, path: str, method: str) -> Reply:
        """``GET /_fake/stats`` (counters, in-flight) and ``POST /_fake/reset``, for demos and
        the benchmark (which runs the fake in another process)."""
        if path == "/_fake/stats":
            return Reply(200, {"calls": dict(self.calls), "in_flight": self.in_flight_stats()})
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


# -- authentication, per provider ---------------------------------------------------------

def _bearer(h: dict[str, str], q: dict[str, str], key: str) -> bool:
    return h.get("Authorization") == f"Bearer {key}"


def _deny_openai() -> Reply:
    return Reply(401, _err("Incorrect API key provided. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.",
                           "invalid_request_error", "invalid_api_key"))


def _goog(h: dict[str, str], q: dict[str, str], key: str) -> bool:
    return h.get("x-goog-api-key", q.get("key")) == key


def _deny_goog() -> Reply:
    # Google answers a bad key with 400 INVALID_ARGUMENT, not 401.
    return Reply(400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid "
                                 "API key.", "status": "INVALID_ARGUMENT", "details": [
                                     {"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                      "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})


def _xkey(h: dict[str, str], q: dict[str, str], key: str) -> bool:
    return h.get("x-key") == key


def _deny_detail(status: int = 401, detail: str = "Not authenticated") -> Callable[[], Reply]:
    return lambda: Reply(status, {"detail": detail})


def _fal_key(h: dict[str, str], q: dict[str, str], key: str) -> bool:
    return h.get("Authorization") == f"Key {key}"


def _replicate_auth(h: dict[str, str], q: dict[str, str], key: str) -> bool:
    return h.get("Authorization") in (f"Bearer {key}", f"Token {key}")


def _deny_replicate() -> Reply:
    return Reply(401, {"title": "Unauthenticated", "status": 401,
                       "detail": "You did not pass a valid authentication token"})


def _deny_stability() -> Reply:
    return Reply(401, {"id": uuid.uuid4().hex, "name": "unauthorized",
                       "errors": ["authorization: invalid or missing API key"]})


_AUTH: dict[str, tuple[Any, Callable[[], Reply]]] = {
    "bearer": (_bearer, _deny_openai),
    "goog": (_goog, _deny_goog),
    "x-key": (_xkey, _deny_detail(403, "Not authenticated - Invalid Authentication")),
    "fal": (_fal_key, _deny_detail(401, "Invalid or missing credentials")),
    "replicate": (_replicate_auth, _deny_replicate),
    "stability": (_bearer, _deny_stability),
}


def _file_route(fake: FakeProviders, req: Request) -> Reply:
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


# -- OpenAI Images ------------------------------------------------------------------------

OPENAI_SIZES = {
    "gpt-image": ("1024x1024", "1536x1024", "1024x1536", "auto"),
    "dall-e-3": ("1024x1024", "1792x1024", "1024x1792"),
    "dall-e-2": ("256x256", "512x512", "1024x1024"),
}
OPENAI_QUALITIES = {
    "gpt-image": ("low", "medium", "high", "auto"),
    "dall-e-3": ("standard", "hd"),
    "dall-e-2": ("standard",),
}


def _family(model: str) -> str:
    return "gpt-image" if model.startswith("gpt-image") else model


def openai_routes(fake: FakeProviders) -> None:
    """``POST /v1/images/generations`` and ``POST /v1/images/edits``."""
    fake.route("POST", "/v1/images/generations", _openai_generate)
    fake.route("POST", "/v1/images/edits", _openai_edit)


def _openai_check(params: dict[str, Any]) -> Reply | None:
    model = str(params.get("model") or "dall-e-2")
    fam = _family(model)
    if fam not in OPENAI_SIZES:
        return Reply(404, _err(f"The model '{model}' does not exist.", "invalid_request_error",
                               "model_not_found", "model"))
    if not params.get("prompt"):
        return Reply(400, _err("Missing required parameter: 'prompt'.", "invalid_request_error",
                               "missing_required_parameter", "prompt"))
    size = params.get("size")
    if size is not None and size not in OPENAI_SIZES[fam]:
        return Reply(400, _err(f"Invalid value: '{size}'. Supported values are: "
                               f"{', '.join(repr(s) for s in OPENAI_SIZES[fam])}.",
                               "invalid_request_error", "invalid_value", "size"))
    q = params.get("quality")
    if q is not None and q not in OPENAI_QUALITIES[fam]:
        return Reply(400, _err(f"Invalid value: '{q}'. Supported values are: "
                               f"{', '.join(repr(s) for s in OPENAI_QUALITIES[fam])}.",
                               "invalid_request_error", "invalid_value", "quality"))
    n = int(params.get("n") or 1)
    if fam == "dall-e-3" and n != 1:
        return Reply(400, _err("You must provide n=1 for this model.", "invalid_request_error",
                               "invalid_value", "n"))
    if fam == "gpt-image" and "response_format" in params:
        return Reply(400, _err("Unknown parameter: 'response_format'.", "invalid_request_error",
                               "unknown_parameter", "response_format"))
    return None


def _openai_images(params: dict[str, Any]) -> Reply:
    model = str(params.get("model") or "dall-e-2")
    fam = _family(model)
    prompt = str(params["prompt"])
    n = int(params.get("n") or 1)
    data = []
    for i in range(n):
        item: dict[str, Any] = {}
        png = prompt_png(prompt if i == 0 else f"{prompt}#{i}")
        if fam == "gpt-image" or params.get("response_format") == "b64_json":
            item["b64_json"] = base64.b64encode(png).decode()
        else:  # URLs expire; the adapter never asks for them
            item["url"] = f"https://fake.invalid/{hashlib.sha1(png).hexdigest()}.png"
        if fam == "dall-e-3":
            item["revised_prompt"] = f"A detailed rendering of: {prompt}"
        data.append(item)
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if fam == "gpt-image":
        words = len(prompt.split())
        body.update({
            "background": "opaque", "output_format": "png",
            "quality": params.get("quality") or "medium", "size": params.get("size") or "1024x1024",
            "usage": {"input_tokens": words, "output_tokens": 1056 * n,
                      "total_tokens": words + 1056 * n,
                      "input_tokens_details": {"text_tokens": words, "image_tokens": 0}},
        })
    return Reply(200, body)


def _openai_generate(fake: FakeProviders, req: Request) -> Reply:
    params = req.json if isinstance(req.json, dict) else {}
    return _openai_check(params) or _openai_images(params)


def _openai_edit(fake: FakeProviders, req: Request) -> Reply:
    from PIL import Image

    params: dict[str, Any] = dict(req.form)
    if _family(str(params.get("model") or "dall-e-2")) == "dall-e-3":
        return Reply(400, _err("dall-e-3 does not support image edits.", "invalid_request_error",
                               "invalid_value", "model"))
    bad = _openai_check(params)
    if bad:
        return bad
    image = req.files.get("image") or req.files.get("image[]")
    if not image:
        return Reply(400, _err("Missing required parameter: 'image'.", "invalid_request_error",
                               "missing_required_parameter", "image"))
    try:
        with Image.open(io.BytesIO(image)) as im:
            isize = im.size
        if "mask" in req.files:
            with Image.open(io.BytesIO(req.files["mask"])) as m:
                if m.size != isize:
                    return Reply(400, _err("The image and mask must have the same dimensions.",
                                           "invalid_request_error", "invalid_value", "mask"))
                if "A" not in m.getbands():
                    return Reply(400, _err("Invalid input image - format must be in ['RGBA', "
                                           "'LA', 'L'], got RGB.", "invalid_request_error",
                                           "invalid_image_format", "mask"))
    except OSError:
        return Reply(400, _err("Invalid image file.", "invalid_request_error", "invalid_image", "image"))
    return _openai_images(params)


# -- Google: Imagen (:predict) and Gemini image models (:generateContent) -------------------
# Outcomes: "moderated" (Imagen: filtered, with raiFilteredReason when includeRaiReason;
# Gemini: finishReason IMAGE_SAFETY), any Gemini finishReason by name (IMAGE_SAFETY,
# IMAGE_PROHIBITED_CONTENT, NO_IMAGE, SAFETY ...), "blocked" (promptFeedback.blockReason) and
# "text_only" (the model answers in words, no image).

_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}
_GOOGLE_MESSAGES = {429: "Resource has been exhausted (e.g. check quota).",
                    500: "An internal error has occurred. Please retry or report in "
                         "https://developers.generativeai.google/guide/troubleshooting",
                    503: "The model is overloaded. Please try again later."}
IMAGEN_ASPECTS = ("1:1", "3:4", "4:3", "9:16", "16:9")
GEMINI_ASPECTS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
GEMINI_FINISH_REFUSALS = ("IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_OTHER", "NO_IMAGE",
                          "IMAGE_RECITATION", "SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII",
                          "RECITATION", "OTHER")


def _google_error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": _GOOGLE_MESSAGES.get(status, message),
                      "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}}


def _google_bad(message: str, status: int = 400) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message,
                                    "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}})


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
    also under ``/{version}/publishers/google/models/{model}`` (Vertex AI express mode)."""
    for prefix in ("/{version}/models/{model}", "/{version}/publishers/google/models/{model}"):
        fake.route("POST", prefix + ":predict", _google_predict, name="google.predict",
                   auth="goog", error=_google_error, prompt_of=_predict_prompt)
        fake.route("POST", prefix + ":generateContent", _google_generate_content,
                   name="google.generateContent", auth="goog", error=_google_error,
                   prompt_of=_contents_prompt)


def _google_predict(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    if not model.startswith("imagen-"):
        return _google_bad(f"models/{model} is not found for API version v1beta, or is not "
                           "supported for predict. Call ListModels to see the list of available "
                           "models and their supported methods.", 404)
    prompt = _predict_prompt(req)
    if not prompt:
        return _google_bad("Invalid value at 'instances[0].prompt' (TYPE_STRING): a prompt is "
                           "required.")
    p = (req.json or {}).get("parameters") or {}
    n = p.get("sampleCount", 4)
    if not isinstance(n, int) or not 1 <= n <= 4:
        return _google_bad("sampleCount must be between 1 and 4.")
    ar = p.get("aspectRatio", "1:1")
    if ar not in IMAGEN_ASPECTS:
        return _google_bad(f"Unsupported aspect ratio: {ar}. Supported: {', '.join(IMAGEN_ASPECTS)}.")
    pg = p.get("personGeneration")
    if pg is not None and pg not in ("dont_allow", "allow_adult", "allow_all"):
        return _google_bad(f"Invalid personGeneration: {pg}.")
    mime = (p.get("outputOptions") or {}).get("mimeType", "image/png")
    fmt = "jpeg" if mime == "image/jpeg" else "png"
    filtered = fake.outcome(prompt) == "moderated"
    preds: list[dict[str, Any]] = []
    for i in range(n):
        if filtered:
            if p.get("includeRaiReason"):
                preds.append({"raiFilteredReason": "Your current safety filter threshold filtered "
                              "out 1 generated images. You will not be charged for blocked "
                              "images. Try rephrasing the prompt. Support codes: 56562880"})
            continue
        img = prompt_image(prompt if i == 0 else f"{prompt}#{i}", fmt)
        preds.append({"bytesBase64Encoded": base64.b64encode(img).decode(), "mimeType": mime})
    return Reply(200, {"predictions": preds} if preds else {})


def _google_generate_content(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    body = req.json if isinstance(req.json, dict) else {}
    prompt = _contents_prompt(req)
    if not prompt:
        return _google_bad("* GenerateContentRequest.contents: contents is not specified")
    gc = body.get("generationConfig") or {}
    modalities = [str(m).upper() for m in gc.get("responseModalities") or ["TEXT"]]
    ar = (gc.get("imageConfig") or {}).get("aspectRatio", "1:1")
    if ar not in GEMINI_ASPECTS:
        return _google_bad(f"Unsupported aspect ratio: {ar}.")
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


# -- Stability AI v2beta stable-image generate ----------------------------------------------
# Outcomes: "moderated" (403 content_moderation) and "filtered" (200, finish-reason
# CONTENT_FILTERED, a blurred image).

STABILITY_ASPECTS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
STABILITY_SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
_STABILITY_NAMES = {400: "bad_request", 401: "unauthorized", 402: "payment_required",
                    403: "content_moderation", 404: "not_found", 413: "payload_too_large",
                    422: "invalid_parameters", 429: "rate_limit_exceeded", 500: "internal_error"}


def _stability_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        message = ("You have exceeded the rate limit of 150 requests within a 10 second period, "
                   "and have been timed out for 60 seconds.")
    elif status >= 500:
        message = "An unexpected server error has occurred, please try again later."
    return {"id": uuid.uuid4().hex, "name": _STABILITY_NAMES.get(status, "error"),
            "errors": [message]}


def _stability_bad(message: str, status: int = 400) -> Reply:
    return Reply(status, {"id": uuid.uuid4().hex, "name": _STABILITY_NAMES.get(status, "error"),
                          "errors": [message]})


def stability_routes(fake: FakeProviders) -> None:
    """``POST /v2beta/stable-image/generate/{core|ultra|sd3}`` (multipart form)."""
    fake.route("POST", "/v2beta/stable-image/generate/{service}", _stability_generate,
               name="stability.generate", auth="stability", error=_stability_error)


def _stability_generate(fake: FakeProviders, req: Request) -> Reply:
    service = req.params["service"]
    if service not in ("core", "ultra", "sd3"):
        return _stability_bad(f"/v2beta/stable-image/generate/{service} not found", 404)
    if not req.headers.get("content-type", "").startswith("multipart/form-data"):
        return _stability_bad("content-type: must be multipart/form-data")
    accept = req.headers.get("accept", "image/*")
    if accept not in ("image/*", "application/json"):
        return _stability_bad("accept: must be one of image/* or application/json")
    f = req.form
    if not f.get("prompt"):
        return _stability_bad("prompt: cannot be empty")
    if f.get("aspect_ratio", "1:1") not in STABILITY_ASPECTS:
        return _stability_bad(f"aspect_ratio: must be one of {', '.join(STABILITY_ASPECTS)}")
    fmt = f.get("output_format", "png")
    if fmt not in ("png", "jpeg", "webp") or (service == "sd3" and fmt == "webp"):
        return _stability_bad(f"output_format: {fmt!r} is not supported")
    if service == "sd3" and f.get("model", "sd3.5-large") not in STABILITY_SD3_MODELS:
        return _stability_bad(f"model: must be one of {', '.join(STABILITY_SD3_MODELS)}")
    try:
        seed = int(f.get("seed", "0"))
    except ValueError:
        return _stability_bad("seed: must be an integer")
    if not 0 <= seed <= 4294967294:
        return _stability_bad("seed: must be between 0 and 4294967294")
    outcome = fake.outcome(f["prompt"])
    if outcome == "moderated":
        return _stability_bad("Your request was flagged by our content moderation system, as a "
                              "result your request was denied and you were not charged.", 403)
    seed = seed or next(fake._seeds)
    finish = "CONTENT_FILTERED" if outcome == "filtered" else "SUCCESS"
    img = prompt_image(f["prompt"] + ("#blurred" if finish != "SUCCESS" else ""), fmt)
    if accept == "application/json":
        return Reply(200, {"image": base64.b64encode(img).decode(), "finish_reason": finish,
                           "seed": seed})
    return Reply(200, None, {"finish-reason": finish, "seed": str(seed)}, raw=img,
                 content_type=_MIME[fmt])


# -- Replicate predictions ------------------------------------------------------------------
# Outcomes: "moderated" (failed: NSFW content detected), "failed", "canceled", "expired"
# (output URLs already expired), "pending:N".

REPLICATE_MODELS = ("black-forest-labs/flux-schnell", "black-forest-labs/flux-dev",
                    "black-forest-labs/flux-1.1-pro", "black-forest-labs/flux-pro",
                    "stability-ai/stable-diffusion-3.5-large", "ideogram-ai/ideogram-v3-turbo",
                    "recraft-ai/recraft-v3", "google/imagen-4")
_REPLICATE_TITLES = {404: "Not found", 422: "Input validation failed", 429: "Too Many Requests",
                     500: "Internal Server Error", 503: "Service Unavailable"}


def _replicate_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        message = "Request was throttled. Expected available in 1 second."
    return {"title": _REPLICATE_TITLES.get(status, "Error"), "detail": message, "status": status}


def _input_prompt(req: Request) -> str | None:
    inp = (req.json or {}).get("input") if isinstance(req.json, dict) else None
    p = inp.get("prompt") if isinstance(inp, dict) else None
    return p if isinstance(p, str) else None


def _no_prompt(req: Request) -> str | None:
    return None


def replicate_routes(fake: FakeProviders) -> None:
    """``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/predictions`` (a version),
    ``GET /v1/predictions/{id}`` and the output files."""
    kw: dict[str, Any] = {"auth": "replicate", "error": _replicate_error}
    fake.route("POST", "/v1/models/{owner}/{name}/predictions", _replicate_create,
               name="replicate.create", prompt_of=_input_prompt, **kw)
    fake.route("POST", "/v1/predictions", _replicate_create, name="replicate.create",
               prompt_of=_input_prompt, **kw)
    fake.route("GET", "/v1/predictions/{id}", _replicate_get, name="replicate.get",
               prompt_of=_no_prompt, **kw)
    fake.route("GET", "/replicate-delivery/{token}.{ext}", _file_route, name="replicate.file",
               auth=None, prompt_of=_no_prompt)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def _replicate_create(fake: FakeProviders, req: Request) -> Reply:
    body = req.json if isinstance(req.json, dict) else {}
    if "owner" in req.params:
        model, version = f"{req.params['owner']}/{req.params['name']}", "hidden"
        if model not in REPLICATE_MODELS:
            return Reply(404, _replicate_error(404, "The requested resource could not be found."))
    else:
        version = str(body.get("version") or "")
        if not re.fullmatch(r"([\w.-]+/[\w.-]+:)?[0-9a-f]{64}", version):
            return Reply(422, {"title": "Invalid version", "status": 422, "detail":
                               "The specified version does not exist (or perhaps you don't "
                               "have permission to use it?)"})
        model, version = "unknown/community-model", version.rsplit(":", 1)[-1]
    inp = body.get("input")
    if not isinstance(inp, dict) or not inp.get("prompt"):
        return Reply(422, {"title": "Input validation failed", "status": 422,
                           "detail": "- input: prompt is required", "invalid_fields": [
                               {"type": "required", "field": "input", "description":
                                "prompt is required"}]})
    job = fake.new_job("replicate", inp["prompt"], {"input": inp, "model": model,
                                                     "version": version, "seed": inp.get("seed")})
    wait = req.headers.get("prefer", "")
    if wait.startswith("wait"):
        limit = float(wait.partition("=")[2] or 60)
        left = fake.job_seconds - (time.time() - job.created)
        if left > 0 and fake._stop.wait(min(left, limit)):
            return Reply(503, _replicate_error(503, "shutting down"))
        if left <= limit:
            job.polls = job.pending_polls + 1
    return Reply(201, _replicate_state(fake, job))


def _replicate_get(fake: FakeProviders, req: Request) -> Reply:
    job = fake.jobs.get(req.params["id"])
    if job is None or job.provider != "replicate":
        return Reply(404, _replicate_error(404, "The requested resource could not be found."))
    job.polls += 1
    return Reply(200, _replicate_state(fake, job))


def _replicate_state(fake: FakeProviders, job: Job) -> dict[str, Any]:
    base = f"{fake.url}/v1/predictions/{job.id}"
    inp = job.params["input"]
    d: dict[str, Any] = {
        "id": job.id, "model": job.params["model"], "version": job.params["version"],
        "input": inp, "logs": "", "output": None, "data_removed": False, "error": None,
        "status": "starting", "created_at": _iso(job.created), "started_at": None,
        "completed_at": None, "urls": {"cancel": base + "/cancel", "get": base,
                                       "stream": f"{fake.url}/v1/stream/{job.id}",
                                       "web": f"https://replicate.com/p/{job.id}"}}
    if job.polls == 0 and not job.ready(fake):
        return d
    d["started_at"] = _iso(job.created + 0.01)
    if not job.ready(fake):
        d["status"] = "processing"
        d["logs"] = f"Using seed: {job.seed}\n"
        return d
    d["completed_at"] = _iso(time.time())
    d["metrics"] = {"predict_time": 0.42, "total_time": round(time.time() - job.created, 3)}
    d["logs"] = f"Using seed: {job.seed}\n"
    if job.outcome == "moderated":
        d |= {"status": "failed", "error": "NSFW content detected. Try running it again, or try "
              "a different prompt."}
    elif job.outcome == "failed":
        d |= {"status": "failed", "error": "CUDA error: out of memory"}
    elif job.outcome == "canceled":
        d |= {"status": "canceled"}
    else:
        if not job.result_urls:
            fmt = str(inp.get("output_format") or "webp")
            n = int(inp.get("num_outputs") or 1)
            job.result_urls = [fake.host_file(prompt_image(job.prompt if i == 0 else
                                                           f"{job.prompt}#{i}", fmt),
                                              _MIME.get(fmt, "image/webp"), "replicate-delivery",
                                              fmt, expired=job.outcome == "expired")
                               for i in range(n)]
        single = job.params["model"] in ("black-forest-labs/flux-1.1-pro", "google/imagen-4")
        d |= {"status": "succeeded", "output": job.result_urls[0] if single else job.result_urls}
    return d


# -- fal queue (https://queue.fal.run is served under /fal) ---------------------------------
# Outcomes: "moderated" (has_nsfw_concepts: [true]), "failed" (the result is an error),
# "expired" (image URLs already expired), "pending:N".

FAL_APPS = ("fal-ai/flux/dev", "fal-ai/flux/schnell", "fal-ai/flux-pro/v1.1",
            "fal-ai/flux-pro/v1.1-ultra", "fal-ai/recraft-v3", "fal-ai/ideogram/v3",
            "fal-ai/imagen4/preview")
FAL_SIZES = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
             "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768),
             "landscape_16_9": (1024, 576)}


def _fal_error(status: int, message: str) -> dict[str, Any]:
    return {"detail": "Too many requests" if status == 429 else message}


def fal_routes(fake: FakeProviders) -> None:
    """Queue submit ``POST /fal/{app}``, ``GET .../requests/{id}/status`` and
    ``GET .../requests/{id}`` (the result), and the image files."""
    kw: dict[str, Any] = {"auth": "fal", "error": _fal_error}
    fake.route("GET", "/fal/{owner}/{app}/requests/{rid}/status", _fal_status,
               name="fal.status", prompt_of=_no_prompt, **kw)
    fake.route("GET", "/fal/{owner}/{app}/requests/{rid}", _fal_result, name="fal.result",
               prompt_of=_no_prompt, **kw)
    fake.route("POST", "/fal/{app:path}", _fal_submit, name="fal.submit", **kw)
    fake.route("GET", "/fal-media/{token}.{ext}", _file_route, name="fal.file", auth=None,
               prompt_of=_no_prompt)


def _fal_urls(fake: FakeProviders, job: Job) -> dict[str, str]:
    base = f"{fake.url}/fal/{job.params['root']}/requests/{job.id}"
    return {"response_url": base, "status_url": base + "/status", "cancel_url": base + "/cancel"}


def _fal_submit(fake: FakeProviders, req: Request) -> Reply:
    app = req.params["app"]
    if app not in FAL_APPS:
        return Reply(404, {"detail": f"Application '{app}' not found"})
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("prompt"):
        return Reply(422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required",
                                       "type": "value_error.missing"}]})
    size = body.get("image_size", "landscape_4_3")
    if isinstance(size, str) and size not in FAL_SIZES:
        return Reply(422, {"detail": [{"loc": ["body", "image_size"], "msg": "value is not a "
                                       "valid enumeration member", "type": "type_error.enum"}]})
    job = fake.new_job("fal", body["prompt"], {"input": body, "app": app,
                                               "root": "/".join(app.split("/")[:2]),
                                               "seed": body.get("seed")})
    return Reply(200, {"request_id": job.id, **_fal_urls(fake, job), "queue_position": 0})


def _fal_job(fake: FakeProviders, req: Request) -> Job | None:
    job = fake.jobs.get(req.params["rid"])
    return job if job is not None and job.provider == "fal" else None


def _fal_status(fake: FakeProviders, req: Request) -> Reply:
    job = _fal_job(fake, req)
    if job is None:
        return Reply(404, {"detail": "Request not found"})
    job.polls += 1
    urls = _fal_urls(fake, job)
    if job.ready(fake):
        return Reply(200, {"status": "COMPLETED", "request_id": job.id, **urls, "logs": None,
                           "metrics": {"inference_time": 0.42}})
    if job.polls <= job.pending_polls // 2:
        return Reply(202, {"status": "IN_QUEUE", "request_id": job.id, **urls,
                           "queue_position": job.pending_polls // 2 - job.polls})
    return Reply(202, {"status": "IN_PROGRESS", "request_id": job.id, **urls, "logs": None})


def _fal_result(fake: FakeProviders, req: Request) -> Reply:
    job = _fal_job(fake, req)
    if job is None:
        return Reply(404, {"detail": "Request not found"})
    if not job.ready(fake):
        return Reply(400, {"detail": "Request is still in progress"})
    if job.outcome == "failed":
        return Reply(422, {"detail": [{"loc": ["body"], "msg": "Generation failed: the model "
                                       "raised an error", "type": "runtime_error"}]})
    inp = job.params["input"]
    fmt = str(inp.get("output_format") or "jpeg")
    size = inp.get("image_size", "landscape_4_3")
    w, h = FAL_SIZES[size] if isinstance(size, str) else (size["width"], size["height"])
    nsfw = job.outcome == "moderated"
    if not job.result_urls:
        for i in range(int(inp.get("num_images") or 1)):
            img = prompt_image("#black" if nsfw else job.prompt if i == 0 else f"{job.prompt}#{i}",
                               fmt)
            if inp.get("sync_mode"):
                job.result_urls.append(f"data:{_MIME[fmt]};base64,{base64.b64encode(img).decode()}")
            else:
                job.result_urls.append(fake.host_file(img, _MIME[fmt], "fal-media", fmt,
                                                      expired=job.outcome == "expired"))
    images = [{"url": u, "width": w, "height": h, "content_type": _MIME[fmt]}
              for u in job.result_urls]
    return Reply(200, {"images": images, "timings": {"inference": 0.42}, "seed": job.seed,
                       "has_nsfw_concepts": [nsfw] * len(images), "prompt": job.prompt})


# -- Black Forest Labs (Flux) ---------------------------------------------------------------
# Outcomes: "moderated" (Request Moderated), "content_moderated" (Content Moderated),
# "failed" (Error), "expired" (the sample URL has already expired), "pending:N".

BFL_MODELS = ("flux-pro-1.1", "flux-pro-1.1-ultra", "flux-pro", "flux-dev", "flux-kontext-pro",
              "flux-kontext-max")


def _bfl_error(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        message = ("You have exceeded the number of active tasks (24). Please wait for some "
                   "tasks to complete.")
    elif status == 402:
        message = "Insufficient credits. Please add credits at https://dashboard.bfl.ai."
    return {"detail": message}


def bfl_routes(fake: FakeProviders) -> None:
    """``POST /v1/{model}`` (submit), ``GET /v1/get_result?id=`` (the polling URL) and the
    expiring sample files. Added last: ``/v1/{model}`` would shadow other ``/v1/x`` routes."""
    fake.route("GET", "/v1/get_result", _bfl_result, name="bfl.poll", auth="x-key",
               error=_bfl_error, prompt_of=_no_prompt)
    fake.route("POST", "/v1/{model}", _bfl_submit, name="bfl.submit", auth="x-key",
               error=_bfl_error)
    fake.route("GET", "/bfl-delivery/{token}.{ext}", _file_route, name="bfl.sample", auth=None,
               prompt_of=_no_prompt)


def _bfl_invalid(field_: str, msg: str, value: Any) -> Reply:
    return Reply(422, {"detail": [{"type": "value_error", "loc": ["body", field_], "msg": msg,
                                   "input": value}]})


def _bfl_submit(fake: FakeProviders, req: Request) -> Reply:
    model = req.params["model"]
    if model not in BFL_MODELS:
        return Reply(404, {"detail": "Not Found"})
    body = req.json if isinstance(req.json, dict) else {}
    if not body.get("prompt"):
        return _bfl_invalid("prompt", "Field required", None)
    for dim in ("width", "height"):
        v = body.get(dim)
        if v is not None and (not isinstance(v, int) or v % 32 or not 256 <= v <= 1440):
            return _bfl_invalid(dim, "Input should be a multiple of 32 between 256 and 1440", v)
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        return _bfl_invalid("output_format", "Input should be 'jpeg' or 'png'",
                            body.get("output_format"))
    job = fake.new_job("bfl", body["prompt"], dict(body) | {"model": model})
    return Reply(200, {"id": job.id, "polling_url": f"{fake.url}/v1/get_result?id={job.id}"})


def _bfl_result(fake: FakeProviders, req: Request) -> Reply:
    jid = req.query.get("id", "")
    job = fake.jobs.get(jid)
    if job is None or job.provider != "bfl":
        return Reply(404, {"id": jid, "status": "Task not found", "result": None,
                           "progress": None, "details": None})
    job.polls += 1
    d: dict[str, Any] = {"id": job.id, "status": "Pending", "result": None, "progress": None,
                         "details": None}
    if not job.ready(fake):
        return Reply(200, d | {"progress": round(min(0.95, 0.1 * job.polls), 2)})
    if job.outcome == "moderated":
        return Reply(200, d | {"status": "Request Moderated",
                               "details": {"Moderation Reasons": ["Derivative Works"]}})
    if job.outcome == "content_moderated":
        return Reply(200, d | {"status": "Content Moderated",
                               "details": {"Moderation Reasons": ["NSFW"]}})
    if job.outcome == "failed":
        return Reply(200, d | {"status": "Error", "details": {"error": "Generation failed"}})
    if not job.result_urls:
        fmt = str(job.params.get("output_format") or "jpeg")
        job.result_urls = [fake.host_file(prompt_image(job.prompt, fmt), _MIME[fmt],
                                          "bfl-delivery", fmt, expired=job.outcome == "expired")]
    now = time.time()
    return Reply(200, d | {"status": "Ready", "result": {
        "sample": job.result_urls[0], "prompt": job.prompt, "seed": job.seed,
        "start_time": job.created, "end_time": now, "duration": round(now - job.created, 3)}})


ALL_PROVIDERS: tuple[Callable[[FakeProviders], None], ...] = (
    openai_routes, google_routes, stability_routes, replicate_routes, fal_routes, bfl_routes)
"""Every provider, in the order their routes are matched (BFL's ``/v1/{model}`` last)."""

ENV_VARS = {"openai": "OPENAI_API_KEY", "google": "GEMINI_API_KEY",
            "stability": "STABILITY_API_KEY", "bfl": "BFL_API_KEY",
            "replicate": "REPLICATE_API_TOKEN", "fal": "FAL_KEY"}
"""The environment variable each provider's model configs read the key from."""


def base_urls(url: str) -> dict[str, str]:
    """The ``options.base_url`` each provider's adapter takes, on a fake at ``url``."""
    return {"openai": f"{url}/v1", "google": f"{url}/v1beta", "stability": url, "bfl": url,
            "replicate": f"{url}/v1", "fal": f"{url}/fal"}


DEMO_MODELS = {"openai": "openai_gpt_image", "google": "imagen4", "stability": "stability_core",
               "bfl": "flux_pro", "replicate": "replicate_flux_schnell", "fal": "fal_flux_dev"}


def main(argv: list[str] | None = None) -> int:
    """``harness fake-providers``: serve every provider's fake API until Ctrl-C."""
    ap = argparse.ArgumentParser(
        prog="harness fake-providers",
        description="Serve fake OpenAI, Google, Stability, Black Forest Labs, Replicate and fal "
                    "APIs on 127.0.0.1, for demos and offline runs. Images are small coloured "
                    "squares; nothing leaves this machine.")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    ap.add_argument("--key", default="fake-key", help="the API key every provider accepts")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds every answer is delayed (default 0)")
    ap.add_argument("--pending-polls", type=int, default=2,
                    help="polls a submitted job answers 'not ready' before its result")
    args = ap.parse_args(argv)
    fake = FakeProviders(api_key=args.key, port=args.port)
    fake.latency_s = args.latency
    fake.pending_polls = args.pending_polls
    fake.start()
    urls = base_urls(fake.url)
    print(f"fake providers on {fake.url} (key {args.key!r})")
    for p, u in urls.items():
        print(f"  {p:<10} {u}")
    print("set the keys:")
    for var in dict.fromkeys(ENV_VARS.values()):
        print(f"  export {var}={args.key}")
    print("and point the models at it, e.g.:")
    overrides = " ".join(f"models.{m}.options.base_url={urls[p]}" for p, m in DEMO_MODELS.items())
    print(f"  harness run 'models=[{','.join(DEMO_MODELS.values())}]' {overrides}")
    print(f"stats: GET {fake.url}/_fake/stats   Ctrl-C to stop", flush=True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    import signal

    signal.signal(signal.SIGTERM, interrupt)  # 'kill PID' stops it as cleanly as Ctrl-C
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
