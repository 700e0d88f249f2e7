"""Write DSG-style questions for a suite's prompts with an LLM (OpenAI Chat Completions).

Davidsonian Scene Graph (Cho et al. 2024) breaks a prompt into atomic propositions, each asked
as a yes/no question, with dependencies (a question about the cat's colour depends on "Is there
a cat?") and a category (entity, attribute, relation, global, other). The ``questions`` metric
scores an image by a VLM's answers to them.

:func:`write_questions` asks, through the official ``openai`` SDK, for the questions of every
prompt that has none (in the suite file or in its questions file, :mod:`.question_file`), with
Structured Outputs (a strict JSON schema), validates each answer (schema, dependency ids that
exist, no cycles) and appends it to the questions file as soon as it arrives. It never asks for
a prompt already answered: answers written by another model or instructions template are
reported and kept (``regenerate`` asks again), as are refusals and invalid answers
(``retry_failed``). The API key is read from the environment and never written anywhere.
"""

from __future__ import annotations

import ast
import concurrent.futures as cf
import datetime as dt
import functools
import inspect
import json
import re
import threading
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, UserError
from harness.suites.question_file import (
    CATEGORIES,
    QuestionError,
    append_entry,
    check_questions,
    questions_path,
    read_entries,
    text_hash,
)
from harness.types import Prompt, canonical_json, sha256_hex

PROVIDERS = ("openai",)

INSTRUCTIONS = """\
You write Davidsonian Scene Graph (DSG) questions for evaluating text-to-image models.
Break the prompt into atomic propositions, each asked as one yes/no question whose answer is
"yes" for an image that follows the prompt:
- entity: each object or person the prompt names ("Is there a cat?"); one question per entity,
  counted entities as "Are there three cats?" under category attribute, skill count;
- attribute: colour, size, shape, material, texture, state, count, text on things ("Is the cat
  black?");
- relation: spatial or action relations between entities ("Is the cat on the sofa?");
- global: style, medium, lighting, viewpoint of the whole image ("Is it a watercolour?");
- other: anything else the prompt asks for.
Give every question an id ("1", "2", ...) and the ids of the questions it depends on in
parents: an attribute depends on its entity, a relation on both of its entities; an entity
question has no parents. Never let a question depend on itself or on a later one. skill names
the detailed skill in one or two words (whole, part, color, count, shape, material, texture,
text rendering, spatial, action, style, ...). Ask only about what the prompt states; do not
add details it leaves open, and do not ask the same thing twice."""

USER_TEMPLATE = "Prompt: {prompt}"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"questions": {"type": "array", "items": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "question": {"type": "string"},
            "parents": {"type": "array", "items": {"type": "string"}},
            "category": {"type": "string", "enum": list(CATEGORIES)},
            "skill": {"type": "string"},
        },
        "required": ["id", "question", "parents", "category", "skill"],
        "additionalProperties": False,
    }}},
    "required": ["questions"],
    "additionalProperties": False,
}
"""The answer's shape, sent as a strict Structured Outputs schema (every field required)."""


def template_hash() -> str:
    """Hash of everything that shapes the questions besides the model: instructions, message
    template and schema (16 hex). A changed template is reported on the next run."""
    return sha256_hex(canonical_json({"instructions": INSTRUCTIONS, "user": USER_TEMPLATE,
                                      "schema": SCHEMA}))[:16]


# -- what the installed SDK says of the model ---------------------------------------------------


@dataclass(frozen=True)
class ModelNote:
    """What the SDK's ``ChatModel`` literal and its "Deprecated values" say of one model name."""

    listed: bool
    shutdown: dt.date | None = None
    note: str = ""


@functools.cache
def _chat_models() -> tuple[frozenset[str], dict[str, str]]:
    """The SDK's ChatModel names and, per deprecated name, its bullet's text."""
    from openai.types.shared import chat_model

    names = frozenset(typing.get_args(chat_model.ChatModel))
    body = ast.parse(inspect.getsource(chat_model)).body
    doc = ""
    for stmt, nxt in zip(body, body[1:], strict=False):
        target = getattr(stmt, "target", None)
        if isinstance(target, ast.Name) and target.id == "ChatModel" and isinstance(nxt, ast.Expr) \
                and isinstance(getattr(nxt, "value", None), ast.Constant):
            doc = str(nxt.value.value)
    notes: dict[str, str] = {}
    tail = doc.partition("Deprecated values:")[2]
    for bullet in re.split(r"\n\s*- ", "\n" + tail.strip()):
        head, _, text = " ".join(bullet.split()).partition(":")
        for value in re.findall(r'"([^"]+)"', head):
            notes[value] = text.strip()
    return names, notes


