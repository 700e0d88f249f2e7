"""ImportedImages: a folder plus a CSV or JSONL manifest; every bad input named by file and line."""

import json
from pathlib import Path

import pytest
from PIL import Image

from harness import cli
from harness.errors import ConfigError
from harness.generators.imported import ImportedImages, read_manifest
from harness.testing.fakes import prompt_image
from harness.types import GenRequest, WorkUnit

PNG = b"\x89PNG\r\n\x1a\n"


def write(folder: Path, manifest: str, text: str, images=("a.png", "b.jpg")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in images:
        fmt = "jpeg" if name.endswith(".jpg") else "png"
        (folder / name).write_bytes(prompt_image(name, fmt))
    (folder / manifest).write_text(text, encoding="utf-8")
    return folder


def make(folder, manifest="manifest.csv", **opts):
    return ImportedImages(name="mj", label="Midjourney v7", model_id="midjourney-v7",
                          params={"width": 1024, "height": 1024},
                          options={"folder": str(folder), "manifest": manifest, **opts})


def req(pid, sample=0):
    return GenRequest(model="mj", generator="imported", model_id="midjourney-v7", revision=None,
                      weights=None, prompt_id=pid, prompt=f"prompt {pid}", negative_prompt=None,
                      sample=sample, seed=0, width=1024, height=1024)


def units(*pids):
    return [WorkUnit(request=req(p), key=p, prompt=None) for p in pids]


CSV = "prompt_id,sample,file,job_id\np1,0,a.png,mj-123\np1,1,b.jpg,\np2,0,a.png,mj-456\n"


def test_csv_manifest_images_become_png_with_extra_columns(tmp_path):
    g = make(write(tmp_path / "imp", "manifest.csv", CSV))
    g.check_plan(units("p1", "p2"))
    out = g.generate([req("p1"), req("p1", 1), req("p2"), req("p3")])
    assert [r.status for r in out] == ["ok", "ok", "ok", "error"]
    assert out[0].image == prompt_image("a.png") and out[0].info["job_id"] == "mj-123"
    assert out[1].image.startswith(PNG) and "job_id" not in out[1].info  # empty cells dropped
    assert Image.open(__import__("io").BytesIO(out[1].image)).format == "PNG"
    assert out[0].info["manifest_line"] == 2
    assert "no row for prompt id 'p3' sample 0" in out[3].error and "manifest.csv" in out[3].error


def test_jsonl_manifest(tmp_path):
    lines = [{"prompt_id": "p1", "sample": 0, "file": "a.png", "seed": 42}, {},
             {"prompt_id": "p2", "sample": "1", "file": "b.jpg"}]
    text = "\n".join(json.dumps(x) if x else "" for x in lines)
    g = make(write(tmp_path / "imp", "m.jsonl", text), manifest="m.jsonl")
    out = g.generate([req("p1"), req("p2", 1)])
    assert [r.status for r in out] == ["ok", "ok"] and out[0].info["seed"] == 42


@pytest.mark.parametrize("text, message", [
    ("prompt_id,sample,file\np1,0,a.png\np1,0,b.jpg\n",
     r"manifest.csv:3: duplicate row for prompt id 'p1' sample 0 \(first at line 2\)"),
    ("prompt_id,sample,file\np1,0,a.png\np2,0,missing.png\n",
     r"manifest.csv:3: file 'missing.png' not found"),
    ("prompt_id,sample,file\np1,zero,a.png\n", r"manifest.csv:2: sample 'zero' is not a whole number"),
    ("prompt_id,file\np1,a.png\n", r"manifest.csv:1: the header lacks sample"),
    ("prompt_id,sample,file\n,0,a.png\n", r"manifest.csv:2: no 'prompt_id'"),
])
def test_bad_csv_rows_are_named_by_line(tmp_path, text, message):
    folder = write(tmp_path / "imp", "manifest.csv", text)
    with pytest.raises(ConfigError, match=message):
        read_manifest(folder / "manifest.csv")


def test_bad_jsonl_line_is_named(tmp_path):
    folder = write(tmp_path / "imp", "m.jsonl", '{"prompt_id": "p1", "sample": 0, "file": "a.png"}\n{oops\n')
    with pytest.raises(ConfigError, match=r"m.jsonl:2: not a JSON object"):
        read_manifest(folder / "m.jsonl")


def test_unknown_prompt_id_is_named_with_a_suggestion(tmp_path):
    folder = write(tmp_path / "imp", "manifest.csv", "prompt_id,sample,file\nshape-circle,0,a.png\n"
                   "shape-cirle,0,b.jpg\n")
    g = make(folder)
    with pytest.raises(ConfigError, match=r"manifest.csv:3: prompt id 'shape-cirle' is not in the "
                                          r"suite. Did you mean 'shape-circle'.*unknown_prompts=ignore"):
        g.check_plan(units("shape-circle", "shape-square"))
    make(folder, unknown_prompts="ignore").check_plan(units("shape-circle"))


def test_missing_manifest_says_what_to_do(tmp_path):
    g = make(tmp_path / "nowhere")  # constructing reads nothing
    with pytest.raises(ConfigError, match="manifest .* not found. Put a manifest.csv"):
        g.generate([req("p1")])


def test_end_to_end_generate_and_report_from_a_folder(tmp_path, monkeypatch, model_cache):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    write(tmp_path / "imports", "manifest.csv",
          "prompt_id,sample,file\nshape-circle,0,a.png\nshape-square,0,b.jpg\n")
    overrides = ["models=[imported]", "suite=toy-shapes",
                 "suite.limit=2", "metrics=[colorfulness]", "progress=false",
                 f"store.root={tmp_path / 'store'}", f"report.dir={tmp_path / 'reports'}",
                 "run.name=imp"]
    out = cli.dispatch(cli.compose(overrides))
    counts = out["store"].unit_counts("imp")
    assert counts["imported"].ok == 2
    records = out["store"].records("imp")
    assert {r.info["source_file"].rsplit("/", 1)[-1] for r in records} == {"a.png", "b.jpg"}
    # A third prompt is pending, so the manifest is read and checked before anything is stored.
    bad = ["models.imported.options.manifest=bad.csv", "suite=toy-shapes", "suite.limit=3", *overrides[3:-1],
           "run.name=imp2"]
    (tmp_path / "imports" / "bad.csv").write_text("prompt_id,sample,file\nshape-circle,0,a.png\n"
                                                  "no-such-prompt,0,a.png\n")
    with pytest.raises(cli.UserError, match="bad.csv:3: prompt id 'no-such-prompt'"):
        cli.dispatch(cli.compose(["models=[imported]", *bad]))
