"""OpenAI Chat Completions, faked: ``POST /v1/chat/completions`` as the official SDK sends it.

What the route accepts follows the installed ``openai`` SDK, not our code: the body fields of
``CompletionCreateParamsNonStreaming`` (any other is ``unknown_parameter``), the model names of
the ``ChatModel`` literal, less those its "Deprecated values" docstring says are shut down by
:attr:`Chat.today` or not a supported id (answered as OpenAI answers a shut-down model: 404
``model_not_found``), the message roles of ``ChatCompletionMessageParam`` and the
``response_format`` types of its union. A strict ``json_schema`` is checked as Structured Outputs
checks it: every object lists all its properties in ``required`` and sets
``additionalProperties: false``. Answers are shaped as the SDK's ``ChatCompletion``.

What the "model" writes is the test's: :attr:`Chat.writer` maps the last user message to the
answer text, or to a :class:`Said` (a refusal, a cut-off answer, a content filter)::

    with FakeProviders(api_key=KEY, providers=(openai_chat.install,)) as fake:
        fake.chat.writer = lambda text: json.dumps({...})
        ... openai.OpenAI(api_key=KEY, base_url=fake.url + "/v1") ...
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import functools
import inspect
import json
import re
import time
import typing
import uuid
from collections.abc import Callable
from typing import Any

from harness.testing.fakes.openai import openai_error
from harness.testing.fakes.server import Auth, FakeProviders, Reply, Request, bearer, error_body

CHAT_PATH = "/v1/chat/completions"


@dataclasses.dataclass(frozen=True)
class Said:
    """An answer other than plain text: ``refusal`` (Structured Outputs' refusal field),
    ``finish_reason`` ``length`` (cut at the token limit) or ``content_filter``."""

    content: str | None = None
    refusal: str | None = None
    finish_reason: str = "stop"


@dataclasses.dataclass
class Chat:
    """The fake model: what it writes and the date that decides which models are shut down."""

    writer: Callable[[str], str | Said] = lambda text: json.dumps({"questions": []})
    today: dt.date = dataclasses.field(default_factory=dt.date.today)


@dataclasses.dataclass(frozen=True)
class ChatRules:
    fields: frozenset[str]
    models: frozenset[str]
    deprecated: dict[str, str]
    roles: frozenset[str]
    formats: frozenset[str]

    def gone(self, model: str, today: dt.date) -> bool:
        """Shut down by ``today``, or "Not a supported model ID", per the SDK's docstring."""
        note = self.deprecated.get(model, "")
        m = re.search(r"shutdown date:\s*(\d{4}-\d{2}-\d{2})", note)
        return "Not a supported model ID" in note or bool(m and dt.date.fromisoformat(m.group(1)) <= today)


@functools.cache
def chat_rules() -> ChatRules:
    """The Chat Completions rules of the installed openai SDK."""
    from openai.types.chat import chat_completion_message_param as mp
    from openai.types.chat import completion_create_params as cp
    from openai.types.shared import chat_model

    hints = typing.get_type_hints(cp.CompletionCreateParamsNonStreaming)
    roles = set()
    for member in typing.get_args(mp.ChatCompletionMessageParam):
        roles |= set(_literal(typing.get_type_hints(member)["role"]))
    formats = set()
    for member in typing.get_args(cp.ResponseFormat):
        formats |= set(_literal(typing.get_type_hints(member)["type"]))
    return ChatRules(frozenset(hints), frozenset(typing.get_args(chat_model.ChatModel)),
                     _deprecated(_doc_after(chat_model, "ChatModel")), frozenset(roles),
                     frozenset(formats))


def _literal(tp: Any) -> list[str]:
    if typing.get_origin(tp) is typing.Literal:
        return [str(v) for v in typing.get_args(tp)]
    return [v for arg in typing.get_args(tp) for v in _literal(arg)]


def _doc_after(module: Any, name: str) -> str:
    body = ast.parse(inspect.getsource(module)).body
    for stmt, nxt in zip(body, body[1:], strict=False):
        target = getattr(stmt, "target", None)
        if isinstance(target, ast.Name) and target.id == name and isinstance(nxt, ast.Expr) \
                and isinstance(getattr(nxt, "value", None), ast.Constant):
            return str(nxt.value.value)
    return ""


def _deprecated(doc: str) -> dict[str, str]:
    out = {}
    for bullet in re.split(r"\n\s*- ", "\n" + doc.partition("Deprecated values:")[2].strip()):
        head, _, text = " ".join(bullet.split()).partition(":")
        for value in re.findall(r'"([^"]+)"', head):
            out[value] = text.strip()
    return out


def _invalid(status: int, message: str, code: str | None, param: str | None) -> Reply:
    return Reply(status, error_body(message, "invalid_request_error", code, param))


AUTH = Auth(bearer, lambda: _invalid(401, "Incorrect API key provided.", "invalid_api_key", None))


def user_text(req: Request) -> str | None:
    """The last user message's text: the route's prompt (counted in ``paid_stats``)."""
    body = req.json if isinstance(req.json, dict) else {}
    msgs = body.get("messages")
    if not isinstance(msgs, list):
        return None
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):  # content parts
                c = "".join(str(p.get("text", "")) for p in c if isinstance(p, dict))
            return c if isinstance(c, str) else None
    return None


