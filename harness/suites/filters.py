"""Prompt selection: tags, exclude_tags, a stratified sample per tag, then a limit."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from harness.config import SuiteConfig
from harness.errors import did_you_mean
from harness.suites.base import SuiteError
from harness.types import Prompt


def apply_filters(prompts: Sequence[Prompt], cfg: SuiteConfig) -> tuple[Prompt, ...]:
    """Apply the suite's filters in order: tags, exclude_tags, per_tag, limit.

    Args:
        prompts: The suite's prompts in file order.
        cfg: The suite settings.

    Returns:
        The kept prompts, in file order.

    Raises:
        SuiteError: A filter names a tag no prompt carries, has a bad number, or leaves nothing.
    """
    known = sorted({t for p in prompts for t in p.tags})
    for option in ("tags", "exclude_tags"):
        for tag in getattr(cfg, option):
            # A misspelt tag would otherwise just select nothing, or exclude nothing, quietly.
            if tag not in known:
                raise SuiteError(f"suite {cfg.name!r}: {option} names {tag!r}, which no prompt "
                                 f"carries.{did_you_mean(tag, known)}")
    for option in ("per_tag", "limit"):
        if getattr(cfg, option) is not None and getattr(cfg, option) < 1:
            raise SuiteError(f"suite {cfg.name!r}: {option} must be 1 or more, or null for no "
                             f"{option} (got {getattr(cfg, option)}).")
    if cfg.per_tag and not any(t.startswith(cfg.stratify_prefix) for t in known):
        prefixes = sorted({t.split(":")[0] + ":" for t in known if ":" in t})
        raise SuiteError(f"suite {cfg.name!r}: stratify_prefix {cfg.stratify_prefix!r} starts no "
                         f"tag.{did_you_mean(cfg.stratify_prefix, prefixes)}")

    steps: list[tuple[str, bool, Callable[[list[Prompt]], list[Prompt]]]] = [
        (f"tags={list(cfg.tags)}", bool(cfg.tags),
         lambda ps: [p for p in ps if set(p.tags) & set(cfg.tags)]),
        (f"exclude_tags={list(cfg.exclude_tags)}", bool(cfg.exclude_tags),
         lambda ps: [p for p in ps if not set(p.tags) & set(cfg.exclude_tags)]),
        (f"per_tag={cfg.per_tag}", cfg.per_tag is not None,
         lambda ps: _stratified(ps, cfg.per_tag, cfg.stratify_prefix, cfg.seed)),
        (f"limit={cfg.limit}", cfg.limit is not None, lambda ps: ps[: cfg.limit]),
    ]
    kept = list(prompts)
    for label, active, step in steps:
        if not active:
            continue
        before, kept = len(kept), step(kept)
        if not kept:
            raise SuiteError(f"suite {cfg.name!r}: {label} left no prompts ({before} before it). "
                             f"Tags in this suite: {', '.join(known) or 'none'}.")
    return tuple(kept)


def _stratified(prompts: list[Prompt], n: int, prefix: str, seed: int) -> list[Prompt]:
    """At most ``n`` prompts per stratum, in file order.

    A prompt's stratum is its first tag starting with ``prefix`` (untagged prompts form one
    stratum of their own).
    """
    strata: dict[str | None, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        strata[next((t for t in p.tags if t.startswith(prefix)), None)].append(i)
    keep: set[int] = set()
    for tag, members in strata.items():
        # One generator per stratum, seeded by its tag: editing one category of a suite leaves
        # the sample of every other category as it was.
        rng = random.Random(f"{seed}:{tag}")
        keep.update(members if len(members) <= n else rng.sample(members, n))
    return [p for i, p in enumerate(prompts) if i in keep]
