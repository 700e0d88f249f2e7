"""Suite loading: every format, the filters, the built-in suites, their configs, and errors."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.config import SuiteConfig
from harness.errors import ConfigError
from harness.suites import BUILTIN_SUITES_DIR, SuiteError, load_suite, resolve_suite_file

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "suites"
CONF = ROOT / "harness" / "conf" / "suite"
PARTI = Path(os.environ.get("HARNESS_PARTIPROMPTS") or
             ROOT.parent / "shared" / "data" / "prompt-sets" / "partiprompts" / "PartiPrompts.tsv")


def load(file, fmt="harness", **settings):
    return load_suite({"name": "t", "file": str(file), "format": fmt, **settings})


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- formats ---------------------------------------------------------------------------------

@pytest.mark.skipif(not PARTI.is_file(), reason=f"{PARTI} not present")
def test_partiprompts_real_file():
    with PARTI.open(encoding="utf-8", newline="") as f:
        # QUOTE_NONE: the published file quotes nothing, though some prompts start with '"'.
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    suite = load(PARTI, "partiprompts")
    assert len(suite.prompts) == len(rows) == 1632
    assert suite.source == str(PARTI.resolve())
    first = suite.prompts[0]
    assert (first.id, first.text, first.tags, dict(first.meta)) == (
        "parti-0001", "bond", ("category:Abstract", "challenge:Basic"),
        {"note": "Biology-inspired concepts with multiple meanings"})
    by_id = {p.id: p for p in suite.prompts}
    giggle = by_id["parti-1561"]
    assert giggle.text.startswith('"G I G G L E" painted in thick colorful lettering')
    assert giggle.tags == ("category:Illustrations", "challenge:Writing & Symbols")
    assert giggle.meta == {}
    assert by_id["parti-0054"].text == "Salvador Dalí"
    assert by_id["parti-0310"].text.endswith("flying over the city of Mars.")  # trailing space
    assert by_id["parti-1632"].text == "a series of musical notes on a computer screen"
    categories = Counter(t for p in suite.prompts for t in p.tags if t.startswith("category:"))
    assert categories["category:Animals"] == 314 and len(categories) == 12


def test_drawbench_fixture():
    suite = load(DATA / "drawbench.csv", "drawbench")
    assert [p.id for p in suite.prompts] == [f"drawbench-00{i}" for i in range(1, 7)]
    text = suite.prompts[3]
    assert text.text == 'A storefront with "Hello World" written on it.'
    assert text.tags == ("category:Text",)
    assert suite.prompts[0].text == "A red colored car."
    assert Counter(p.tags[0] for p in suite.prompts)["category:Colors"] == 2


def test_drawbench_header_aliases(tmp_path):
    path = write(tmp_path, "db.csv", "prompt,CATEGORY\n\"Two cars, one red\",Counting\n")
    (prompt,) = load(path, "drawbench").prompts
    assert (prompt.id, prompt.text, prompt.tags) == ("drawbench-001", "Two cars, one red",
                                                     ("category:Counting",))


def test_drawbench_wrong_columns(tmp_path):
    path = write(tmp_path, "db.csv", "text,kind\na cat,animal\n")
    with pytest.raises(SuiteError, match=rf"{re.escape(str(path))}:1: no 'prompts' or 'prompt'"):
        load(path, "drawbench")


def test_geneval_fixture():
    suite = load(DATA / "evaluation_metadata.jsonl", "geneval")
    assert [p.id for p in suite.prompts] == [f"geneval-000{i}" for i in range(6)]
    counting = suite.prompts[2]
    assert counting.text == "a photo of two clocks"
    assert counting.tags == ("category:counting",)
    assert counting.meta == {"include": [{"class": "clock", "count": 2}],
                             "exclude": [{"class": "clock", "count": 3}]}
    position = suite.prompts[4]  # after the blank line
    assert position.meta["include"][1]["position"] == ["above", 0]
    assert position.tags == ("category:position",)


def test_geneval_missing_tag(tmp_path):
    path = write(tmp_path, "g.jsonl", '{"prompt": "a dog", "tag": "single_object"}\n'
                                      '{"prompt": "a cat"}\n')
    with pytest.raises(SuiteError, match=rf"{re.escape(str(path))}:2: missing 'tag'"):
        load(path, "geneval")


def test_t2i_compbench_folder_and_file():
    suite = load(DATA / "t2i-compbench", "t2i-compbench")
    assert [p.id for p in suite.prompts] == [
        "color-0000", "color-0001", "color-0002", "complex-0000", "spatial-0000", "spatial-0001"]
    assert suite.prompts[2].text == "a brown horse and a white cow"  # blank line skipped
    assert suite.prompts[4].tags == ("category:spatial",)
    one = load(DATA / "t2i-compbench" / "spatial_val.txt", "t2i-compbench")
    assert [p.text for p in one.prompts] == ["a balloon on the left of a dog",
                                            "a lamp on the top of a table"]


def test_t2i_compbench_mixed_splits(tmp_path):
    write(tmp_path, "color_val.txt", "a red car\n")
    write(tmp_path, "color_train.txt", "a blue car\n")
    message = "category 'color' also comes from color_train.txt"
    with pytest.raises(SuiteError, match=re.escape(message)):
        load(tmp_path, "t2i-compbench")


def test_own_yaml_fixture():
    suite = load(DATA / "own.yaml")
    assert (suite.name, suite.version, suite.description) == ("t", "2.1", "Own-format fixture.")
    plain, full = suite.prompts
    assert (plain.id, plain.text, plain.tags, plain.expected_text) == (
        "plain", "a red bicycle", (), None)
    assert full.text == 'A shop window with "SALE" above "50% OFF", painted in white'
    assert full.tags == ("category:sign", "multi-line")
    assert full.expected_text == "SALE\n50% OFF"
    assert full.negative_prompt == "blurry, low quality"
    assert full.meta == {"difficulty": "hard", "source": {"author": "fixture", "year": 2024}}


def test_own_jsonl_fixture():
    suite = load(DATA / "own.jsonl")
    assert suite.version == "1"
    a, b = suite.prompts
    assert (a.id, a.text, a.tags) == ("a", "a cat", ("category:animal",))
    assert (b.text, b.expected_text, dict(b.meta)) == ('a sign that says "HI"', "HI",
                                                      {"note": "short"})


def test_controls(tmp_path):
    (tmp_path / "img").mkdir()
    image = tmp_path / "img" / "init.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nnot really an image")
    path = write(tmp_path, "s.yaml", """\
