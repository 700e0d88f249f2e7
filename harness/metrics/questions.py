"""Question-based scoring (TIFA, Davidsonian Scene Graph, GenEval 2's Soft-TIFA): a VLM answers
each of a prompt's questions about the image; the score is the share answered as expected.

A prompt carries its questions in ``meta.questions`` (any suite format; the readers of the
published sets fill it), each a mapping::

    {id: "2", question: "Is the cat black?", parents: ["1"], answer: "yes",
     category: "attribute", choices: [...]}   # answer defaults to yes; choices: TIFA multiple choice

Toy-world prompts without questions get DSG-style ones derived from their ``attributes``
(:func:`harness.toyworld.questions.questions_for`) when ``from_attributes`` is on.

Per question, ``p`` is the probability of the expected answer: P(yes) for a "yes" question,
1 - P(yes) for a "no" one; a multiple-choice question with another answer is asked as
``choice_template`` ("... Is the answer '{answer}'?") and scored by P(yes). A child question
counts only when each parent's own (gated) ``p`` is at least 0.5 (DSG: a "no" to "Is there a
cat?" makes "Is the cat black?" a "no" too), otherwise its ``p`` is 0. Outputs:

- ``soft`` (headline): the mean gated ``p`` (Soft-TIFA);
- ``hard``: the share of questions whose gated ``p`` is at least 0.5 (TIFA / DSG accuracy);
- ``soft_gm``: the geometric mean of the gated ``p`` (GenEval 2's prompt-level Soft-TIFA GM: one
  failed question pulls the prompt down).

Every question's text, asked form, P(yes), gated p and category go into the value's ``extra``,
with the mean per category, so a report can say which skills fail.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import ConfigError
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb
from harness.metrics.hub import require_hub_model
from harness.metrics.vqa import (
    VLMJudge,
    check_vlm_settings,
    load_judge,
    vlm_identity,
    vlm_weights_id,
)
from harness.types import canonical_json, sha256_hex

CHOICE_TEMPLATE = "{question} Is the answer '{answer}'? Please answer yes or no."
THRESHOLD = 0.5


def normalise_questions(raw: Any, where: str) -> list[dict[str, Any]]:
    """Questions as the metric uses them (id, question, parents, answer, category, choices),
    checked: unique ids, parents that exist and come first (no cycles)."""
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}: questions must be a list, got {type(raw).__name__}.")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, q in enumerate(raw, 1):
        if not isinstance(q, Mapping) or not str(q.get("question") or "").strip():
            raise ConfigError(f"{where}: question {n} needs a 'question' text, got {q!r}.")
        qid = str(q.get("id", n))
        if qid in seen:
            raise ConfigError(f"{where}: question id {qid!r} appears twice.")
        parents = [str(p) for p in (q.get("parents") or [])]
        for p in parents:
            if p not in seen:
                raise ConfigError(f"{where}: question {qid!r} depends on {p!r}, which is not an "
                                  "earlier question of this prompt (parents must come first).")
        seen.add(qid)
        answer = str(q.get("answer", "yes")).strip()
        out.append({"id": qid, "question": str(q["question"]).strip(), "parents": parents,
                    "answer": answer, "category": str(q.get("category") or ""),
                    "choices": list(q.get("choices") or [])})
    return out


def asked(q: Mapping[str, Any], choice_template: str) -> tuple[str, bool]:
    """The text put to the VLM and whether a "yes" is the expected answer."""
    a = q["answer"].lower()
    if a in ("yes", "no"):
        return q["question"], a == "yes"
    return choice_template.replace("{question}", q["question"]).replace("{answer}", q["answer"]), True


def gate(questions: Sequence[Mapping[str, Any]], p: Sequence[float]) -> list[tuple[float, str | None]]:
    """Each question's counted p and, when a parent failed, which one (DSG dependencies)."""
    counted: dict[str, float] = {}
    out: list[tuple[float, str | None]] = []
    for q, pq in zip(questions, p, strict=True):
        failed = next((par for par in q["parents"] if counted[par] < THRESHOLD), None)
        value = 0.0 if failed is not None else float(pq)
        counted[q["id"]] = value
        out.append((value, failed))
    return out


