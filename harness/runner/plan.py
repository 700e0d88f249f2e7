"""Planning: suite x models x samples -> work units with deterministic cache keys."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from harness.generators.base import Generator
from harness.types import GenRequest, Suite, WorkUnit, canonical_json, sha256_hex


def derive_seed(base_seed: int, prompt_id: str, sample: int) -> int:
    """Seed of one sample: shared by every model (same noise per prompt and sample index),
    different across prompts and samples, stable across runs and machines."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def plan_units(
    suite: Suite, generators: Mapping[str, Generator], samples: int, seed: int
) -> list[WorkUnit]:
    """Every (model, prompt, sample) of a run, model-major, with its request and key."""
    units: list[WorkUnit] = []
    for name, gen in generators.items():
        p = gen.params
        weights = gen.fingerprint()
        extra = gen.request_params()
        for prompt in suite.prompts:
            for s in range(samples):
                req = GenRequest(
                    model=name,
                    generator=gen.kind,
                    model_id=gen.model_id,
                    revision=gen.revision,
                    weights=weights,
                    prompt_id=prompt.id,
                    prompt=prompt.text,
                    negative_prompt=prompt.negative_prompt or p.get("negative_prompt"),
                    sample=s,
                    seed=derive_seed(seed, prompt.id, s),
                    width=int(p.get("width", 512)),
                    height=int(p.get("height", 512)),
                    steps=p.get("steps"),
                    guidance=p.get("guidance"),
                    scheduler=p.get("scheduler"),
                    params=extra,
                    controls=tuple({**c.ref(), "path": c.path} for c in prompt.controls),
                )
                units.append(WorkUnit(request=req, key=req.key(), prompt=prompt))
    return units


def make_run_id(suite: Suite, units: Sequence[WorkUnit], name: str | None = None) -> str:
    """The run id: an explicit name, else '<suite>-<hash of the planned keys>' so the same
    command run twice names the same run (and so resumes it)."""
    if name:
        bad = set(name) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
        if bad or name.startswith("."):
            raise ValueError(f"run.name {name!r}: use letters, digits, '-', '_' and '.' only")
        return name
    return f"{suite.name}-{sha256_hex(canonical_json(sorted(u.key for u in units)))[:10]}"
