"""What the installed official ``openai`` SDK says about the Images API, read at run time.

OpenAI generates the SDK's types from its OpenAPI spec, so they carry the truth our adapter must
follow: the ``ImageModel`` literal lists every model name, its docstring lists the retired and
shut-down ones with dates and replacements, and the docstrings of ``ImageGenerateParams``
say which sizes, qualities and parameters apply to which models. :func:`sdk_spec` reads them
(``typing.get_args`` of the literals, the docstrings from the source with :mod:`ast`), so
upgrading the SDK to a release that retires a model changes what the adapter accepts, and
``tests/generators/test_openai_sdk_conformance.py`` fails where a config still uses it.

Nothing here is a table of our own: a sentence the parser cannot find leaves its field empty,
and the conformance test fails instead of the adapter guessing.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import functools
import inspect
import re
import typing
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from harness.errors import ConfigError

SOURCE = "openai/types/image_model.py and image_generate_params.py of the installed openai SDK"


@dataclasses.dataclass(frozen=True)
class Retirement:
    """A model the SDK's ``ImageModel`` docstring lists under "Deprecated values"."""

    model: str
    verb: str
    """``retired`` or ``shut down``, as the SDK words it."""
    on: dt.date
    use: str
    """The SDK's replacement, as worded ("gpt-image-2.5-sunburst or gpt-image-2.5-flare")."""
    replacements: tuple[str, ...]
    """Model names in ``use`` (empty when the SDK names none: "a GPT image model")."""

    def message(self) -> str:
        return f"{self.model} was {self.verb} on {self.on.isoformat()}; use {self.use}"


@dataclasses.dataclass(frozen=True)
class ImagesSpec:
    """The Images API as the installed SDK describes it."""

    sdk_version: str
    models: tuple[str, ...]
    """Every name of ``ImageModel``, retired ones included."""
    retired: Mapping[str, Retirement]
    qualities: tuple[str, ...]
    """Qualities every current model takes (the ``quality`` literal less its deprecated values
    and those the docstring reserves for some models)."""
    extra_qualities: Mapping[str, frozenset[str]]
    """Quality -> the models that also take it (``xhigh``, ``max``)."""
    deprecated_qualities: tuple[str, ...]
    sizes: tuple[str, ...]
    """Standard ``WIDTHxHEIGHT`` sizes of the ``size`` literal (deprecated ones and ``auto`` left
    out)."""
    deprecated_sizes: tuple[str, ...]
    free_size_models: frozenset[str]
    """Models that take arbitrary ``WIDTHxHEIGHT`` within the limits below."""
    size_multiple: int | None
    aspect_range: tuple[float, float] | None
    max_size: tuple[int, int] | None
    params: frozenset[str]
    """Every body field of ``ImageGenerateParams``."""
    legacy_params: frozenset[str]
    """Fields the SDK says GPT image models do not take (``response_format``, ``style``)."""
    edit_params: frozenset[str]
    edit_qualities: tuple[str, ...]

    @property
    def current(self) -> tuple[str, ...]:
        return tuple(m for m in self.models if m not in self.retired)

    def qualities_of(self, model: str) -> tuple[str, ...]:
        extra = tuple(q for q, ms in self.extra_qualities.items() if model in ms)
        return self.qualities + extra

    def size_error(self, model: str, width: int, height: int) -> str | None:
        """Why ``model`` cannot make ``width`` x ``height`` per the SDK, or None."""
        size = f"{width}x{height}"
        if size in self.sizes:
            return None
        if model not in self.free_size_models:
            return f"Valid width x height: {', '.join(self.sizes)}."
        rules = []
        if self.size_multiple:
            rules.append(f"width and height divisible by {self.size_multiple}")
        if self.aspect_range:
            lo, hi = self.aspect_range
            rules.append(f"aspect ratio between {_ratio(lo)} and {_ratio(hi)}")
        if self.max_size:
            mw, mh = self.max_size
            rules.append(f"at most {mw}x{mh} ({mw * mh:,} pixels, longest edge {max(mw, mh)})")
        ok = (not self.size_multiple or (width % self.size_multiple == 0
                                         and height % self.size_multiple == 0))
        if self.aspect_range:
            ok = ok and self.aspect_range[0] <= width / height <= self.aspect_range[1]
        if self.max_size:
            mw, mh = self.max_size
            ok = ok and max(width, height) <= max(mw, mh) and width * height <= mw * mh
        return None if ok else f"{model} takes any size with {'; '.join(rules)}."