class QuestionScore(Metric):
    """Share of a prompt's questions a VLM answers as expected (soft and hard)."""

    kind = "questions"
    per = "image"
    version = "1"
    outputs = {"soft": True, "hard": True, "soft_gm": True}
    defaults = {
        "model": None,
        "revision": None,
        "checkpoint": None,
        "answers": ["Yes", "No"],
        "chat": True,
        "dtype": "auto",
        "choice_template": CHOICE_TEMPLATE,
        "from_attributes": True,
        # Runtime only.
        "batch_size": 16,
        "device": "auto",
    }
    """model / revision / checkpoint / answers / chat / dtype: the VLM, as for vqascore.
    choice_template: how a multiple-choice question with a non-yes/no answer is asked
    (``{question}``, ``{answer}``). from_attributes: derive DSG-style questions from toy-world
    ``attributes`` when a prompt has no ``questions``. batch_size: questions per forward pass."""
    runtime = ("batch_size", "device")

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        check_vlm_settings(name, self.settings)
        self.model_batch = int(self.settings["batch_size"])
        self.batch_size = 16
        self._judge: VLMJudge | None = None
        self._weights: str | None = None

    def identity(self) -> dict[str, Any]:
        if self._weights is None:
            self._weights = vlm_weights_id(self.settings)
        d = vlm_identity(super().identity(), self.settings, self._weights)
        d["formula"] = ("mean over questions of P(expected answer), a child counted only when "
                        f"its parents reach {THRESHOLD}")
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """What soft and hard mean, and what they rest on."""
        who = identity.get("model") or identity.get("checkpoint")
        return ReadingNotes(lines={
            "soft": (f"Soft-TIFA: mean probability (0-1) that the VLM ({who}, "
                     f"{str(identity.get('weights'))[:23]}) gives each of the prompt's questions its "
                     "expected answer; a question counts 0 when a question it depends on fails "
                     "(DSG). Comparable only with the same VLM and question set."),
            "hard": ("TIFA/DSG accuracy: share of the prompt's questions answered as expected "
                     "(probability >= 0.5, dependencies applied). Per-question answers and "
                     "per-category means are in each value's extra."),
            "soft_gm": ("Soft-TIFA GM: geometric mean of the same probabilities; near 0 when any "
                        "one question fails, so it reads as 'the whole prompt is right'.")})

    def judge(self) -> VLMJudge:
        """The loaded VLM (loaded on first use)."""
        if self._judge is None:
            self._judge = load_judge(self.name, self.settings, str(self.settings["device"]))
        return self._judge

    def questions_of(self, prompt: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The prompt's questions (stored, else derived from toy-world attributes), or None."""
        meta = prompt.get("meta") or {}
        raw = meta.get("questions")
        if raw is None and self.settings["from_attributes"] and meta.get("attributes"):
            from harness.toyworld.questions import questions_for

            raw = questions_for(meta["attributes"])
        if not raw:
            return None
        return normalise_questions(raw, f"prompt {prompt.get('id', '?')!r}")

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[Any, dict[str, Any]]]:
        out: list[tuple[Any, dict[str, Any]]] = []
        jobs: list[tuple[int, int, str]] = []  # (item, question, asked text)
        plans: list[tuple[list[dict[str, Any]], list[bool]] | None] = []
        images: dict[int, Any] = {}
        tmpl = str(self.settings["choice_template"])
        for i, it in enumerate(items):
            qs = self.questions_of(it.prompt or {})
            if not qs:
                plans.append(None)
                continue
            try:
                images[i] = as_rgb(it.image)
            except Exception as e:  # a corrupt file: recorded, the other images still count
                plans.append(None)
                images[i] = f"unreadable image: {type(e).__name__}: {e}"
                continue
            forms = [asked(q, tmpl) for q in qs]
            plans.append((qs, [want for _, want in forms]))
            jobs += [(i, k, text) for k, (text, _) in enumerate(forms)]
        p_yes: dict[tuple[int, int], float] = {}
        if jobs:
            j = self.judge()
            for s in range(0, len(jobs), self.model_batch):
                chunk = jobs[s:s + self.model_batch]
                two, _ = j.p_yes([images[i] for i, _, _ in chunk], [t for _, _, t in chunk])
                p_yes.update(((i, k), v) for (i, k, _), v in zip(chunk, two, strict=True))
        for i, plan in enumerate(plans):
            if plan is None:
                reason = images.get(i) if isinstance(images.get(i), str) else "prompt has no questions"
                out.append(({"soft": None, "hard": None, "soft_gm": None}, {"skipped": reason}))
                continue
            qs, wants = plan
            raw = [p_yes[(i, k)] for k in range(len(qs))]
            p = [v if want else 1 - v for v, want in zip(raw, wants, strict=True)]
            gated = gate(qs, p)
            rows = [{"id": q["id"], "question": q["question"], "category": q["category"],
                     "asked": asked(q, tmpl)[0], "expected": q["answer"], "p_yes": round(v, 6),
                     "p": round(g, 6), **({"parent_failed": f} if f is not None else {})}
                    for q, v, (g, f) in zip(qs, raw, gated, strict=True)]
            by_cat: dict[str, list[float]] = {}
            for r in rows:
                by_cat.setdefault(r["category"] or "other", []).append(r["p"])
            soft = sum(g for g, _ in gated) / len(gated)
            hard = sum(g >= THRESHOLD for g, _ in gated) / len(gated)
            gm = (math.exp(sum(math.log(g) for g, _ in gated) / len(gated))
                  if all(g > 0 for g, _ in gated) else 0.0)
            out.append(({"soft": soft, "hard": hard, "soft_gm": gm},
                        {"questions": rows, "by_category": {c: sum(v) / len(v) for c, v in by_cat.items()},
                         "weights_sha256": self._judge.weights_sha256 if self._judge else None}))
        return out

    def input_id(self, prompt: Mapping[str, Any]) -> str | None:
        """Hash of the questions the value rests on ("none" without questions)."""
        qs = self.questions_of(prompt)
        return sha256_hex(canonical_json(qs))[:16] if qs else "none"

    def preflight(self) -> None:
        """A hub model must be cached or reachable (a checkpoint folder is checked by identity())."""
        if self.settings.get("checkpoint") is None:
            require_hub_model(self.name, str(self.settings["model"]), self.settings.get("revision"))

    def close(self) -> None:
        self._judge = None