def model_note(model: str) -> ModelNote:
    """Whether the installed openai SDK lists ``model`` and any shutdown it announces."""
    names, notes = _chat_models()
    text = notes.get(model, "")
    m = re.search(r"shutdown date:\s*(\d{4}-\d{2}-\d{2})", text)
    return ModelNote(model in names, dt.date.fromisoformat(m.group(1)) if m else None, text)


def check_model(model: str, today: dt.date | None = None, *, custom_endpoint: bool = False) -> str:
    """Refuse a model the SDK says is shut down or unsupported; return a warning line (or "").

    Args:
        model: The model name.
        today: The date to judge by (default: today, UTC).
        custom_endpoint: A base_url other than OpenAI's: any model name is the server's business.
    """
    today = today or dt.datetime.now(dt.timezone.utc).date()
    note = model_note(model)
    if custom_endpoint and not note.listed:
        return ""
    if not note.listed:
        raise ConfigError(f"question_gen.model: {model!r} is not a chat model the installed openai "
                          f"SDK knows; current ones include {', '.join(current_models()[:6])}. "
                          "(Set question_gen.base_url for another OpenAI-compatible server.)")
    if "Not a supported model ID" in note.note:
        raise ConfigError(f"question_gen.model: {model!r}: the openai SDK says \"{note.note}\"; "
                          f"use one of {', '.join(current_models()[:6])}.")
    if note.shutdown and note.shutdown <= today:
        raise ConfigError(f"question_gen.model: {model} was shut down on {note.shutdown} (openai "
                          f"SDK); use one of {', '.join(current_models()[:6])}.")
    if note.shutdown:
        return (f"note: {model} is announced to shut down on {note.shutdown}; its questions stay "
                "valid, but later runs will need another model.")
    return ""


def current_models() -> list[str]:
    """ChatModel names with no deprecation note and no date suffix, newest-looking first."""
    names, notes = _chat_models()
    keep = [n for n in names if n not in notes and not re.search(r"\d{4}-\d{2}-\d{2}$", n)
            and n.startswith("gpt-") and "audio" not in n and "search" not in n]
    return sorted(keep, key=lambda n: [int(x) for x in re.findall(r"\d+", n)], reverse=True)


# -- asking ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What one call gave: a checked question set, a refusal, or an answer that failed checks."""

    status: str
    questions: tuple[dict[str, Any], ...] = ()
    error: str = ""
    raw: str = ""
    served_model: str = ""
    usage: Mapping[str, int] = field(default_factory=dict)


class ProviderError(UserError):
    """The provider refused the whole job (key, model, quota, network): stop, keep what is saved."""


def parse_answer(content: str | None, refusal: str | None, finish_reason: str | None,
                 served_model: str = "", usage: Mapping[str, int] | None = None) -> Answer:
    """An Answer from a chat completion's message: refusal, cut-off, or checked questions."""
    usage = dict(usage or {})
    if refusal:
        return Answer("refused", error=f"refused: {refusal}", served_model=served_model, usage=usage)
    if finish_reason == "content_filter":
        return Answer("refused", error="content filter", raw=content or "",
                      served_model=served_model, usage=usage)
    if finish_reason == "length":
        return Answer("invalid", error="answer cut off at the token limit", raw=content or "",
                      served_model=served_model, usage=usage)
    try:
        obj = json.loads(content or "")
    except json.JSONDecodeError as e:
        return Answer("invalid", error=f"not JSON ({e.msg} at column {e.colno})", raw=content or "",
                      served_model=served_model, usage=usage)
    try:
        if not isinstance(obj, dict) or set(obj) != {"questions"}:
            raise QuestionError("expected an object with the single key 'questions'")
        qs = check_questions(obj["questions"])
    except QuestionError as e:
        return Answer("invalid", error=str(e), raw=content or "", served_model=served_model,
                      usage=usage)
    return Answer("ok", tuple(qs), served_model=served_model, usage=usage)


