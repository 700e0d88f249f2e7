"""PartiPrompts, the TSV published with Parti (Yu et al. 2022): Prompt, Category, Challenge, Note.

The published file quotes nothing, yet some prompts start with a double quote (``"G I G G L E"
painted ...``); read with csv's default quoting those quotes would vanish, so cells are taken
verbatim. A few prompts carry stray spaces at either end; they are trimmed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.suites.base import Parsed, numbered_prompt, read_table, register_format

SOURCE = ("PartiPrompts.tsv is at https://github.com/google-research/parti (PartiPrompts.tsv, "
          "Apache-2.0); set HARNESS_PARTIPROMPTS or suite.file to where you saved it.")


@register_format("partiprompts", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read PartiPrompts.tsv: ids ``parti-0001`` (row order), tags ``category:``/``challenge:``."""
    rows = read_table(path, delimiter="\t", quoting=csv.QUOTE_NONE,
                      columns={"text": ("prompt",), "category": ("category",),
                               "challenge": ("challenge",), "note": ("note",)},
                      optional=("note",))
    return Parsed(tuple(
        numbered_prompt("parti", n, 4, row["text"],
                        {"category": row["category"], "challenge": row["challenge"]},
                        {"note": row["note"]} if row["note"] else {}, path, line)
        for n, (line, row) in enumerate(rows, 1)))
