"""Core nouns of the harness as frozen dataclasses.

Everything that determines an image lives in :class:`GenRequest`, which hashes to the cache
key. Everything observed while making it lives in :class:`GenResult`. Records in the store are
the pair of them plus bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

CONTROL_KINDS = ("init_image", "mask", "control_image", "reference_image", "edit_image")
"""Input images a prompt may carry: img2img source, inpainting mask, ControlNet map, IP-Adapter
reference, and the source image of an instruction edit (the prompt is the instruction)."""


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed into keys."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Control:
    """One control input attached to a prompt."""

    kind: str
    """One of CONTROL_KINDS."""
    path: str
    """Absolute path of the image file (resolved against the suite file's folder)."""
    sha256: str
    """Hash of the file's bytes; this, not the path, goes into cache keys."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Per-input settings such as ``strength`` (img2img), ``scale`` (ControlNet, IP-Adapter),
    ``type`` (canny, depth, pose)."""

    def ref(self) -> dict[str, Any]:
        """What identifies this input in a request: hash and settings, never the path."""
        return {"kind": self.kind, "sha256": self.sha256, "params": dict(self.params)}


@dataclass(frozen=True)
class Prompt:
    """One prompt of a suite."""

    id: str
    """Stable identifier, unique within the suite."""
    text: str
    """The prompt given to every model."""
    tags: tuple[str, ...] = ()
    """Categories and challenges (``category:text``, ``counting`` ...); reports break down by tag."""
    expected_text: str | None = None
    """Text the image should render, for OCR scoring."""
    negative_prompt: str | None = None
    """Optional per-prompt negative prompt (overrides the model default)."""
    controls: tuple[Control, ...] = ()
    """Control inputs shared by every model that runs this prompt."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the source format carried (challenge, note, geneval spec ...)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tags"] = list(self.tags)
        d["controls"] = [asdict(c) for c in self.controls]
        d["meta"] = dict(self.meta)
        return d


@dataclass(frozen=True)
class Suite:
    """A named, versioned set of prompts."""

    name: str
    """Short name used in run ids and report paths."""
    prompts: tuple[Prompt, ...]
    """The prompts, in file order (after filters)."""
    version: str = "1"
    """Bumped by the suite's author when prompts change meaning."""
    description: str = ""
    """One line for reports."""
    source: str = ""
    """Path of the file the suite came from."""

    def content_hash(self) -> str:
        """Hash of the prompts as used (after filters): a changed suite is a different plan."""
        return sha256_hex(canonical_json([p.to_dict() | {"controls": [c.ref() for c in p.controls]}
                                          for p in self.prompts]))


@dataclass(frozen=True)
class GenRequest:
    """Everything that determines one image. Hashes to the cache key."""

    model: str
    """The model's config name (``toy_unet``, ``sdxl``); records are grouped by it."""
    generator: str
    """Generator kind (``diffusers``, ``openai`` ...)."""
    model_id: str
    """Hub id, local folder, or provider model name."""
    revision: str | None
    """Hub revision or provider model version, when pinned."""
    weights: str | None
    """Fingerprint of local weights (content hash of the folder), None for hub ids and APIs."""
    prompt_id: str
    prompt: str
    negative_prompt: str | None
    sample: int
    """Sample index within (model, prompt): 0 .. samples-1."""
    seed: int
    """Seed of this sample; the same for every model so comparisons share noise."""
    width: int
    height: int
    steps: int | None = None
    guidance: float | None = None
    scheduler: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    """Generator-specific generation parameters (quality, style, LoRA weights ...)."""
    controls: tuple[Mapping[str, Any], ...] = ()
    """Control inputs: kind, sha256 and settings (:meth:`Control.ref`), plus the ``path`` the
    file was planned from (not part of the key)."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["params"] = dict(self.params)
        d["controls"] = [dict(c) for c in self.controls]
        return d

    def key(self) -> str:
        """Deterministic cache key: sha256 of the canonical JSON of the request. Control inputs
        count by hash and settings; where their file lies (``path``) does not."""
        d = self.to_dict()
        d["controls"] = [{k: v for k, v in c.items() if k != "path"} for c in d["controls"]]
        return sha256_hex(canonical_json(d))


Status = Literal["ok", "refused", "error"]


@dataclass
class GenResult:
    """What happened when one request ran."""

    status: Status
    """``ok`` (image present), ``refused`` (provider declined; a result, never retried) or
    ``error`` (retried on the next run)."""
    image: bytes | None = None
    """Encoded image (PNG preferred; anything PIL reads is re-encoded to PNG by the store)."""
    refusal_reason: str | None = None
    error: str | None = None
    latency_s: float | None = None
    """Wall seconds attributed to this image (batch time / batch size for batched local runs)."""
    cost_usd: float | None = None
    """Price paid for this image, when known."""
    provider_request_id: str | None = None
    device: str | None = None
    dtype: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Anything else observed: revised prompt, returned seed, batch size, retries, versions."""


@dataclass(frozen=True)
class WorkUnit:
    """A planned (model, prompt, sample) with its request and key."""

    request: GenRequest
    key: str
    prompt: Prompt


@dataclass(frozen=True)
class Score:
    """One metric value for one stored image (per-image metrics)."""

    key: str
    """Record key the value belongs to."""
    metric: str
    value: float | None
    """None when the metric could not be computed for this image (reason in ``extra``)."""
    settings_hash: str
    extra: Mapping[str, Any] = field(default_factory=dict)


CIRCUIT_OPEN = "circuit_open"
"""``GenResult.info`` flag (and provider error code) of a request not sent because the model's
circuit breaker is open or the provider refused the key or the account (set by
:mod:`harness.generators.api`, read by the leaderboard to say why a model is short)."""


JournalState = Literal["sending", "submitted", "done"]


@dataclass(frozen=True)
class JournalEntry:
    """One paid call of a closed API, as the submit journal holds it."""

    key: str
    """Record key of the work unit the call is for."""
    provider: str
    model: str
    state: JournalState
    """``sending`` (submit sent, answer not recorded: the job may exist and be billed),
    ``submitted`` (the provider's job id is known: poll it, never resubmit) or ``done`` (the
    answer arrived; its image, if any, is kept under ``image_sha256``)."""
    job_id: str | None = None
    poll_url: str | None = None
    result_url: str | None = None
    image_sha256: str | None = None
    outcome: Mapping[str, Any] | None = None
    """What the answer gave, everything but the image bytes (status, refusal, cost, info)."""
    created_at: str = ""
    updated_at: str = ""


@runtime_checkable
class Journal(Protocol):
    """Where an API adapter records paid work the moment it happens, so none is paid twice.

    The runner hands each adapter one (:meth:`harness.generators.base.Generator.attach_journal`);
    adapters never open the store. Every ``record_*`` call is durable when it returns. The store
    implements it (``harness.store.journal``); under Ray the driver, the only writer, receives
    the entries that workers record.
    """

    def find(self, key: str) -> JournalEntry | None:
        """The entry for a work unit, if any."""
        ...

    def record_sending(self, key: str, provider: str, model: str) -> None:
        """The intent to submit, recorded before the request is sent."""
        ...

    def record_submitted(self, key: str, job_id: str, poll_url: str | None,
                         result_url: str | None = None) -> None:
        """The provider's job, recorded before waiting for it."""
        ...

    def record_answer(self, key: str, provider: str, model: str, outcome: Mapping[str, Any],
                      image: bytes | None = None, job_id: str | None = None) -> None:
        """A paid answer (a one-call result or a finished job), recorded as it arrives."""
        ...

    def forget(self, key: str) -> None:
        """No job exists (or it failed): a later run may submit again."""
        ...

    def pending(self) -> list[JournalEntry]:
        """Entries not yet ``done`` (sent or submitted), oldest first."""
        ...

    def image(self, entry: JournalEntry) -> bytes | None:
        """The bytes of a ``done`` entry's image."""
        ...
