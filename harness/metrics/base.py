"""The metric protocol."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from harness.errors import ConfigError, did_you_mean
from harness.types import canonical_json, sha256_hex


@dataclass(frozen=True)
class ScoreInput:
    """One stored image with what a metric may need to judge it."""

    key: str
    """Record key."""
    model: str
    image: Any
    """The stored image: for per-image metrics an opened (lazily decoded) PIL image, for set
    metrics its file path (a set can hold more images than a process may keep files open).
    :func:`as_rgb` decodes either."""
    prompt: Mapping[str, Any]
    """The prompt as stored (text, tags, expected_text, meta)."""
    image_sha256: str | None = None
    """The stored image's content hash (set by the score stage): metrics may cache per-image
    work under it."""


NOTES_KEY = "how_to_read"
"""Key of the reading notes inside :meth:`Metric.describe`. Stored with every value, so any
renderer can show them, and left out of :meth:`Metric.settings_hash`: notes explain a number,
they never change it (rewording a note must not re-score anything)."""


@dataclass(frozen=True)
class ReadingNotes:
    """How to read a metric's numbers, in the metric's own words (scale, direction, caveats).

    Written by :meth:`Metric.how_to_read`, stored inside :meth:`Metric.describe` under
    :data:`NOTES_KEY`, and read back from stored settings by :func:`reading_notes`, so renderers
    show them without knowing any metric."""

    lines: Mapping[str, str] = field(default_factory=dict)
    """Output name (``""`` for a single-number metric) -> one line on how to read it."""
    table_title: str = ""
    """Heading of the notes under the main table (notes with the same heading share a list)."""
    table_note: str = ""
    """What the headline number rests on, shown under the main table (empty: nothing shown)."""
    min_images: int = 0
    """A model's value resting on fewer images than this is flagged (0: never)."""
    few_images: str = ""
    """The flag's words: a :meth:`str.format` template with ``{n}`` (the model's images),
    ``{min_images}`` and each output's value by output name, e.g. ``{kid}``."""

    def line(self, output: str = "") -> str:
        """How to read one output (``""``: the single number); empty when the metric says nothing."""
        return self.lines.get(output, "")

    def to_json(self) -> dict[str, Any]:
        """The notes as stored: only the fields that say something."""
        d: dict[str, Any] = {}
        if self.lines:
            d["lines"] = dict(self.lines)
        for k in ("table_title", "table_note", "min_images", "few_images"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        return d


def reading_notes(settings: Mapping[str, Any]) -> ReadingNotes:
    """The reading notes stored in a metric's settings; empty notes for settings stored before
    metrics carried them (such reports show no notes rather than guessed ones)."""
    d = settings.get(NOTES_KEY) or {}
    return ReadingNotes(lines={str(k): str(v) for k, v in (d.get("lines") or {}).items()},
                        table_title=str(d.get("table_title", "")), table_note=str(d.get("table_note", "")),
                        min_images=int(d.get("min_images", 0)), few_images=str(d.get("few_images", "")))


def without_notes(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Stored settings without the reading notes: what identifies the number."""
    return {k: v for k, v in settings.items() if k != NOTES_KEY}


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
    outputs: ClassVar[Mapping[str, bool]] = {}
    """For metrics that yield several numbers per image (OCR: exact match, word F1, CER ...):
    output name -> higher is better. Each is stored as metric ``<name>.<output>``. Empty: one
    number, stored as ``<name>``, direction :attr:`higher_is_better`."""
    runtime: ClassVar[tuple[str, ...]] = ()
    """Settings that change speed, not the number (batch size, device, workers): accepted under
    ``settings`` but left out of :meth:`describe`, so changing them never re-scores."""
    batch_size: int = 32
    cache_dir: Path | None = None
    """Set by the score stage (``<store>/cache``): where feature statistics may be cached."""

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
        """Everything that identifies the number (:meth:`identity`) plus, under
        :data:`NOTES_KEY`, how to read it (:meth:`how_to_read`): stored with every value."""
        d = self.identity()
        notes = self.how_to_read(d).to_json()
        if notes:
            d[NOTES_KEY] = notes
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """The metric's reading notes (scale, direction, caveats) for these settings
        (``identity`` is :meth:`identity`'s dict). Subclasses override it; the base says nothing."""
        return ReadingNotes()

    def identity(self) -> dict[str, Any]:
        """Everything that identifies the number: hashed into :meth:`settings_hash`. Subclasses
        that record more (weights, engine version) extend this, not :meth:`describe`."""
        d = {"metric": self.kind, "version": self.version, "per": self.per}
        if self.outputs:
            # Pairs, not a mapping: stored JSON sorts keys, and the first output is the headline.
            d["outputs"] = [[o, hib] for o, hib in self.outputs.items()]
        else:
            d["higher_is_better"] = self.higher_is_better
        d.update((k, v) for k, v in self.settings.items() if k not in self.runtime)
        return d

    def stored_names(self) -> dict[str, bool]:
        """Metric names as stored (``name`` or ``name.output``) -> higher is better."""
        if self.outputs:
            return {f"{self.name}.{o}": hib for o, hib in self.outputs.items()}
        return {self.name: self.higher_is_better}

    def settings_hash(self) -> str:
        """Short hash of :meth:`identity`: a stored value is reused only under the same hash."""
        return sha256_hex(canonical_json(self.identity()))[:16]

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[Any, dict[str, Any]]]:
        """Per-image metrics: one (value, extra) per item. ``value`` is a float (or None when
        the image can't be scored; say why in extra), or a dict output -> float|None for
        metrics with :attr:`outputs`."""
        raise NotImplementedError

    def score_set(self, items: Sequence[ScoreInput]) -> tuple[Any, dict[str, Any]]:
        """Per-set metrics: one (value, extra) for a model's images (value as in
        :meth:`score_images`)."""
        raise NotImplementedError

    def input_id(self, prompt: Mapping[str, Any]) -> str | None:
        """For a per-image metric whose value rests on more of the prompt than the image key
        covers (the ``questions`` metric: the prompt's questions): a short id of that part. The
        score stage stores it in each value's extra and computes a value again when the prompt's
        id changed (questions written after the run). None: image and settings decide alone."""
        return None

    def preflight(self) -> None:
        """Fail now, before a run writes or generates anything, when this metric could not run
        later (weights neither local nor reachable): raise a ConfigError naming the fix. Cheap;
        loads no model. The base has nothing to check."""

    def close(self) -> None:
        """Release models and memory."""


def prompt_images(items: Sequence[ScoreInput], out: list, check: Callable[[Any], None] | None = None
                  ) -> list[tuple[int, Any, str]]:
    """The items an image-text metric scores, as (index, RGB image, prompt text). An empty prompt
    or an image that cannot be read fills ``out[index]`` with its reason (the other images still
    count); ``check(image)`` may raise for an image the metric cannot take (its message is
    recorded the same way)."""
    good: list[tuple[int, Any, str]] = []
    for i, it in enumerate(items):
        text = str((it.prompt or {}).get("text") or "").strip()
        if not text:
            out[i] = (None, {"skipped": "empty prompt"})
            continue
        try:
            im = as_rgb(it.image)
            if check is not None:
                check(im)
        except Exception as e:  # a corrupt file: recorded, the other images still count
            out[i] = (None, {"skipped": f"unreadable image: {type(e).__name__}: {e}"})
            continue
        good.append((i, im, text))
    return good


def as_rgb(image: Any):
    """An RGB PIL image from an image file's path, a PIL image of any mode (alpha composited on
    white, grey expanded) or an HxW / HxWx3 / HxWx4 uint8 array. Raises on corrupt or truncated
    files (the decode happens here, on the caller's thread). 8-bit RGB PNG files, what the store
    holds, are decoded by libspng when it is installed (:mod:`harness.metrics.decode`)."""
    import os

    from PIL import Image

    from harness.metrics.decode import png_rgb8

    fast = png_rgb8(image)
    if fast is not None:
        return Image.fromarray(fast)
    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)  # load() below decodes and closes the file
    elif not isinstance(image, Image.Image):
        import numpy as np

        image = Image.fromarray(np.asarray(image))
    image.load()
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return image.convert("RGB")


def output_directions(settings: Mapping[str, Any]) -> dict[str, bool]:
    """Output name -> higher is better, in declared order (first = headline), from stored
    settings; empty for single-number metrics."""
    return {str(o): bool(hib) for o, hib in settings.get("outputs") or []}
