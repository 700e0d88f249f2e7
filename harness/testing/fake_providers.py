"""A real HTTP server on 127.0.0.1 that speaks providers' wire formats, for tests.

::

    with FakeProviders(api_key="sk-test") as fake:
        fake.push("/v1/images/generations", Fault.rate_limit(retry_after=1))
        ... OpenAIImages(options={"base_url": fake.url + "/v1"}) ...
        assert fake.calls["/v1/images/generations"] == 2

Routes live in a table (``(method, path) -> handler``); a provider is a function that adds its
routes (:func:`openai_routes`). Scripted faults are queued per path (:meth:`FakeProviders.push`)
or per prompt (:meth:`FakeProviders.push_for_prompt`) and each is used by one call. Images are
small deterministic PNGs derived from the prompt; the size asked for is validated and recorded
but not rendered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    """One scripted misbehaviour, used by one call."""

    status: int = 500
    """Status to answer with (ignored when ``then_ok``)."""
    body: dict[str, Any] | None = None
    """JSON body of the error answer (None: an error shape for the status)."""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    """Seconds to wait before answering (a hang when longer than the client's timeout)."""
    then_ok: bool = False
    """After the delay, answer normally (a slow answer) instead of with ``status``."""

    @classmethod
    def rate_limit(cls, retry_after: float | None = None, retry_after_ms: int | None = None) -> Fault:
        h = {}
        if retry_after is not None:
            h["Retry-After"] = f"{retry_after:g}"
        if retry_after_ms is not None:
            h["retry-after-ms"] = str(retry_after_ms)
        return cls(429, _err("Rate limit reached for requests", "requests", "rate_limit_exceeded"), h)

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        return cls(status, _err("The server had an error while processing your request.",
                                "server_error", None))

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


@dataclass
class Request:
    """What a handler sees: parsed body, form fields, files; headers without auth."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[["FakeProviders", Request], Reply]


def prompt_png(prompt: str, size: int = 64) -> bytes:
    """A small deterministic PNG for a prompt: two colours from its hash."""
    from PIL import Image

    h = hashlib.sha256(prompt.encode("utf-8")).digest()
    im = Image.new("RGB", (size, size), tuple(h[0:3]))
    im.paste(Image.new("RGB", (size, size // 2), tuple(h[3:6])), (0, size // 2))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class FakeProviders:
    """A threaded HTTP server on a free port of 127.0.0.1; a context manager.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        calls: Calls per path (faulted ones included).
        prompt_calls: Calls per prompt text.
        requests: Every request received, in order (auth header removed).
    """

    def __init__(self, api_key: str = "sk-fake-key",
                 providers: tuple[Callable[[FakeProviders], None], ...] | None = None) -> None:
        self.api_key = api_key
        self.routes: dict[tuple[str, str], Handler] = {}
        self.calls: Counter[str] = Counter()
        self.prompt_calls: Counter[str] = Counter()
        self.requests: list[Request] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._prompt_faults: dict[str, deque[Fault]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for add in providers or (openai_routes,):
            add(self)

    # -- scripting ------------------------------------------------------------------------

    def route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def push(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next calls to ``path`` (one each)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def push_for_prompt(self, prompt: str, *faults: Fault) -> None:
        """Queue faults for the next calls with this prompt (one each)."""
        with self._lock:
            self._prompt_faults.setdefault(prompt, deque()).extend(faults)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.prompt_calls.clear()
            self.requests.clear()
            self._faults.clear()
            self._prompt_faults.clear()

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

        self._stop.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), H)
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

    # -- serving --------------------------------------------------------------------------

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in h.headers.items() if k.lower() != "authorization"}
        req = Request(method, path, headers)
        ctype = h.headers.get("Content-Type", "")
        if ctype.startswith("application/json") and raw:
            req.json = json.loads(raw)
        elif ctype.startswith("multipart/form-data"):
            req.form, req.files = _parse_multipart(ctype, raw)
        prompt = (req.json or {}).get("prompt") if isinstance(req.json, dict) else req.form.get("prompt")
        with self._lock:
            self.calls[path] += 1
            if prompt is not None:
                self.prompt_calls[prompt] += 1
            self.requests.append(req)
            fault = None
            if prompt is not None and self._prompt_faults.get(prompt):
                fault = self._prompt_faults[prompt].popleft()
            elif self._faults.get(path):
                fault = self._faults[path].popleft()
        rid = f"req_{uuid.uuid4().hex[:24]}"
        handler = self.routes.get((method, path))
        if handler is None:
            reply = Reply(404, _err(f"Invalid URL ({method} {path})", "invalid_request_error", None))
        elif h.headers.get("Authorization") != f"Bearer {self.api_key}":
            reply = Reply(401, _err("Incorrect API key provided. You can find your API key at "
                                    "https://platform.openai.com/account/api-keys.",
                                    "invalid_request_error", "invalid_api_key"))
        elif fault is not None:
            if fault.delay_s and self._stop.wait(fault.delay_s):
                return  # server stopping: drop the connection
            reply = handler(self, req) if fault.then_ok else Reply(
                fault.status, fault.body or _err(f"HTTP {fault.status}", "server_error", None),
                dict(fault.headers))
        else:
            reply = handler(self, req)
        self._send(h, reply, rid)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply, rid: str) -> None:
        data = json.dumps(reply.body).encode()
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
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