class OpenAIQuestionWriter:
    """Asks an OpenAI (or OpenAI-compatible) Chat Completions endpoint for one prompt's questions."""

    provider = "openai"

    def __init__(self, model: str, *, api_key: str, base_url: str | None = None,
                 timeout_s: float = 120.0, max_retries: int = 2) -> None:
        try:
            import openai
        except ModuleNotFoundError:
            raise UserError("question generation needs the openai package: "
                            "pip install 'harness[api]'") from None
        self.model = model
        self._key = api_key
        self._openai = openai
        # The SDK retries connection errors, 408/409/429 and 5xx with backoff; a retried request
        # may have been processed once already, which costs a few hundred tokens at worst.
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                     max_retries=max_retries)

    def ask(self, prompt: str) -> Answer:
        """One call: the prompt's questions (or a refusal, or why the answer is unusable)."""
        oa = self._openai
        try:
            r = self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": INSTRUCTIONS},
                          {"role": "user", "content": USER_TEMPLATE.format(prompt=prompt)}],
                response_format={"type": "json_schema", "json_schema": {
                    "name": "dsg_questions", "strict": True, "schema": SCHEMA}})
        except oa.BadRequestError as e:
            code = _code(e)
            if code in ("content_filter", "content_policy_violation", "moderation_blocked"):
                return Answer("refused", error=f"refused by the provider ({code})")
            raise ProviderError(self._scrub(f"the provider rejected the request ({e.status_code} "
                                            f"{code or ''}): {_message(e)}")) from None
        except oa.AuthenticationError as e:
            raise ProviderError(self._scrub(f"the API key was refused (401): {_message(e)} Set the "
                                            "key in the environment variable named by "
                                            "question_gen.api_key_env.")) from None
        except oa.NotFoundError as e:
            raise ProviderError(self._scrub(f"model {self.model!r} not found (404): {_message(e)} "
                                            "Set question_gen.model (or --model).")) from None
        except oa.RateLimitError as e:
            raise ProviderError(self._scrub(f"rate limit or quota (429) after the SDK's retries: "
                                            f"{_message(e)}")) from None
        except oa.APIStatusError as e:
            raise ProviderError(self._scrub(f"the provider answered {e.status_code}: "
                                            f"{_message(e)}")) from None
        except oa.APIConnectionError as e:
            raise ProviderError(self._scrub(f"cannot reach the provider: {e}")) from None
        usage = {}
        if r.usage is not None:
            usage = {"prompt_tokens": r.usage.prompt_tokens,
                     "completion_tokens": r.usage.completion_tokens}
        if not r.choices:
            return Answer("invalid", error="the answer has no choices", served_model=r.model,
                          usage=usage)
        c = r.choices[0]
        return parse_answer(c.message.content, getattr(c.message, "refusal", None),
                            c.finish_reason, r.model, usage)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[key]") if self._key else text


def _code(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, Mapping):
        body = body.get("error", body)
        if isinstance(body, Mapping):
            return str(body.get("code") or "")
    return str(getattr(e, "code", "") or "")


def _message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(e, "message", e))


