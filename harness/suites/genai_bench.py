"""GenAI-Bench (Li et al. 2024): ``genai_image.json``, an object keyed by prompt id.

Each value has ``prompt`` and, in the released files, ``models`` (model name -> the human 1-5
alignment ratings of its image) plus skill fields. The skills file ``genai_skills.json`` (skill
name -> prompt ids) is read when it lies beside the file: each prompt gets a ``skill:<name>``
tag per skill (basic: attribute, scene, spatial relation, action relation, part relation;
advanced: counting, comparison, differentiation, negation, universal). The human ratings stay in
``Prompt.meta["human_alignment"]``. GenAI-Bench has no questions: score it with ``vqascore``.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.suites.base import Parsed, located, read_text, register_format
from harness.types import Prompt

SOURCE = ("genai_image.json (and genai_skills.json) are in the hub dataset BaiqiL/GenAI-Bench-1600 "
          "(or zhiqiulin/GenAI-Bench-527); set suite.file to genai_image.json.")


def _json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise located(path, e.lineno, f"invalid JSON ({e.msg}).") from None


@register_format("genai-bench", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read GenAI-Bench: ids ``genai-<key>``, tags ``skill:<name>`` from genai_skills.json."""
    data = _json(path)
    if not isinstance(data, dict):
        raise located(path, None, "expected a JSON object keyed by prompt id (genai_image.json).")
    skills: dict[str, list[str]] = {}
    sk = path.with_name("genai_skills.json")
    if sk.exists():
        raw = _json(sk)
        if not isinstance(raw, dict):
            raise located(sk, None, "expected a JSON object: skill name -> list of prompt ids.")
        for skill, ids in raw.items():
            for i in ids if isinstance(ids, list) else []:
                skills.setdefault(str(i), []).append(str(skill))
    prompts = []
    for key, item in data.items():
        text = item.get("prompt") if isinstance(item, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise located(path, None, f"prompt {key!r}: needs a non-empty 'prompt' string.")
        tags = tuple(f"skill:{s}" for s in sorted(set(skills.get(str(key), []))))
        meta = {k: v for k, v in item.items() if k not in ("prompt", "models")}
        if isinstance(item.get("models"), dict):
            meta["human_alignment"] = item["models"]
        prompts.append(Prompt(id=f"genai-{key}", text=item["prompt"].strip(), tags=tags, meta=meta))
    return Parsed(tuple(prompts))
