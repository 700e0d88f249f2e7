"""The ImgEdit-Bench loader on a sample in the published shape (basic_edit.json + singleturn/)."""

import json
import shutil
from pathlib import Path

import pytest

from harness.suites import SuiteError, load_suite
from harness.types import sha256_hex

DATA = Path(__file__).parent / "data" / "imgedit"


def load(file, **settings):
    return load_suite({"name": "imgedit", "file": str(file), "format": "imgedit", **settings})


def test_reads_the_published_shape(monkeypatch):
    monkeypatch.delenv("HARNESS_IMGEDIT_IMAGES", raising=False)
    suite = load(DATA / "basic_edit.json")
    assert [p.id for p in suite.prompts] == ["imgedit-1082", "imgedit-673", "imgedit-578"]
    p = suite.prompts[0]
    assert p.text == "Change the tortoise's shell texture to a smooth surface."
    assert p.tags == ("edit:alter", "imgedit-folder:animal")
    (c,) = p.controls
    src = DATA / "singleturn" / "animal" / "000342021.jpg"
    assert c.kind == "edit_image" and c.sha256 == sha256_hex(src.read_bytes())
    assert p.meta == {"edit_type": "alter", "source_id": "animal/000342021.jpg"}
    # Two edits of one source share its hash; filters work on the edit type.
    assert suite.prompts[2].controls[0].sha256 == c.sha256
    assert [p.id for p in load(DATA / "basic_edit.json", tags=["edit:style"]).prompts] == ["imgedit-673"]


def test_images_folder_from_the_environment_and_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_IMGEDIT_IMAGES", raising=False)
    shutil.copy(DATA / "basic_edit.json", tmp_path / "basic_edit.json")
    with pytest.raises(SuiteError, match="source images not found; tried .*HARNESS_IMGEDIT_IMAGES"):
        load(tmp_path / "basic_edit.json")
    monkeypatch.setenv("HARNESS_IMGEDIT_IMAGES", str(DATA / "singleturn"))
    assert len(load(tmp_path / "basic_edit.json").prompts) == 3
    bad = {"1": {"id": "animal/missing.jpg", "prompt": "Add a hat.", "edit_type": "add"}}
    (tmp_path / "basic_edit.json").write_text(json.dumps(bad))
    with pytest.raises(SuiteError, match=r"entry '1': source image .*missing.jpg not found"):
        load(tmp_path / "basic_edit.json")
    (tmp_path / "basic_edit.json").write_text(json.dumps({"1": {"id": "a.jpg", "prompt": ""}}))
    with pytest.raises(SuiteError, match="needs text fields id, prompt and edit_type"):
        load(tmp_path / "basic_edit.json")
