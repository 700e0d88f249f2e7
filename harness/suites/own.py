"""The harness's own suite format: YAML (a mapping with ``prompts:``) or JSONL (a prompt a line).

A prompt is a mapping::

    - id: shop-bakery            # required, unique in the suite
      text: 'A bakery window with "FRESH BREAD" painted on the glass'   # required
      tags: [category:shop-front, length:short]
      expected_text: FRESH BREAD # what the image should render, for OCR metrics
      negative_prompt: blurry    # overrides the model's default negative prompt
      controls:                  # kind -> settings; path is relative to the suite file
        init_image: {path: images/bakery.png, strength: 0.6}
      difficulty: hard           # any other key is kept in Prompt.meta

An instruction edit gives ``edit: {image, instruction, mask}`` instead of text and controls: the
instruction is the prompt text, the image an ``edit_image`` control, the optional mask (white =
may change) the ``edit_region`` the preservation metric reads.

Errors name the file and line of the offending prompt or key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from harness.errors import did_you_mean
from harness.suites.base import Parsed, json_lines, located, read_text, register_format
from harness.types import CONTROL_KINDS, Control, Prompt, sha256_hex

SUITE_KEYS = ("name", "version", "description", "prompts")
PROMPT_KEYS = ("id", "text", "tags", "expected_text", "negative_prompt", "controls", "edit")
_ALIASES = {"prompt": "text", "caption": "text"}
"""Names other prompt formats use for our keys."""

Locate = Callable[..., int | None]
"""``locate(obj, key=None)``: line of a mapping's key (or of the mapping itself)."""


@register_format("harness")
def load(path: Path) -> Parsed:
    """Read an own-format suite file (.yaml, .yml or .jsonl)."""
    if path.suffix in (".yaml", ".yml"):
        return _load_yaml(path)
    if path.suffix == ".jsonl":
        return Parsed(_prompts(path, ((obj, lambda *_, n=n: n) for n, obj in json_lines(path))))
    raise located(path, None, "format 'harness' reads .yaml, .yml or .jsonl files; rename the "
                              "file or set suite.format to the format it is in.")