def _ratio(x: float) -> str:
    return f"1:{round(1 / x)}" if x < 1 else f"{round(x)}:1"


@functools.cache
def sdk_spec() -> ImagesSpec:
    """The Images API spec of the installed ``openai`` SDK (read once per process)."""
    try:
        import openai
        from openai.types import image_edit_params, image_generate_params, image_model
    except ImportError as e:
        raise ConfigError("OpenAI image models are checked against the official openai SDK's "
                          "types, and the openai package is not installed. Install it with: "
                          "pip install 'harness[api]'") from e
    return parse_spec(str(openai.__version__), image_model, image_generate_params,
                      image_edit_params)


def parse_spec(version: str, image_model: ModuleType, gen: ModuleType,
               edit: ModuleType) -> ImagesSpec:
    """Read the spec from the SDK's type modules (separate from :func:`sdk_spec` so a test can
    hand it an edited copy of them, as a future SDK release would be)."""
    models = tuple(str(m) for m in typing.get_args(image_model.ImageModel))
    retired = _retirements(_module_docs(image_model).get("ImageModel", ""), models)

    hints = typing.get_type_hints(gen.ImageGenerateParamsNonStreaming)
    docs = _attr_docs(gen, "ImageGenerateParamsBase")
    q_all = _literals(hints["quality"])
    q_deprecated = tuple(_deprecated(docs.get("quality", "")))
    extra_q = _extra_qualities(docs.get("quality", ""), models, q_all)
    qualities = tuple(q for q in q_all if q not in q_deprecated and q not in extra_q)

    s_deprecated = tuple(_deprecated(docs.get("size", "")))
    size_doc = _flat(docs.get("size", ""))
    sizes = tuple(s for s in _literals(hints["size"]) if s not in s_deprecated and s != "auto")
    free = _sentence_with(size_doc, "arbitrary resolutions")
    m = re.search(r"divisible by (\d+)", size_doc)
    a = re.search(r"between (\d+):(\d+) and (\d+):(\d+)", size_doc)
    mx = re.search(r"maximum supported resolution is `(\d+)x(\d+)`", size_doc)

    edit_hints = typing.get_type_hints(edit.ImageEditParamsNonStreaming)
    edit_docs = _attr_docs(edit, "ImageEditParamsBase")
    eq_deprecated = set(_deprecated(edit_docs.get("quality", "")))
    return ImagesSpec(
        sdk_version=version, models=models, retired=retired, qualities=qualities,
        extra_qualities=extra_q, deprecated_qualities=q_deprecated, sizes=sizes,
        deprecated_sizes=s_deprecated,
        free_size_models=frozenset(_models_in(free, models)) if free else frozenset(),
        size_multiple=int(m.group(1)) if m else None,
        aspect_range=(int(a.group(1)) / int(a.group(2)), int(a.group(3)) / int(a.group(4)))
        if a else None,
        max_size=(int(mx.group(1)), int(mx.group(2))) if mx else None,
        params=frozenset(hints),
        legacy_params=frozenset(k for k, d in docs.items()
                                if "unsupported for gpt image models" in _flat(d).lower()),
        edit_params=frozenset(edit_hints),
        edit_qualities=tuple(q for q in _literals(edit_hints["quality"]) if q not in eq_deprecated),
    )


# -- reading the SDK's source -------------------------------------------------------------------

