"""Edit following: did an instruction edit do what it was told, and keep what it had to keep,
as a VLM judges it (the VQAScore question, :mod:`harness.metrics.vqa`, asked about the edit).

Each edit prompt says, in its meta, what a correct edit shows (``must_change``; toy-world edits
carry ``target_caption`` too, used when ``must_change`` is absent) and what it leaves as it was
(``must_keep``: a string, clauses split on ";", or a list). Each becomes the VQAScore question
("Does this figure show '{prompt}'? ...") put to the VLM with the edited image, and
``must_change`` is also put with the *source* image, so an edit is credited only for what it
added. Per image, all in 0..1 except ``lift``:

- ``overall`` (headline): sqrt(follow x keep), the geometric mean (an edit that ignores the
  instruction, or one that repaints everything, scores low); None without ``must_keep``;
- ``follow``: P(yes) that the edited image shows ``must_change``;
- ``keep``: mean P(yes) over the ``must_keep`` clauses;
- ``lift``: follow minus the same P(yes) on the source (-1..1): an editor that returns the
  source untouched scores 0 here and a perfect ``keep``.

Every question, the image it was asked about and its P(yes) go into the value's ``extra``.
Prompts that say nothing that must change (e.g. ImgEdit's, which carry only the instruction) are
skipped with the reason: the instruction itself ("Remove the spoon") is no description an image
can show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import ConfigError
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb
from harness.metrics.hub import require_hub_model
from harness.metrics.preservation import edit_source
from harness.metrics.vqa import (
    DEFAULT_TEMPLATE,
    VLMJudge,
    check_vlm_settings,
    load_judge,
    vlm_identity,
    vlm_weights_id,
)

OUTPUTS = {"overall": True, "follow": True, "keep": True, "lift": True}
NONE = dict.fromkeys(OUTPUTS)


def edit_claims(meta: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """(what a correct edit shows, what it keeps) from a prompt's meta: ``must_change`` (else
    ``target_caption``) and the ``must_keep`` clauses (a list, or a string split on ";")."""
    change = str(meta.get("must_change") or meta.get("target_caption") or "").strip() or None
    raw = meta.get("must_keep") or []
    parts = raw.split(";") if isinstance(raw, str) else [str(x) for x in raw]
    return change, [p.strip() for p in parts if p.strip()]


class EditFollowing(Metric):
    """VQAScore-style yes/no questions on an edit: what must change, what must stay."""

    kind = "edit_following"
    per = "image"
    version = "1"
    outputs = OUTPUTS
    defaults = {
        "model": None,
        "revision": None,
        "checkpoint": None,
        "template": DEFAULT_TEMPLATE,
        "answers": ["Yes", "No"],
        "chat": True,
        "dtype": "auto",
        # Runtime only.
        "batch_size": 16,
        "device": "auto",
    }
    """model / revision / checkpoint / answers / chat / dtype: the VLM, as for vqascore.
    template: the question, ``{prompt}`` replaced by each claim. batch_size: questions per
    forward pass."""
    runtime = ("batch_size", "device")

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        check_vlm_settings(name, s)
        if "{prompt}" not in str(s["template"]):
            raise ConfigError(f"metrics.{name}.settings.template: must contain {{prompt}}, got "
                              f"{s['template']!r}.")
        self.model_batch = int(s["batch_size"])
        self.batch_size = 16
        self._judge: VLMJudge | None = None
        self._weights: str | None = None
        self._source_p: dict[tuple[str, str], float] = {}
        """(source path, question) -> P(yes): every model edits the same few sources."""

    def question(self, claim: str) -> str:
        """The question asked for one claim."""
        return str(self.settings["template"]).replace("{prompt}", claim)

    def identity(self) -> dict[str, Any]:
        if self._weights is None:
            self._weights = vlm_weights_id(self.settings)
        d = vlm_identity(super().identity(), self.settings, self._weights)
        d["formula"] = ("P(yes) per claim at the first answer token; overall = sqrt(follow * keep), "
                        "lift = follow - P(yes | source)")
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """What each output says and what it rests on."""
        who = identity.get("model") or identity.get("checkpoint")
        return ReadingNotes(lines={
            "overall": (f"Geometric mean of follow and keep (0-1), as judged by the VLM ({who}, "
                        f"{str(identity.get('weights'))[:23]}); low when the edit ignores the instruction "
                        "or repaints what had to stay. Comparable only with the same VLM and template."),
            "follow": "P(yes) that the edited image shows what the edit must change (meta.must_change).",
            "keep": "Mean P(yes) that the edited image still shows each thing it must keep (meta.must_keep).",
            "lift": ("follow minus the VLM's P(yes) for the same claim on the source (-1..1): what the edit "
                     "added; 0 for an editor that returns the source."),
        })

    def judge(self) -> VLMJudge:
        """The loaded VLM (loaded on first use)."""
        if self._judge is None:
            self._judge = load_judge(self.name, self.settings, str(self.settings["device"]))
        return self._judge

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[Any, dict[str, Any]]]:
        out: list[tuple[Any, dict[str, Any]] | None] = [None] * len(items)
        plans: dict[int, tuple[str, list[str], str]] = {}  # item -> (change, keeps, source path)
        images: dict[Any, Any] = {}  # item index or source path -> RGB image
        jobs: list[tuple[Any, str]] = []  # (image key, question), each asked once
        for i, it in enumerate(items):
            prompt = dict(it.prompt or {})
            src, _ = edit_source(prompt)
            if src is None:
                out[i] = (dict(NONE), {"skipped": "not an instruction edit (no edit_image)"})
                continue
            change, keeps = edit_claims(prompt.get("meta") or {})
            if change is None:
                out[i] = (dict(NONE), {"skipped": "the prompt says nothing that must change "
                                                  "(meta.must_change or meta.target_caption)"})
                continue
            try:
                images[i] = as_rgb(it.image)
                if str(src) not in images:
                    images[str(src)] = as_rgb(src)
            except Exception as e:  # a corrupt file: recorded, the other images still count
                out[i] = (dict(NONE), {"skipped": f"unreadable image: {type(e).__name__}: {e}"})
                continue
            plans[i] = (change, keeps, str(src))
            jobs += [(i, self.question(c)) for c in (change, *keeps)]
            if (str(src), self.question(change)) not in self._source_p:
                jobs.append((str(src), self.question(change)))
        answers = self._ask(dict.fromkeys(jobs), images)
        for i, (change, keeps, src) in plans.items():
            qc = self.question(change)
            follow = answers[(i, qc)]
            before = self._source_p[(src, qc)]
            kept = [answers[(i, self.question(k))] for k in keeps]
            keep = sum(kept) / len(kept) if kept else None
            values = {"overall": math.sqrt(follow * keep) if keep is not None else None,
                      "follow": follow, "keep": keep, "lift": follow - before}
            rows = ([{"role": "change", "claim": change, "image": "edit", "question": qc,
                      "p_yes": round(follow, 6)},
                     {"role": "change", "claim": change, "image": "source", "question": qc,
                      "p_yes": round(before, 6)}]
                    + [{"role": "keep", "claim": k, "image": "edit", "question": self.question(k),
                        "p_yes": round(p, 6)} for k, p in zip(keeps, kept, strict=True)])
            out[i] = (values, {"questions": rows, "weights_sha256": self._judge.weights_sha256 if self._judge
                               else None, **({} if keeps else {"note": "no meta.must_keep: overall and "
                                                                      "keep are empty"})})
        return [o if o is not None else (dict(NONE), {"skipped": "not scored"}) for o in out]

    def _ask(self, jobs: Mapping[tuple[Any, str], None],
             images: Mapping[Any, Any]) -> dict[tuple[Any, str], float]:
        """P(yes) for each (image key, question), in batches; source answers are remembered."""
        got: dict[tuple[Any, str], float] = {}
        todo = list(jobs)
        if todo:
            j = self.judge()
            for s in range(0, len(todo), self.model_batch):
                chunk = todo[s:s + self.model_batch]
                two, _ = j.p_yes([images[k] for k, _ in chunk], [q for _, q in chunk])
                got.update(zip(chunk, two, strict=True))
        self._source_p.update((k, v) for k, v in got.items() if isinstance(k[0], str))
        return got

    def preflight(self) -> None:
        """A hub model must be cached or reachable (a checkpoint folder is checked at construction)."""
        if self.settings.get("checkpoint") is None:
            require_hub_model(self.name, str(self.settings["model"]), self.settings.get("revision"))

    def close(self) -> None:
        self._judge = None
        self._source_p.clear()
