"""Attribute accuracy on the toy world, in the spirit of GenEval: does the image show the
colour, shape, position and count the prompt asked for?

The judge is the rule-based reader in :mod:`harness.toyworld.checker` (>= 98% right on real toy
images, tested). Expected attributes come from the prompt's ``meta.attributes`` (toy-world
suites carry them) or, failing that, from its ``colour:``/``shape:``/``position:``/``count:``
tags. Prompts outside the toy world get no value (recorded as skipped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.metrics.base import Metric, ScoreInput, as_rgb

OUTPUTS = ("all", "colour", "shape", "position", "count")
"""The first is the headline (all requested attributes right)."""


class AttributeAccuracy(Metric):
    kind = "toy_attributes"
    per = "image"
    outputs = dict.fromkeys(OUTPUTS, True)
    defaults = {"judge": "toy-world rule-based checker v2"}
    """judge: which reader decides; changing the checker's rules bumps it."""

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[Any, dict[str, Any]]]:
        from harness.toyworld.checker import check, spec_from_tags

        out = []
        for it in items:
            spec = (it.prompt.get("meta") or {}).get("attributes") or spec_from_tags(
                it.prompt.get("tags", []))
            values = dict.fromkeys(OUTPUTS)
            if spec is None or spec.get("kind") == "word":
                out.append((values, {"skipped": "prompt names no toy-world object attributes"}))
                continue
            values.update(check(as_rgb(it.image), spec))
            out.append((values, {"spec": spec}))
        return out
