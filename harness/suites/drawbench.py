"""DrawBench (Saharia et al. 2022, Imagen): a CSV with columns ``Prompts,Category``.

The set is published as a Google Sheet; its CSV export quotes every cell. Header names are
matched without regard to case, and ``Prompt`` is accepted for ``Prompts``. Other columns are
ignored.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.suites.base import Parsed, numbered_prompt, read_table, register_format

SOURCE = ("DrawBench is the Google Sheet linked from https://imagen.research.google/ (File > "
          "Download > CSV); set HARNESS_DRAWBENCH or suite.file to the saved CSV.")


@register_format("drawbench", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read a DrawBench CSV: ids ``drawbench-001`` (row order), tag ``category:<Category>``."""
    rows = read_table(path, delimiter=",", quoting=csv.QUOTE_MINIMAL,
                      columns={"text": ("prompts", "prompt"), "category": ("category",)})
    return Parsed(tuple(
        numbered_prompt("drawbench", n, 3, row["text"], {"category": row["category"]}, {},
                        path, line)
        for n, (line, row) in enumerate(rows, 1)))
