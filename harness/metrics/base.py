"""The metric protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness.config import ConfigError, did_you_mean
from harness.types import canonical_json, sha256_hex


@dataclass(frozen=True)
class ScoreInput:
    """One stored image with what a metric may need to judge it."""

    key: str
    """Record key."""
    model: str
    image: Any
    """RGB PIL image."""
    prompt: Mapping[str, Any]
    """The prompt as stored (text, tags, expected_text, meta)."""


class Metric:
    """Base class. Subclasses set the class attributes, list their settings with defaults in
    :attr:`defaults`, and implement :meth:`score_images` (per image) or :meth:`score_set`."""

    kind: ClassVar[str] = "base"
    """Metric family, recorded with every value."""
    higher_is_better: ClassVar[bool] = True
    per: ClassVar[Literal["image", "set"]] = "image"
    version: ClassVar[str] = "1"
    """Bumped when the implementation changes a number: old values are then recomputed."""
    defaults: ClassVar[Mapping[str, Any]] = {}
    """Every setting that changes the number, with its default."""
    batch_size: int = 32

    def __init__(self, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.name = name
        given = dict(settings or {})
        for k in given:
            if k not in self.defaults:
                raise ConfigError(
                    f"metrics.{name}.settings: unknown setting {k!r}."
                    + (did_you_mean(k, list(self.defaults)) if self.defaults else " It takes none.")
                )
        self.settings = {**self.defaults, **given}

    def describe(self) -> dict[str, Any]:
        """Everything that identifies the number: stored with every value."""
        return {"metric": self.kind, "version": self.version, "per": self.per,
                "higher_is_better": self.higher_is_better, **self.settings}

    def settings_hash(self) -> str:
        return sha256_hex(canonical_json(self.describe()))[:16]

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        """Per-image metrics: one (value, extra) per item."""
        raise NotImplementedError

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[float | None, dict[str, Any]]:
        """Per-set metrics: one (value, extra) for a model's images."""
        raise NotImplementedError

    def close(self) -> None:
        """Release models and memory."""
