"""harness zoo train: every model trains, saves a standard folder, resumes, and loads through the
same generator code as hub models."""

import json

import pytest

from harness.zoo import train as T


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """All four models trained for a few steps into a temporary zoo folder."""
    import os

    root = tmp_path_factory.mktemp("zoo")
    os.environ["HARNESS_ZOO_CACHE"] = str(tmp_path_factory.mktemp("zoo-cache"))
    for name in ("toy-vae", "toy-clip", "toy-unet", "toy-dit"):
        T.train(name, steps=2, out=root, threads=2, evaluate=False, data=128, log=lambda *_: None)
    return root


def test_each_model_is_a_standard_folder_with_a_card(zoo):
    for name in ("toy-vae", "toy-clip", "toy-unet", "toy-dit"):
        prog = json.loads((zoo / name / "training.json").read_text())
        assert prog["step"] == 2 and prog["sessions"][0]["steps"] == [0, 2]
        card = (zoo / name / "README.md").read_text()
        assert "## Training" in card and "harness zoo train" in card
    assert (zoo / "toy-unet" / "model_index.json").exists()
    # Shared parts are stored once: relative links to the VAE and the toy CLIP's text tower.
    assert (zoo / "toy-unet" / "vae").is_symlink() and (zoo / "toy-dit" / "vae").is_symlink()
    assert (zoo / "toy-dit" / "text_encoder_2").resolve() == (zoo / "toy-dit" / "text_encoder").resolve()
    vae = json.loads((zoo / "toy-vae" / "config.json").read_text())
    assert vae["shift_factor"] == 0.0 and vae["scaling_factor"] != 1.0


def test_training_resumes_from_saved_weights_and_optimizer(zoo):
    T.train("toy-dit", steps=3, out=zoo, threads=2, evaluate=False, data=128, log=lambda *_: None)
    prog = json.loads((zoo / "toy-dit" / "training.json").read_text())
    assert prog["step"] == 3
    assert [s["steps"] for s in prog["sessions"]] == [[0, 2], [2, 3]]


@pytest.mark.parametrize("name,family", [("toy-unet", "sd15"), ("toy-dit", "sd3")])
def test_trained_folders_load_through_the_diffusers_generator(zoo, name, family):
    from harness.generators.diffusers_local import DiffusersGenerator
    from harness.types import GenRequest

    extra = {"max_sequence_length": 4} if family == "sd3" else {}
    gen = DiffusersGenerator(name=name, label=name, model_id=str(zoo / name), family=family,
                             params={"width": 64, "height": 64, "steps": 2, "guidance": 3.0, "extra": extra},
                             options={"device": "cpu"})
    reqs = [GenRequest(model=name, generator="diffusers", model_id=str(zoo / name), revision=None,
                       weights=None, prompt_id=f"p{i}", prompt="a red circle in the top left",
                       negative_prompt=None, sample=i, seed=i, width=64, height=64, steps=2, guidance=3.0,
                       params=extra) for i in range(2)]
    gen.load()
    try:
        res = gen.generate(reqs)
    finally:
        gen.close()
    assert [r.status for r in res] == ["ok", "ok"]
    import io

    from PIL import Image

    assert all(Image.open(io.BytesIO(r.image)).size == (64, 64) for r in res)
    assert gen.fingerprint()  # the folder (through its links) has a content hash


def test_unknown_model_and_missing_prerequisite_are_clear(tmp_path):
    with pytest.raises(T.ZooError, match="Did you mean 'toy-unet'"):
        T.train("toy-unte", out=tmp_path)
    with pytest.raises(T.ZooError, match="needs toy-vae first: harness zoo train toy-vae"):
        T.train("toy-unet", out=tmp_path)