# -- the job -------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Which prompts a run asks for, and why the others are left alone."""

    ask: list[Prompt] = field(default_factory=list)
    in_suite: int = 0
    """Prompts with questions in the suite file itself (never asked)."""
    done: int = 0
    """Answered by this model and template."""
    other_generator: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(model, template) -> prompt ids answered by another model or template (kept)."""
    failed: dict[str, list[str]] = field(default_factory=dict)
    """status (refused, invalid) -> prompt ids (kept unless retry_failed)."""
    changed: int = 0
    """Prompts whose text changed since their questions were written (asked again)."""


def plan_questions(prompts: Sequence[Prompt], entries: Mapping[str, Any], model: str, template: str,
                   *, regenerate: bool = False, retry_failed: bool = False) -> Plan:
    """Decide, per prompt, whether to ask (see the module doc)."""
    plan = Plan()
    for p in prompts:
        if p.meta.get("questions") is not None and "questions_source" not in p.meta:
            plan.in_suite += 1
            continue
        e = entries.get(p.id)
        if e is None or regenerate:
            plan.ask.append(p)
        elif e.text_sha256 != text_hash(p.text):
            plan.changed += 1
            plan.ask.append(p)
        elif e.status != "ok":
            if retry_failed:
                plan.ask.append(p)
            else:
                plan.failed.setdefault(e.status, []).append(p.id)
        elif (e.model, e.template) != (model, template):
            plan.other_generator.setdefault((e.model, e.template), []).append(p.id)
        else:
            plan.done += 1
    return plan


def write_questions(prompts: Sequence[Prompt], suite_path: Path, writer: Any, *,
                    regenerate: bool = False, retry_failed: bool = False, workers: int = 4,
                    dry_run: bool = False, echo: Callable[[str], Any] = print,
                    today: Callable[[], str] | None = None) -> dict[str, Any]:
    """Ask ``writer`` for the questions of the prompts that lack them; append each answer.

    Args:
        prompts: The suite's prompts as loaded (questions file attached).
        suite_path: The suite file; answers go to :func:`questions_path` of it.
        writer: Has ``provider``, ``model`` and ``ask(text) -> Answer`` (an
            :class:`OpenAIQuestionWriter`).
        regenerate: Ask for every prompt again (the newest line of a prompt wins).
        retry_failed: Ask again for prompts whose last answer was refused or invalid.
        workers: Calls in flight at once.
        dry_run: Only say what would be asked; nothing is sent.
        echo: Where the summary lines go.

    Returns:
        Counts: asked, ok, refused, invalid, skipped and the token usage.

    Raises:
        ProviderError: The provider refused the job (bad key, unknown model, quota); every answer
            that arrived before is in the file.
    """
    path = questions_path(suite_path)
    template = template_hash()
    entries = read_entries(path)
    plan = plan_questions(prompts, entries, writer.model, template, regenerate=regenerate,
                          retry_failed=retry_failed)
    for (model, tmpl), ids in plan.other_generator.items():
        why = []
        if model != writer.model:
            why.append(f"model {model or '?'} (now {writer.model})")
        if tmpl != template:
            why.append(f"template {tmpl or '?'} (now {template})")
        echo(f"kept: {len(ids)} prompt(s) have questions written with {' and '.join(why)}: "
             f"{_ids(ids)}; pass --regenerate to ask again.")
    for status, ids in plan.failed.items():
        echo(f"kept: {len(ids)} prompt(s) whose last answer was {status} ({_ids(ids)}; see "
             f"{path.name}); pass --retry-failed to ask again.")
    if plan.changed:
        echo(f"{plan.changed} prompt(s) changed text since their questions were written: asking again.")
    counts: dict[str, Any] = {"asked": 0, "ok": 0, "refused": 0, "invalid": 0,
                              "skipped": len(prompts) - len(plan.ask), "in_suite": plan.in_suite,
                              "done": plan.done, "prompt_tokens": 0, "completion_tokens": 0,
                              "file": str(path), "template": template}
    echo(f"{len(plan.ask)} of {len(prompts)} prompt(s) to ask {writer.provider}:{writer.model} "
         f"(template {template}); {plan.in_suite} carry questions in the suite file, "
         f"{plan.done} already answered.")
    if dry_run or not plan.ask:
        return counts
    lock = threading.Lock()
    date = today or (lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def one(p: Prompt) -> Answer:
        a = writer.ask(p.text)
        entry: dict[str, Any] = {
            "prompt_id": p.id, "text_sha256": text_hash(p.text), "status": a.status,
            "questions": list(a.questions),
            "generator": {"provider": writer.provider, "model": writer.model,
                          "served_model": a.served_model, "template": template, "date": date()},
            "usage": dict(a.usage)}
        if a.error:
            entry["error"] = a.error
        if a.raw and a.status != "ok":
            entry["raw"] = a.raw[:4000]
        with lock:
            append_entry(path, entry)
            counts["asked"] += 1
            counts[a.status] += 1
            for k in ("prompt_tokens", "completion_tokens"):
                counts[k] += int(a.usage.get(k) or 0)
        return a

    error: BaseException | None = None
    pool = cf.ThreadPoolExecutor(max(1, workers), thread_name_prefix="questions")
    try:
        futures = [pool.submit(one, p) for p in plan.ask]
        for f in cf.as_completed(futures):
            try:
                f.result()
            except cf.CancelledError:
                continue
            except Exception as e:  # stop sending; answers in flight are still written
                if error is None:
                    error = e
                    for g in futures:
                        g.cancel()
    finally:
        # Ctrl-C included: nothing queued is sent, calls in flight finish and are written.
        pool.shutdown(wait=True, cancel_futures=True)
    echo(f"asked {counts['asked']}: {counts['ok']} ok, {counts['refused']} refused, "
         f"{counts['invalid']} invalid; {counts['prompt_tokens']} prompt + "
         f"{counts['completion_tokens']} completion tokens; written to {path}.")
    if error is not None:
        if isinstance(error, UserError):
            raise ProviderError(f"{error} ({counts['asked']} answer(s) saved in {path}; run again "
                                "to continue: answered prompts are not asked twice).") from None
        raise error
    return counts


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
