"""Instruction edits in the own suite format (``edit: {image, instruction, mask}``) and the
built-in editing suite."""

import collections

import pytest
from PIL import Image

from harness.suites import SuiteError, load_suite
from harness.types import sha256_hex


def load(file):
    return load_suite({"name": "t", "file": str(file), "format": "harness"})


def test_edit_shorthand_becomes_instruction_control_and_region(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "img" / "a.png")
    Image.new("L", (8, 8), 255).save(tmp_path / "img" / "m.png")
    (tmp_path / "s.yaml").write_text(
        "name: t\nprompts:\n"
        "  - id: e1\n    edit: {image: img/a.png, instruction: ' make it red ', mask: img/m.png}\n"
        "    must_keep: the frame\n"
        "  - id: e2\n    edit: {image: img/a.png, instruction: add a hat}\n")
    a, b = load(tmp_path / "s.yaml").prompts
    assert a.text == "make it red" and b.text == "add a hat"
    (c,) = a.controls
    assert (c.kind, c.sha256, dict(c.params)) == (
        "edit_image", sha256_hex((tmp_path / "img" / "a.png").read_bytes()), {})
    assert a.meta == {"must_keep": "the frame", "edit_region": "m.png"} and b.meta == {}


@pytest.mark.parametrize("entry, message", [
    ("edit: {image: img/a.png, instruction: x}\n    text: y", "without text or controls"),
    ("edit: {image: img/a.png}", "edit needs image and instruction"),
    ("edit: {image: img/a.png, instruction: x, mask: img/none.png}", "edit mask file not found"),
    ("edit: {image: img/a.png, instruction: x, maks: img/a.png}", "not 'maks'.*Did you mean 'mask'"),
])
def test_edit_mistakes_name_the_file_and_the_fix(tmp_path, entry, message):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "s.yaml").write_text(f"name: t\nprompts:\n  - id: e\n    {entry}\n")
    with pytest.raises(SuiteError, match=message):
        load(tmp_path / "s.yaml")


def test_builtin_editing_suite_has_forty_plus_edits_of_seven_kinds():
    suite = load_suite({"name": "editing", "file": "editing.yaml"})
    kinds = collections.Counter(p.meta["edit_type"] for p in suite.prompts)
    assert len(suite.prompts) >= 40 and set(kinds) == {
        "add", "remove", "replace", "recolour", "text", "style", "background"}
    assert min(kinds.values()) >= 5
    for p in suite.prompts:
        assert p.meta["must_change"] and p.meta["must_keep"], p.id
        assert [c.kind for c in p.controls] == ["edit_image"]
        assert (p.expected_text is not None) == (p.meta["edit_type"] == "text"), p.id
    assert len({c.sha256 for p in suite.prompts for c in p.controls}) == 6