def install(fake: FakeProviders) -> None:
    """``POST /v1/chat/completions``; puts a :class:`Chat` at ``fake.chat``."""
    if not hasattr(fake, "chat"):
        fake.chat = Chat()  # type: ignore[attr-defined]
    fake.route("POST", CHAT_PATH, _complete, name="openai.chat", auth=AUTH, error=openai_error,
               prompt_of=user_text)


def _check(body: dict[str, Any], today: dt.date) -> Reply | None:
    rules = chat_rules()
    for key in body:
        if key not in rules.fields:
            return _invalid(400, f"Unrecognized request argument supplied: {key}",
                            "unknown_parameter", key)
    model = body.get("model")
    if not model:
        return _invalid(400, "you must provide a model parameter", "missing_required_parameter",
                        "model")
    if model not in rules.models or rules.gone(str(model), today):
        return _invalid(404, f"The model `{model}` does not exist or you do not have access to it.",
                        "model_not_found", "model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return _invalid(400, "Invalid 'messages': empty array. Expected an array with minimum "
                        "length 1.", "empty_array", "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in rules.roles:
            return _invalid(400, f"Invalid value: '{(m or {}).get('role')}'. Supported values are: "
                            f"{', '.join(sorted(rules.roles))}.", "invalid_value",
                            f"messages[{i}].role")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or rf.get("type") not in rules.formats:
            return _invalid(400, "Invalid value for 'response_format.type'.", "invalid_value",
                            "response_format.type")
        if rf["type"] == "json_schema":
            js = rf.get("json_schema")
            if not isinstance(js, dict) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(js.get("name", ""))):
                return _invalid(400, "Missing required parameter: 'response_format.json_schema.name'.",
                                "missing_required_parameter", "response_format.json_schema.name")
            if js.get("strict"):
                problem = _strict_problem(js.get("schema"), ())
                if problem:
                    return _invalid(400, f"Invalid schema for response_format '{js['name']}': "
                                    f"{problem}", "invalid_json_schema", "response_format")
    return None


def _strict_problem(schema: Any, where: tuple[str, ...]) -> str | None:
    """Structured Outputs' strict-mode rule for objects, checked through the whole schema."""
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object":
        props = schema.get("properties") or {}
        missing = [k for k in props if k not in (schema.get("required") or [])]
        if missing:
            return (f"In context={where}, 'required' is required to be supplied and to be an array "
                    f"including every key in properties. Missing '{missing[0]}'.")
        if schema.get("additionalProperties") is not False:
            return (f"In context={where}, 'additionalProperties' is required to be supplied and to "
                    "be false.")
        for k, sub in props.items():
            problem = _strict_problem(sub, (*where, "properties", k))
            if problem:
                return problem
    if isinstance(schema.get("items"), dict):
        return _strict_problem(schema["items"], (*where, "items"))
    return None


def _complete(fake: FakeProviders, req: Request) -> Reply:
    chat: Chat = fake.chat  # type: ignore[attr-defined]
    body = req.json if isinstance(req.json, dict) else {}
    bad = _check(body, chat.today)
    if bad:
        return bad
    said = chat.writer(user_text(req) or "")
    if isinstance(said, str):
        said = Said(said)
    words = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    out = len((said.content or said.refusal or "").split())
    return Reply(200, {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": _served(str(body["model"])),
        "choices": [{"index": 0, "finish_reason": said.finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": said.content,
                                 "refusal": said.refusal, "annotations": []}}],
        "usage": {"prompt_tokens": words, "completion_tokens": out, "total_tokens": words + out},
        "service_tier": "default", "system_fingerprint": "fp_fake"})


def _served(model: str) -> str:
    """The snapshot that answers an alias, as OpenAI reports it (``gpt-5.4-mini`` ->
    ``gpt-5.4-mini-2026-03-17``): the SDK's dated name of the alias, if it lists one."""
    snapshot = re.compile(re.escape(model) + r"-\d{4}-\d{2}-\d{2}")
    dated = sorted(m for m in chat_rules().models if snapshot.fullmatch(m))
    return dated[-1] if dated else model