def _module_docs(module: ModuleType) -> dict[str, str]:
    """Name -> the string literal that follows its module-level assignment (an attribute
    docstring; Python keeps none of these at run time, so they are read from the source)."""
    return _docs_after(ast.parse(inspect.getsource(module)).body)


def _attr_docs(module: ModuleType, cls: str) -> dict[str, str]:
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return _docs_after(node.body)
    return {}


def _docs_after(body: list[ast.stmt]) -> dict[str, str]:
    out: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:], strict=False):
        target = (stmt.target if isinstance(stmt, ast.AnnAssign)
                  else stmt.targets[0] if isinstance(stmt, ast.Assign) else None)
        if (isinstance(target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
            out[target.id] = inspect.cleandoc(nxt.value.value)
    return out


def _literals(tp: Any) -> tuple[str, ...]:
    """The string values of every ``Literal`` inside ``tp`` (through Optional/Union)."""
    if typing.get_origin(tp) is typing.Literal:
        return tuple(str(v) for v in typing.get_args(tp))
    out: list[str] = []
    for arg in typing.get_args(tp):
        out.extend(v for v in _literals(arg) if v not in out)
    return tuple(out)


def _flat(text: str) -> str:
    return " ".join(text.split())


def _deprecated(doc: str) -> dict[str, str]:
    """The "Deprecated values:" bullets of a docstring: value -> what the SDK says of it."""
    _, sep, tail = doc.partition("Deprecated values:")
    out: dict[str, str] = {}
    if not sep:
        return out
    for bullet in re.split(r"\n\s*- ", "\n" + tail.strip()):
        bullet = _flat(bullet)
        m = re.match(r'((?:"[^"]+"(?:,\s*)?)+):\s*(.*)', bullet)
        if m:
            for value in re.findall(r'"([^"]+)"', m.group(1)):
                out[value] = m.group(2)
    return out


def _retirements(doc: str, models: tuple[str, ...]) -> dict[str, Retirement]:
    out = {}
    for model, text in _deprecated(doc).items():
        when = re.search(r"\b(retired|shut down) on ([A-Z][a-z]+ \d{1,2}, \d{4})", text)
        if not when:
            continue
        use = re.search(r"\bUse (.+?) instead\b", text)
        use_text = use.group(1) if use else "a current model"
        out[model] = Retirement(model, when.group(1),
                                dt.datetime.strptime(when.group(2), "%B %d, %Y").date(), use_text,
                                tuple(_models_in(use_text, models)))
    return out


def _sentences(doc: str) -> list[str]:
    return re.split(r"(?<=[.:])\s+(?=[-A-Z`])", _flat(doc))


def _sentence_with(doc: str, phrase: str) -> str:
    return next((s for s in _sentences(doc) if phrase in s), "")


def _models_in(text: str, models: tuple[str, ...]) -> list[str]:
    """Model names in ``text`` (backticked or bare), with the dated snapshots a phrase such as
    "including their `2026-09-08` snapshots" adds."""
    words = re.findall(r"[A-Za-z0-9][\w.-]*[\w]", text)
    found = [w for w in dict.fromkeys(words) if w in models]
    for date in re.findall(r"\d{4}-\d{2}-\d{2}", text):
        found += [f"{m}-{date}" for m in list(found) if f"{m}-{date}" in models]
    return list(dict.fromkeys(found))


def _extra_qualities(doc: str, models: tuple[str, ...],
                     qualities: tuple[str, ...]) -> dict[str, frozenset[str]]:
    """Qualities a sentence reserves for some models ("`X` and `Y` ... also support `xhigh`")."""
    out: dict[str, frozenset[str]] = {}
    for s in _sentences(doc):
        if "also support" not in s:
            continue
        names = _models_in(s, models)
        for q in re.findall(r"`([^`]+)`", s.split("also support", 1)[1]):
            if q in qualities and names:
                out[q] = frozenset(names)
    return out
