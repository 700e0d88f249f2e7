"""What every suite reader shares: the format registry, the error type, file reading, and
prompt building.

A format is one reader module in this package whose ``load(path) -> Parsed`` carries
``@register_format("name")``; ``harness.suites.formats()`` imports the package's modules and so
finds it (a new format: its module and its test).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.types import Prompt


class SuiteError(ConfigError):
    """A suite file or suite setting that cannot be used; the message says where and how to fix it.

    A :class:`~harness.config.ConfigError`, so the CLI reports it like any other setting error.
    """


@dataclass(frozen=True)
class Parsed:
    """What a format reader returns: the prompts in file order plus what the file says of itself."""

    prompts: tuple[Prompt, ...]
    version: str | None = None
    description: str = ""


Load = Callable[[Path], Parsed]
"""A format's reader: the file (or folder) -> its prompts."""


@dataclass(frozen=True)
class FormatReader:
    """A registered suite format (``suite.format``)."""

    name: str
    load: Load
    source: str = ""
    """Where to get the published file; appended to the error when the file is not found."""
    description: str = ""
    """One line for ``harness list``: the first line of the reader module's docstring."""


READERS: dict[str, FormatReader] = {}
"""Format name -> reader, filled by :func:`register_format` as the reader modules are imported."""


def register_format(name: str, *, source: str = "") -> Callable[[Load], Load]:
    """Register the decorated ``load(path) -> Parsed`` as the reader of format ``name``.

    Args:
        name: The ``suite.format`` value that selects this reader.
        source: Where users get the published file (for public sets they download themselves).

    Raises:
        ValueError: Another reader already has this name; rename one of them.
    """
    def decorate(load: Load) -> Load:
        known = READERS.get(name)
        if known is not None and (known.load.__module__, known.load.__qualname__) != \
                (load.__module__, load.__qualname__):
            raise ValueError(f"suite format {name!r} is registered twice: by "
                             f"{known.load.__module__} and by {load.__module__}; rename one.")
        doc = (getattr(sys.modules.get(load.__module__), "__doc__", None) or load.__doc__ or "").strip()
        READERS[name] = FormatReader(name, load, source, doc.splitlines()[0] if doc else "")
        return load

    return decorate


def located(path: Path | str, line: int | None, message: str) -> SuiteError:
    """A SuiteError whose message starts with ``path:line:`` (``path:`` with no line)."""
    return SuiteError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_text(path: Path) -> str:
    """The file as text: UTF-8, with a leading byte-order mark dropped (spreadsheet exports)."""
    if path.is_dir():
        raise located(path, None, "is a folder; this format reads a single file.")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise located(path, line, f"not UTF-8 ({e.reason} at byte {e.start}); "
                                  "re-save the file as UTF-8.") from None


def text_lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers.

    Splits on ``\\n`` only: ``str.splitlines`` also breaks on characters such as U+2028 that may
    legally sit inside a JSON string, and would shift the line numbers errors report.
    """
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if line.strip():
            yield number, line


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of a JSONL file with their line numbers; blank lines are skipped."""
    for number, line in text_lines(read_text(path)):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise located(path, number, f"invalid JSON ({e.msg} at column {e.colno}); each line "
                                        "must hold one complete JSON object.") from None
        if not isinstance(obj, dict):
            raise located(path, number, f"expected a JSON object {{...}} on each line, got "
                                        f"{type(obj).__name__}.")
        yield number, obj


def read_table(path: Path, *, delimiter: str, quoting: int, columns: Mapping[str, tuple[str, ...]],
               optional: tuple[str, ...] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a delimited file with a header, keyed by our column names.

    Args:
        path: The file.
        delimiter: Cell separator.
        quoting: A ``csv.QUOTE_*`` constant.
        columns: Our name for each wanted column -> the header names (lowercase) it may have.
        optional: Our names of columns that may be absent; they read as "".

    Yields:
        (line of the row's first physical line, {our name: cell}); blank rows are skipped,
        missing trailing cells read as "".
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter=delimiter,
                        quoting=quoting)
    header = next(reader, None)
    if header is None:
        raise located(path, None, f"empty file; expected a header row naming the columns "
                                  f"{', '.join(names[0] for names in columns.values())}.")
    lowered = [cell.strip().lower() for cell in header]
    index: dict[str, int | None] = {}
    for ours, names in columns.items():
        index[ours] = next((lowered.index(n) for n in names if n in lowered), None)
        if index[ours] is None and ours not in optional:
            raise located(path, 1, f"no {' or '.join(repr(n) for n in names)} column "
                                   f"(header: {header}); is this the right file and format?")
    line = reader.line_num
    try:
        for row in reader:
            start, line = line + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header):
                raise located(path, start, f"{len(row)} cells but the header has {len(header)}; "
                                           "is there a stray separator inside a prompt?")
            yield start, {ours: row[i] if i is not None and i < len(row) else ""
                          for ours, i in index.items()}
    except csv.Error as e:
        raise located(path, reader.line_num, f"unreadable row: {e}.") from None


def numbered_prompt(prefix: str, number: int, width: int, text: str, tags: Mapping[str, str],
                    meta: Mapping[str, Any], path: Path, line: int) -> Prompt:
    """A prompt of a public set: id ``<prefix>-<number>``, tags ``<key>:<value>``.

    Args:
        prefix: Id prefix, e.g. ``parti``.
        number: Position in the set, zero-padded to ``width`` digits.
        text: Prompt text; surrounding whitespace (present in some published files) is dropped.
        tags: Tag key -> value, e.g. {"category": "Animals"}; empty values make no tag.
        meta: Anything else the row carried.
        path: The file, for the error on an empty prompt.
        line: The row's line, likewise.
    """
    if not text.strip():
        raise located(path, line, "empty prompt text; delete the row or fill it in.")
    return Prompt(id=f"{prefix}-{number:0{width}d}", text=text.strip(),
                  tags=tuple(f"{k}:{v.strip()}" for k, v in tags.items() if v.strip()),
                  meta=dict(meta))