prompts:
  - id: edit
    text: the same scene at night
    controls:
      init_image: {path: img/init.png, strength: 0.6}
      mask: {path: img/init.png}
""")
    (init, mask) = load(path).prompts[0].controls
    assert init.kind == "init_image" and mask.kind == "mask"
    assert init.path == str(image.resolve())
    assert init.sha256 == hashlib.sha256(image.read_bytes()).hexdigest()
    assert init.params == {"strength": 0.6} and mask.params == {}


# --- errors: path, line, and a way out -------------------------------------------------------

GOOD = "prompts:\n  - id: a\n    text: a cat\n"
ERRORS = [
    ("malformed-yaml", GOOD + "  - id: b\n    text: \"unclosed\n", 5, "invalid YAML"),
    ("bad-indent", GOOD + "  - id: b\n   text: x\n", 5, "invalid YAML"),
    ("duplicate-id", GOOD + "  - id: b\n    text: x\n  - id: a\n    text: y\n", 6,
     "duplicate id 'a' (first used on line 2)"),
    ("missing-text", GOOD + "  - id: b\n    tags: [x]\n", 4, "prompt 'b' has no text"),
    ("missing-id", GOOD + "  - text: a dog\n", 4, "prompt has no id"),
    ("misspelt-tags", GOOD + "  - id: b\n    text: x\n    tag: [category:a]\n", 6,
     "unknown key 'tag'. Did you mean 'tags'?"),
    ("misspelt-expected", GOOD + "  - id: b\n    text: x\n    expected: HI\n", 6,
     "Did you mean 'expected_text'?"),
    ("misspelt-text", GOOD + "  - id: b\n    txt: x\n", 5, "Did you mean 'text'?"),
    ("prompt-for-text", GOOD + "  - id: b\n    prompt: x\n", 5, "Did you mean 'text'?"),
    ("tags-not-list", GOOD + "  - id: b\n    text: x\n    tags: category:a\n", 6,
     "tags must be a list"),
    ("duplicate-key", GOOD + "  - id: b\n    text: x\n    text: y\n", 6,
     "duplicate key 'text' (first on line 5)"),
    ("missing-control", GOOD + "  - id: b\n    text: x\n    controls:\n"
                               "      mask:\n        path: nowhere.png\n", 8,
     "prompt 'b': mask file not found"),
    ("control-kind", GOOD + "  - id: b\n    text: x\n    controls:\n      init: {path: a.png}\n",
     7, "Did you mean 'init_image'?"),
    ("suite-key", "name: x\nprompt:\n  - id: a\n    text: b\n", 2,
     "unknown suite key 'prompt'. Did you mean 'prompts'?"),
    ("not-a-mapping", GOOD + "  - just a string\n", 4, "each prompt must be a mapping"),
]


@pytest.mark.parametrize("content,line,message", [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_yaml_errors_name_file_and_line(tmp_path, content, line, message):
    path = write(tmp_path, "suite.yaml", content)
    with pytest.raises(SuiteError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert message in str(e.value)


@pytest.mark.parametrize("lines,line,message", [
    (['{"id": "a", "text": "x"}', "", '{"id": "b", "text": "y",}'], 3, "invalid JSON"),
    (['{"id": "a", "text": "x"}', '["b", "y"]'], 2, "expected a JSON object"),
    (['{"id": "a", "text": "x"}', '{"id": "a", "text": "y"}'], 2, "duplicate id 'a'"),
    (['{"id": "a", "txt": "x"}'], 1, "Did you mean 'text'?"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, lines, line, message):
    path = write(tmp_path, "suite.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(SuiteError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}:{line}: ")
    assert message in str(e.value)


def test_not_utf8_names_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"id": "a", "text": "x"}\n{"id": "b", "text": "caf\xe9"}\n')
    with pytest.raises(SuiteError, match=rf"{re.escape(str(path))}:2: not UTF-8"):
        load(path)


def test_suite_error_is_config_error():
    assert issubclass(SuiteError, ConfigError)


# --- filters ---------------------------------------------------------------------------------

@pytest.fixture
def tagged(tmp_path) -> Path:
    """30 prompts: 12 in category:a, 10 in category:b, 5 in category:c, 3 untagged; every
    third also carries hard (listed first, so it is the first tag of those prompts)."""
    cats = ["a"] * 12 + ["b"] * 10 + ["c"] * 5 + [None] * 3
    rows = []
    for i, cat in enumerate(cats):
        tags = (["hard"] if i % 3 == 0 else []) + ([f"category:{cat}"] if cat else [])
        rows.append(json.dumps({"id": f"p{i:02d}", "text": f"prompt {i}", "tags": tags}))
    return write(tmp_path, "tagged.jsonl", "\n".join(rows) + "\n")


def ids(suite):
    return [p.id for p in suite.prompts]


def test_filter_tags_and_exclude(tagged):
    assert len(load(tagged, tags=["category:c"]).prompts) == 5
    assert len(load(tagged, tags=["category:c", "category:b"]).prompts) == 15
    kept = load(tagged, tags=["category:a"], exclude_tags=["hard"])
    assert all("hard" not in p.tags and "category:a" in p.tags for p in kept.prompts)
    assert len(kept.prompts) == 8


def test_filter_per_tag_with_prefix(tagged):
    suite = load(tagged, per_tag=4, stratify_prefix="category:", seed=7)
    strata = Counter(next((t for t in p.tags if t.startswith("category:")), None)
                     for p in suite.prompts)
    assert strata == {"category:a": 4, "category:b": 4, "category:c": 4, None: 3}
    assert ids(suite) == sorted(ids(suite))  # file order kept
    assert ids(load(tagged, per_tag=4, stratify_prefix="category:", seed=7)) == ids(suite)
    others = {tuple(ids(load(tagged, per_tag=4, stratify_prefix="category:", seed=s)))
              for s in range(5)}
    assert len(others) > 1  # the seed matters


def test_filter_per_tag_first_tag_counts(tagged):
    # Without a prefix a prompt's first tag is its stratum: "hard" for every third prompt.
    suite = load(tagged, per_tag=2, seed=0)
    strata = Counter(p.tags[0] if p.tags else None for p in suite.prompts)
    assert strata == {"hard": 2, "category:a": 2, "category:b": 2, "category:c": 2, None: 2}


def test_filter_limit_after_filters(tagged):
    assert ids(load(tagged, tags=["category:b"], limit=3)) == ["p12", "p13", "p14"]
    assert len(load(tagged, per_tag=4, stratify_prefix="category:", limit=5).prompts) == 5


def test_filter_leaving_nothing_is_an_error(tagged):
    with pytest.raises(SuiteError, match=r"exclude_tags=\['category:c'\] left no prompts "
                                         r"\(5 before it\)\. Tags in this suite: .*category:b"):
        load(tagged, tags=["category:c"], exclude_tags=["category:c"])


@pytest.mark.parametrize("settings,message", [
    ({"tags": ["category:d"]}, "tags names 'category:d', which no prompt carries. Did you mean"),
    ({"exclude_tags": ["hrad"]}, "Did you mean 'hard'?"),
    ({"per_tag": 0}, "per_tag must be 1 or more"),
    ({"limit": 0}, "limit must be 1 or more"),
    ({"per_tag": 2, "stratify_prefix": "categroy:"}, "Did you mean 'category:'?"),
])
def test_filter_setting_errors(tagged, settings, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        load(tagged, **settings)


# --- settings, formats and file resolution -----------------------------------------------------

def test_accepts_dataclass_and_dictconfig():
    as_dataclass = load_suite(SuiteConfig(name="toy", file="toy-shapes.yaml", limit=3))
    as_dictconfig = load_suite(OmegaConf.create({"name": "toy", "file": "toy-shapes.yaml",
                                                 "limit": 3}))
    assert as_dataclass == as_dictconfig and len(as_dataclass.prompts) == 3


@pytest.mark.parametrize("cfg,message", [
    ({"name": "x", "file": "toy-shapes.yaml", "format": "parti"}, "Did you mean 'partiprompts'?"),
    ({"name": "x", "file": "toy-shapes.yaml", "per_tags": 2}, "Did you mean 'per_tag'"),
    ({"name": "x"}, "required setting(s) missing: file"),
    ({"name": "x", "file": "toy-shapes.yaml", "limit": "many"}, "suite.limit: Value 'many'"),
])
def test_bad_settings(cfg, message):
    with pytest.raises(SuiteError, match=re.escape(message)):
        load_suite(cfg)


def test_every_reader_module_registers_its_format():
    from harness.suites import formats

    found = formats()
    assert list(found) == ["harness", "drawbench", "dsg", "genai-bench", "geneval", "geneval2",
                           "imgedit", "partiprompts", "t2i-compbench", "tifa"]
    assert all(r.description for r in found.values())
    assert "github.com/djghosh13/geneval" in found["geneval"].source and not found["harness"].source


def test_a_registered_reader_is_used_by_load_suite(tmp_path, monkeypatch):
    from harness.suites import base, formats
    from harness.types import Prompt

    monkeypatch.setattr(base, "READERS", dict(base.READERS))  # leave the real registry as it was
    monkeypatch.setattr("harness.suites.READERS", base.READERS)
    (tmp_path / "lines.txt").write_text("a red circle\na blue square\n")

    @base.register_format("lines-test", source="made in the test")
    def load_lines(path):
        return base.Parsed(tuple(Prompt(id=f"l{i}", text=t)
                                 for i, t in enumerate(path.read_text().split("\n")) if t))

    assert "lines-test" in formats()
    suite = load_suite({"name": "x", "file": str(tmp_path / "lines.txt"), "format": "lines-test"})
    assert [p.text for p in suite.prompts] == ["a red circle", "a blue square"]
    with pytest.raises(SuiteError, match="made in the test"):
        load_suite({"name": "x", "file": str(tmp_path / "gone.txt"), "format": "lines-test"})
    with pytest.raises(ValueError, match="registered twice"):
        base.register_format("harness")(load_lines)


def test_missing_public_file_says_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SuiteError, match=re.escape("github.com/google-research/parti")):
        load("PartiPrompts.tsv", "partiprompts")


def test_resolve_suite_file_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    builtin = BUILTIN_SUITES_DIR / "toy-shapes.yaml"
    assert resolve_suite_file("toy-shapes.yaml") == builtin.resolve()
    write(tmp_path, "toy-shapes.yaml", GOOD)  # the working directory wins over built-ins
    assert resolve_suite_file("toy-shapes.yaml") == (tmp_path / "toy-shapes.yaml").resolve()
    assert resolve_suite_file(str(builtin)) == builtin.resolve()  # absolute as is
    with pytest.raises(SuiteError) as e:
        resolve_suite_file("nope.yaml")
    message = str(e.value)
    assert str(tmp_path / "nope.yaml") in message
    assert str(BUILTIN_SUITES_DIR / "nope.yaml") in message
    assert "text-rendering.yaml" in message and "toy-shapes.yaml" in message


# --- built-in suites and their configs -------------------------------------------------------

def builtin(name):
    return load_suite({"name": name, "file": f"{name}.yaml"})


def category_counts(suite):
    return Counter(t for p in suite.prompts for t in p.tags if t.startswith("category:"))


def test_text_rendering_suite():
    suite = builtin("text-rendering")
    assert len(suite.prompts) >= 44
    for p in suite.prompts:
        assert p.expected_text, p.id
        for line in p.expected_text.split("\n"):
            assert f'"{line}"' in p.text, p.id
        n = len(p.expected_text)
        length = "short" if n <= 10 else "medium" if n <= 24 else "long"
        assert f"length:{length}" in p.tags, p.id
        assert ("multi-line" in p.tags) == ("\n" in p.expected_text), p.id
    tags = Counter(t for p in suite.prompts for t in p.tags)
    for tag in ("category:sign", "category:shop-front", "category:label", "category:book-cover",
                "category:packaging", "category:poster", "category:t-shirt",
                "category:street-sign", "category:handwritten"):
        assert tags[tag] >= 3, tag
    for tag in ("length:long", "multi-line", "numbers", "mixed-case", "punctuation"):
        assert tags[tag] >= 4, tag


def test_composition_suite():
    suite = builtin("composition")
    assert len(suite.prompts) >= 44
    counts = category_counts(suite)
    for category in ("counting", "spatial", "attribute-binding", "negation"):
        assert counts[f"category:{category}"] >= 10, category
    for p in suite.prompts:
        if "category:counting" in p.tags:
            assert isinstance(p.meta["count"], int) and p.meta["count"] >= 1, p.id


def test_styles_suite():
    suite = builtin("styles")
    assert len(suite.prompts) >= 24
    styles = {t for p in suite.prompts for t in p.tags if t.startswith("style:")}
    assert len(styles) >= 8
    assert all(any(t.startswith("style:") for t in p.tags) and
               any(t.startswith("category:") for t in p.tags) for p in suite.prompts)


def test_toy_shapes_suite():
    suite = builtin("toy-shapes")
    assert len(suite.prompts) == 24 and suite.version == "1"
    assert set(category_counts(suite)) == {f"category:{c}" for c in
                                           ("shape", "colour", "position", "count", "text")}
    for p in suite.prompts:
        assert ("category:text" in p.tags) == (p.expected_text is not None), p.id
        if p.expected_text:
            assert f'"{p.expected_text}"' in p.text


def test_every_builtin_file_has_a_config():
    assert {p.stem for p in BUILTIN_SUITES_DIR.glob("*.yaml")} <= {p.stem for p in
                                                                    CONF.glob("*.yaml")}


PUBLIC_FIXTURES = {"drawbench": ("HARNESS_DRAWBENCH", DATA / "drawbench.csv"),
                   "geneval": ("HARNESS_GENEVAL", DATA / "evaluation_metadata.jsonl"),
                   "t2i-compbench": ("HARNESS_T2I_COMPBENCH", DATA / "t2i-compbench"),
                   "partiprompts": ("HARNESS_PARTIPROMPTS", PARTI),
                   "tifa": ("HARNESS_TIFA", DATA / "tifa_v1.0_question_answers.json"),
                   "dsg": ("HARNESS_DSG", DATA / "dsg-1k-anns.csv"),
                   "geneval2": ("HARNESS_GENEVAL2", DATA / "geneval2_data.jsonl"),
                   "genai-bench": ("HARNESS_GENAI_BENCH", DATA / "genai-bench" / "genai_image.json")}


@pytest.mark.parametrize("config", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_suite_configs(config, monkeypatch):
    path = CONF / f"{config}.yaml"
    cfg = OmegaConf.load(path)
    assert list(cfg.keys()) == [f.name for f in fields(SuiteConfig)]
    assert cfg.name == config
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\w+:", line):  # every key has a comment above it or beside it
            assert "#" in line or lines[i - 1].startswith("#"), f"{path}:{i + 1}"
    if config in PUBLIC_FIXTURES:
        var, file = PUBLIC_FIXTURES[config]
        if not file.exists():
            pytest.skip(f"{file} not present")
        monkeypatch.setenv(var, str(file))
    suite = load_suite(cfg)
    assert suite.name == config and suite.prompts and suite.description
