"""T2I-CompBench (Huang et al. 2023): plain text files, one prompt a line.

``file`` is one such file or a folder of them. The file name gives the category: its stem less
a trailing ``_val``, ``_train`` or ``_test`` (``color_val.txt`` -> ``color``).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.suites.base import Parsed, SuiteError, numbered_prompt, read_text, register_format, text_lines

SOURCE = ("the prompt files are in https://github.com/Karine-Huang/T2I-CompBench "
          "(examples/dataset/); copy the *_val.txt files into a folder and set "
          "HARNESS_T2I_COMPBENCH or suite.file to it.")

_SPLIT = re.compile(r"_(val|train|test)$")


@register_format("t2i-compbench", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read one T2I-CompBench file or a folder of them: ids ``<category>-0000``, blank lines
    skipped, files in name order."""
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise SuiteError(f"{path}: no .txt files in this folder; point suite.file at a "
                         "T2I-CompBench prompt file or a folder of them.")
    origin: dict[str, Path] = {}
    prompts = []
    for file in files:
        category = _SPLIT.sub("", file.stem)
        if category in origin:
            # The repository's examples/dataset holds every split side by side; mixing them
            # would give two prompts the same id.
            raise SuiteError(f"{file}: category {category!r} also comes from "
                             f"{origin[category].name}; keep one split per category in the "
                             "folder (e.g. only the *_val.txt files).")
        origin[category] = file
        prompts += [numbered_prompt(category, i, 4, text, {"category": category}, {}, file, line)
                    for i, (line, text) in enumerate(text_lines(read_text(file)))]
    return Parsed(tuple(prompts))
