"""Images made elsewhere (Midjourney, a web UI, another lab's run), imported from a folder.

A manifest in the folder, CSV (with a header row) or JSONL, has one row per image:

    prompt_id,sample,file
    p001,0,midjourney/p001-a.png
    p001,1,midjourney/p001-b.webp

``file`` is relative to the folder. Other columns (seed, job id, model version ...) are kept in
the record's info. Problems are reported with the manifest's path and line: a row without a
needed column, a sample that is not a whole number, a file that is missing or not an image, two
rows for the same (prompt id, sample), and prompt ids the suite does not have (set
``options.unknown_prompts: ignore`` when running a filtered part of the suite). A planned
(prompt, sample) with no row becomes an error result that names the manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.generators.base import Generator
from harness.types import GenRequest, GenResult, WorkUnit

COLUMNS = ("prompt_id", "sample", "file")


@dataclasses.dataclass(frozen=True)
class Row:
    """One manifest row."""

    prompt_id: str
    sample: int
    file: Path
    line: int
    """Line of the manifest it came from (1-based)."""
    extra: dict[str, Any]


class ImportedImages(Generator):
    """Reads images from a folder through a manifest instead of generating them."""

    kind = "imported"
    batch_dependent = False
    runs_on_driver = True  # the folder is on the machine that plans the run

    @dataclasses.dataclass
    class Options:
        folder: str = "imports"
        """Folder holding the manifest and the images (relative to the working directory)."""
        manifest: str = "manifest.csv"
        """Manifest file inside the folder: .csv (header row) or .jsonl."""
        unknown_prompts: str = "error"
        """``error``: a row for a prompt id the suite lacks stops the run; ``ignore``: skip it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        if self.options.unknown_prompts not in ("error", "ignore"):
            raise ConfigError(f"models.{self.name}.options.unknown_prompts: "
                              f"{self.options.unknown_prompts!r}; use error or ignore.")
        self._rows: dict[tuple[str, int], Row] | None = None

    @property
    def manifest_path(self) -> Path:
        return (Path(self.options.folder).expanduser() / self.options.manifest).resolve()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["imported"] = {"folder": self.options.folder, "manifest": self.options.manifest}
        return d

    # -- manifest -------------------------------------------------------------------------

    def load(self) -> None:
        if self._rows is None:
            self._rows = read_manifest(self.manifest_path, f"models.{self.name}")

    def check_plan(self, units: Sequence[WorkUnit]) -> None:
        """Check the manifest against the planned prompts before anything is stored."""
        self.load()
        assert self._rows is not None
        known = {u.request.prompt_id for u in units}
        if not known or self.options.unknown_prompts == "ignore":
            return
        for row in sorted(self._rows.values(), key=lambda r: r.line):
            if row.prompt_id not in known:
                from harness.errors import did_you_mean

                raise ConfigError(
                    f"{self.manifest_path}:{row.line}: prompt id {row.prompt_id!r} is not in the "
                    f"suite.{did_you_mean(row.prompt_id, sorted(known))} If the suite is "
                    f"filtered (suite.limit, tags), set models.{self.name}.options."
                    "unknown_prompts=ignore.")

    def _generate(self, requests: list[GenRequest]) -> list[GenResult]:
        from harness.generators.http import to_png

        assert self._rows is not None
        out = []
        for r in requests:
            row = self._rows.get((r.prompt_id, r.sample))
            if row is None:
                out.append(GenResult(status="error", error=(
                    f"{self.manifest_path}: no row for prompt id {r.prompt_id!r} sample "
                    f"{r.sample}; add one (prompt_id,sample,file) to import its image")))
                continue
            try:
                png = to_png(row.file.read_bytes())
            except (OSError, ValueError) as e:
                out.append(GenResult(status="error", error=f"{self.manifest_path}:{row.line}: "
                                     f"{row.file} is not a readable image ({e})"))
                continue
            info = {"source_file": str(row.file), "manifest_line": row.line, **row.extra}
            cost = float(self.price_per_image) if self.price_per_image is not None else None
            out.append(GenResult(status="ok", image=png, cost_usd=cost, info=info))
        return out


def read_manifest(path: Path, where: str = "imported") -> dict[tuple[str, int], Row]:
    """Rows of a CSV or JSONL manifest by (prompt id, sample), every problem named by line.

    Raises:
        ConfigError: the manifest is missing or malformed, a file is missing, or a (prompt id,
            sample) appears twice.
    """
    if not path.is_file():
        raise ConfigError(f"{where}: manifest {path} not found. Put a manifest.csv "
                          f"(columns {', '.join(COLUMNS)}) or manifest.jsonl in the folder, or set "
                          f"{where}.options.folder / options.manifest.")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".jsonl":
        raw = []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ConfigError(f"{path}:{i}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{path}:{i}: not a JSON object")
            raw.append((i, obj))
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}:1: the header lacks {', '.join(missing)}; it needs "
                              f"{', '.join(COLUMNS)} (got {', '.join(reader.fieldnames or [])})")
        raw = [(reader.line_num, dict(row)) for row in reader]
    else:
        raise ConfigError(f"{where}: manifest {path} must be .csv or .jsonl")
    rows: dict[tuple[str, int], Row] = {}
    folder = path.parent
    for line, obj in raw:
        for c in COLUMNS:
            if obj.get(c) in (None, ""):
                raise ConfigError(f"{path}:{line}: no {c!r}; every row needs {', '.join(COLUMNS)}")
        try:
            sample = int(str(obj["sample"]).strip())
        except ValueError:
            raise ConfigError(f"{path}:{line}: sample {obj['sample']!r} is not a whole number") from None
        if sample < 0:
            raise ConfigError(f"{path}:{line}: sample {sample} is negative")
        pid = str(obj["prompt_id"]).strip()
        file = (folder / str(obj["file"]).strip()).resolve()
        if not file.is_file():
            raise ConfigError(f"{path}:{line}: file {obj['file']!r} not found (looked for {file})")
        prev = rows.get((pid, sample))
        if prev is not None:
            raise ConfigError(f"{path}:{line}: duplicate row for prompt id {pid!r} sample "
                              f"{sample} (first at line {prev.line})")
        extra = {k: v for k, v in obj.items() if k not in COLUMNS and v not in (None, "")}
        rows[(pid, sample)] = Row(pid, sample, file, line, extra)
    return rows