class _MarkingLoader(yaml.SafeLoader):
    """SafeLoader that records the line of every mapping, sequence and mapping key.

    Lines live in a side table keyed by ``id()`` of the constructed container, so the data stays
    plain dicts and lists.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines: dict[int, dict[Any, int]] = {}


def _construct_mapping(loader: _MarkingLoader, node: yaml.MappingNode) -> Iterator[dict]:
    data: dict = {}
    yield data
    lines: dict[Any, int] = {None: node.start_mark.line + 1}
    # Before construct_mapping: it folds `<<: *anchor` merges into node.value, and a key that
    # overrides a merged one is no duplicate.
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            continue  # construct_mapping rejects unhashable keys with its own mark
        # PyYAML keeps the last of two equal keys without a word; a prompt with two `text:` lines
        # is a mistake worth stopping for.
        if key_node.value in lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r} (first on line "
                            f"{lines[key_node.value]})", key_node.start_mark)
        lines[key_node.value] = key_node.start_mark.line + 1
    loader.lines[id(data)] = lines
    data.update(loader.construct_mapping(node))


def _construct_sequence(loader: _MarkingLoader, node: yaml.SequenceNode) -> Iterator[list]:
    data: list = []
    yield data
    data.extend(loader.construct_sequence(node))
    loader.lines[id(data)] = {None: node.start_mark.line + 1} | {
        i: item.start_mark.line + 1 for i, item in enumerate(node.value)}


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def _load_yaml(path: Path) -> Parsed:
    loader = _MarkingLoader(read_text(path))
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as e:
        # A scanner error's context is the token being read (an unclosed quote's opening line),
        # its problem often the end of the file; a parser error's context is the enclosing
        # block, and its problem the line at fault.
        marks = ("context_mark", "problem_mark") if isinstance(e, yaml.scanner.ScannerError) \
            else ("problem_mark", "context_mark")
        mark = next((m for m in (getattr(e, a, None) for a in marks) if m), None)
        problem = ", ".join(str(s) for s in (getattr(e, "context", None),
                                            getattr(e, "problem", None)) if s) or str(e)
        raise located(path, mark.line + 1 if mark else None,
                      f"invalid YAML: {problem}. Check the indentation, and quote text that "
                      "contains ': ', ' #' or starts with a quote or bracket.") from None
    finally:
        loader.dispose()
    lines = loader.lines

    def locate(obj: Any, key: Any = None) -> int | None:
        marks = lines.get(id(obj), {})
        return marks.get(key, marks.get(None))

    if not isinstance(doc, dict):
        raise located(path, 1, "expected a mapping with keys name, version, description and "
                               "prompts (a list of prompts).")
    for key in doc:
        if key not in SUITE_KEYS:
            raise located(path, locate(doc, key), f"unknown suite key {key!r}."
                          f"{did_you_mean(str(key), SUITE_KEYS)}")
    prompts = doc.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise located(path, locate(doc, "prompts"), "'prompts' must be a non-empty list of "
                                                    "prompts (`- id: ...` items).")

    def item_locator(i: int) -> Locate:
        # A non-mapping item has no marks of its own: fall back to its place in the list.
        return lambda obj, key=None: locate(obj, key) if id(obj) in lines else locate(prompts, i)

    version = doc.get("version")
    if version is not None and not isinstance(version, (str, int)):
        raise located(path, locate(doc, "version"), f"version must be text, got {version!r}; "
                                                    "quote it: version: \"1.1\".")
    description = doc.get("description") or ""
    return Parsed(_prompts(path, ((p, item_locator(i)) for i, p in enumerate(prompts))),
                  version=None if version is None else str(version),
                  description=str(description).strip())


def _prompts(path: Path, items: Iterable[tuple[Any, Locate]]) -> tuple[Prompt, ...]:
    first_line: dict[str, int | None] = {}
    out = []
    for raw, locate in items:
        prompt = _prompt(path, raw, locate)
        if prompt.id in first_line:
            raise located(path, locate(raw, "id"), f"duplicate id {prompt.id!r} (first used on "
                          f"line {first_line[prompt.id]}); ids must be unique in a suite.")
        first_line[prompt.id] = locate(raw, "id")
        out.append(prompt)
    return tuple(out)


def _misspelling(key: str) -> str | None:
    """The prompt key ``key`` was probably meant to be, if it looks like a slip for one."""
    low = key.lower().replace("-", "_")
    if low in _ALIASES:
        return _ALIASES[low]
    if low in PROMPT_KEYS:
        return low
    close = difflib.get_close_matches(low, PROMPT_KEYS, n=1, cutoff=0.75)
    # "expected" or "negative" are a known key cut short, too far apart for difflib alone.
    return close[0] if close else next((k for k in PROMPT_KEYS if k.startswith(low + "_")), None)


def _prompt(path: Path, raw: Any, locate: Locate) -> Prompt:
    if not isinstance(raw, dict):
        raise located(path, locate(raw), f"each prompt must be a mapping with at least id and "
                                         f"text, got {type(raw).__name__} {raw!r}.")
    pid = raw.get("id")
    name = f"prompt {pid!r}" if isinstance(pid, str) else "prompt"
    for key in raw:
        guess = None if key in PROMPT_KEYS else _misspelling(str(key))
        if guess or not isinstance(key, str):
            hint = f" Did you mean {guess!r}?" if guess else ""
            raise located(path, locate(raw, key), f"{name}: unknown key {key!r}.{hint} Prompt "
                          f"keys are {', '.join(PROMPT_KEYS)}; other text keys are kept as "
                          "metadata, so rename this one if it is not meant to be one of those.")
    if not isinstance(pid, str) or not pid.strip():
        raise located(path, locate(raw, "id"), f"prompt has no id (got {pid!r}); add "
                      "`id: <unique name>` and quote numbers: id: \"001\".")
    edit = _edit(path, raw, locate, name) if "edit" in raw else None
    text = edit[0] if edit else raw.get("text")
    if not isinstance(text, str) or not text.strip():
        raise located(path, locate(raw, "text"), f"{name} has no text (got {text!r}); add "
                      "`text: <the prompt>`.")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise located(path, locate(raw, "tags"), f"{name}: tags must be a list of text, e.g. "
                      f"tags: [category:sign, length:short]; got {tags!r}.")
    optional = {}
    for key in ("expected_text", "negative_prompt"):
        value = raw.get(key)
        if not isinstance(value, (str, type(None))):
            raise located(path, locate(raw, key), f"{name}: {key} must be text, got {value!r}; "
                          f"quote it: {key}: \"{value}\".")
        # YAML block scalars (`text: >`) end in a newline that is no part of the prompt.
        optional[key] = None if value is None else value.strip()
    meta = {k: v for k, v in raw.items() if k not in PROMPT_KEYS}
    if edit:
        meta |= edit[2]
    return Prompt(id=pid, text=text.strip(), tags=tuple(tags), **optional,
                  controls=edit[1] if edit else _controls(path, raw, locate, name), meta=meta)


def _edit(path: Path, raw: dict, locate: Locate, name: str) -> tuple[str, tuple[Control, ...], dict]:
    """An instruction edit, ``edit: {image, instruction, mask}``: the instruction becomes the
    prompt text, the image an ``edit_image`` control (its hash in the cache key) and the
    optional mask (white = the edit may change these pixels) the ``edit_region`` metadata,
    relative to the image's folder, where the preservation metric looks for it."""
    spec = raw["edit"]
    if "text" in raw or "controls" in raw:
        raise located(path, locate(raw, "edit"), f"{name}: an edit's instruction is its text and "
                      "its image its control; give edit: {image, instruction} without text or "
                      "controls.")
    if not isinstance(spec, dict) or not isinstance(spec.get("image"), str) \
            or not isinstance(spec.get("instruction"), str) or not spec["instruction"].strip():
        raise located(path, locate(raw, "edit"), f"{name}: edit needs image and instruction, "
                      "e.g. edit: {image: images/cat.png, instruction: make the cat black}; "
                      f"got {spec!r}.")
    for k in spec:
        if k not in ("image", "instruction", "mask"):
            raise located(path, locate(spec, k), f"{name}: edit takes image, instruction and "
                          f"mask, not {k!r}.{did_you_mean(str(k), ['image', 'instruction', 'mask'])}")
    files = {}
    for k in ("image", "mask"):
        if spec.get(k) is None:
            continue
        file = (path.parent / str(spec[k])).resolve()
        if not file.is_file():
            raise located(path, locate(spec, k), f"{name}: edit {k} file not found: {file} "
                          "(paths are relative to the suite file's folder).")
        files[k] = file
    image = files["image"]
    control = Control(kind="edit_image", path=str(image), sha256=sha256_hex(image.read_bytes()))
    meta = {"edit_region": os.path.relpath(files["mask"], image.parent)} if "mask" in files else {}
    return spec["instruction"].strip(), (control,), meta


def _controls(path: Path, raw: dict, locate: Locate, name: str) -> tuple[Control, ...]:
    spec = raw.get("controls") or {}
    if not isinstance(spec, dict):
        raise located(path, locate(raw, "controls"), f"{name}: controls must map a kind to its "
                      "settings, e.g. controls: {init_image: {path: images/a.png, strength: 0.6}}.")
    out = []
    for kind, settings in spec.items():
        if kind not in CONTROL_KINDS:
            raise located(path, locate(spec, kind), f"{name}: unknown control kind {kind!r}."
                          f"{did_you_mean(str(kind), CONTROL_KINDS)}")
        if not isinstance(settings, dict) or not isinstance(settings.get("path"), str):
            raise located(path, locate(spec, kind), f"{name}: control {kind} needs a path: "
                          f"{kind}: {{path: images/{kind}.png}}.")
        file = (path.parent / settings["path"]).resolve()
        if not file.is_file():
            raise located(path, locate(settings, "path"), f"{name}: {kind} file not found: {file} "
                          "(paths are relative to the suite file's folder).")
        out.append(Control(kind=kind, path=str(file), sha256=sha256_hex(file.read_bytes()),
                           params={k: v for k, v in settings.items() if k != "path"}))
    return tuple(out)
