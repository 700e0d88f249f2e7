"""ImgEdit-Bench's basic (single-turn) editing set as published (Ye et al. 2025, ImgEdit:
``Benchmark/Basic/basic_edit.json`` in PKU-YuanGroup/ImgEdit): a JSON object mapping a key to
``{"id": "<folder>/<file>.jpg", "prompt": "<instruction>", "edit_type": "<type>"}``, the
source images under ``Benchmark/singleturn/<id>``.

Every entry becomes an instruction edit: the prompt text is the instruction, the source image
an ``edit_image`` control (its sha256 goes into the cache key), tags ``edit:<edit_type>`` and
``imgedit-folder:<folder>``. The images folder is found next to the JSON (``singleturn/``,
``../singleturn/``, ``images/``) or given in ``$HARNESS_IMGEDIT_IMAGES``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.suites.base import Parsed, located, read_text, register_format
from harness.types import Control, Prompt, sha256_hex

SOURCE = ("ImgEdit-Bench is at https://github.com/PKU-YuanGroup/ImgEdit (Benchmark/Basic/"
          "basic_edit.json) with its images in the Hugging Face dataset sysuyy/ImgEdit "
          "(Benchmark.tar: singleturn/); set suite.file to basic_edit.json and "
          "HARNESS_IMGEDIT_IMAGES to the singleturn folder.")

IMAGES_ENV = "HARNESS_IMGEDIT_IMAGES"


def _images_folder(path: Path) -> Path:
    tried = []
    env = os.environ.get(IMAGES_ENV)
    for cand in ([Path(env).expanduser()] if env else []) + [
            path.parent / "singleturn", path.parent.parent / "singleturn", path.parent / "images"]:
        tried.append(str(cand))
        if cand.is_dir():
            return cand
    raise located(path, None, f"ImgEdit source images not found; tried {', '.join(tried)}. "
                  f"Set {IMAGES_ENV} to the singleturn folder of Benchmark.tar.")


@register_format("imgedit", source=SOURCE)
def load(path: Path) -> Parsed:
    """Read basic_edit.json: ids ``imgedit-<key>`` in file order, one edit_image control each."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise located(path, e.lineno, f"not valid JSON: {e.msg}.") from None
    if not isinstance(data, dict) or not data:
        raise located(path, None, "expected a JSON object of {key: {id, prompt, edit_type}} "
                      "(ImgEdit's basic_edit.json).")
    images = _images_folder(path)
    prompts = []
    for key, row in data.items():
        where = f"entry {key!r}"
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) and row[k].strip()
                                                for k in ("id", "prompt", "edit_type")):
            raise located(path, None, f"{where}: needs text fields id, prompt and edit_type, "
                          f"got {row!r}.")
        file = images / row["id"]
        if not file.is_file():
            raise located(path, None, f"{where}: source image {file} not found (id {row['id']!r} "
                          f"under {images}).")
        folder = row["id"].split("/", 1)[0] if "/" in row["id"] else ""
        tags = [f"edit:{row['edit_type'].strip()}"] + ([f"imgedit-folder:{folder}"] if folder else [])
        prompts.append(Prompt(
            id=f"imgedit-{key}", text=row["prompt"].strip(), tags=tuple(tags),
            controls=(Control(kind="edit_image", path=str(file.resolve()),
                              sha256=sha256_hex(file.read_bytes())),),
            meta={"edit_type": row["edit_type"].strip(), "source_id": row["id"]}))
    return Parsed(tuple(prompts), description="ImgEdit-Bench basic single-turn edits.")
