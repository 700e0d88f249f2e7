"""Qwen-Image-Edit through DiffusersGenerator on its tiny random pipeline (the real
QwenImageEditPipeline: the source goes to the Qwen2.5-VL text encoder and, resized to about
1 MP, to the VAE): edits depend on the source, repeat bit for bit, and run with the config's
true classifier-free guidance."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.generators import controls as ctl
from harness.generators.diffusers_local import DiffusersGenerator
from harness.types import GenRequest, sha256_hex

SUITE_DIR = Path(__file__).resolve().parents[2] / "harness" / "data" / "suites"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("qie-src")
    out = []
    for name in ("cat", "coffee"):
        path = d / f"{name}.png"
        Image.open(SUITE_DIR / "controls" / f"{name}.png").convert("RGB").resize((64, 64)).save(path)
        sha = sha256_hex(path.read_bytes())
        ctl.register_inputs([(sha, str(path))])
        out.append(sha)
    return out


def _req(seed, sha):
    # The qwen_image_edit config's guidance: true CFG with a one-space negative prompt.
    return GenRequest(model="m", generator="diffusers", model_id="m", revision=None, weights=None,
                      prompt_id=f"p{seed}", prompt="make the cat red", negative_prompt=" ", sample=0,
                      seed=seed, width=64, height=64, steps=2, guidance=None,
                      params={"true_cfg_scale": 4.0},
                      controls=({"kind": "edit_image", "sha256": sha, "params": {}},))


@pytest.mark.slow  # ~15 s of CPU: the VAE still encodes each source at about 1 MP
def test_qwen_image_edit_edits_depend_on_the_source(sources, tmp_path):
    g = DiffusersGenerator(
        name="qie", label="t", model_id="harness-untrained/tiny-qwen_image_edit", batch_size=4,
        untrained=True, options={"build": {"arch": "qwen_image_edit", "seed": 0, "image_size": 64},
                                 "cache_dir": str(tmp_path), "device": "cpu"})
    cat, coffee = sources
    res = g.generate([_req(0, cat), _req(0, coffee), _req(0, cat)])
    g.close()
    assert [r.status for r in res] == ["ok"] * 3, res[0].error
    a, b, again = (_pixels(r.image) for r in res)
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, again)  # same source, seed and instruction: same bytes
    assert np.abs(a - b).mean() > 0.01  # another source, another edit
    assert res[0].info["pipeline"] == "QwenImageEditPipeline"
