"""Tiny random-weight pipelines: deterministic, small, atomic, reloadable offline."""

from pathlib import Path

import pytest

from harness.generators.diffusers_loading import folder_fingerprint
from harness.generators.tiny import (
    BASE_ARCHS,
    IP_ADAPTER_WEIGHTS,
    RECIPE_FILE,
    build_tiny_controlnet,
    build_tiny_ip_adapter,
    build_tiny_lora,
    build_tiny_pipeline,
    ensure_tiny_pipeline,
    tiny_tokenizer,
)

ARCHS = BASE_ARCHS  # today's families and the editing pipelines: test_model_families.py
PIPELINES = {"sd15": "StableDiffusionPipeline", "sd3": "StableDiffusion3Pipeline",
             "sdxl": "StableDiffusionXLPipeline", "flux": "FluxPipeline"}
UNET = ("sd15", "sdxl")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {arch: build_tiny_pipeline(arch, root / arch) for arch in ARCHS}


def test_tokenizer_is_byte_level_and_round_trips(tmp_path):
    tok = tiny_tokenizer(tmp_path / "tok")
    assert len(tok) == 514 and tok.model_max_length == 77
    ids = tok("a red circle").input_ids
    assert tok.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "a</w>", "r", "e", "d</w>", "c", "i", "r", "c", "l", "e</w>",
        "<|endoftext|>",
    ]
    # ids: bytes 0-255, word-final bytes 256-511, then start and end of text
    assert ids == [512, 256 + ord("a"), ord("r"), ord("e"), 256 + ord("d"), ord("c"), ord("i"),
                   ord("r"), ord("c"), ord("l"), 256 + ord("e"), 513]
    assert tok.decode(ids, skip_special_tokens=True) == "a red circle"
    # Any text is bytes: nothing falls out as unknown (unknown is <|endoftext|>, 513).
    ids = tok("Café über ünïcode").input_ids
    assert 513 not in ids[1:-1]
    assert tok.decode(ids, skip_special_tokens=True) == "café über ünïcode"
    padded = tok(["x" * 200], padding="max_length", max_length=77, truncation=True).input_ids[0]
    assert len(padded) == 77 and padded[-1] == 513


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_files_other_seed_differs(arch, built, tmp_path):
    again = build_tiny_pipeline(arch, tmp_path / "again")
    assert folder_fingerprint(again) == folder_fingerprint(built[arch])
    files = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(built[arch]) for p in built[arch].rglob("*") if p.is_file())
    for rel in files:
        assert (again / rel).read_bytes() == (built[arch] / rel).read_bytes(), rel
    other = build_tiny_pipeline(arch, tmp_path / "other", seed=1)
    assert folder_fingerprint(other) != folder_fingerprint(built[arch])


@pytest.mark.parametrize("arch", ARCHS)
def test_folder_is_small_and_reloads_offline(arch, built):
    from diffusers import DiffusionPipeline

    folder = built[arch]
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size < 20e6
    assert list((folder / ("unet" if arch in UNET else "transformer")).glob("*.safetensors"))
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]
    # diffusers only loads a folder saved without T5 when told the missing parts are None.
    extra = {"text_encoder_3": None, "tokenizer_3": None} if arch == "sd3" else {}
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True, **extra)
    assert type(pipe).__name__ == PIPELINES[arch]
    assert pipe.tokenizer("a red circle").input_ids[:3] == [512, 256 + ord("a"), ord("r")]
    n_params = sum(p.numel() for p in (pipe.unet if arch in UNET else pipe.transformer).parameters())
    assert 5e4 < n_params < 3e6
    if arch == "flux":  # T5 tokenizer built offline: character pieces, </s> closes, <pad> pads
        ids = pipe.tokenizer_2("a red", padding="max_length", max_length=8).input_ids
        assert type(pipe.tokenizer_2).__name__.startswith("T5Tokenizer")  # one class in tf 5
        assert ids[-3:] == [0, 0, 0] and ids[-4] == pipe.tokenizer_2.eos_token_id
        assert pipe.tokenizer_2.decode(ids, skip_special_tokens=True) == "a red"


@pytest.mark.parametrize("arch", ARCHS)
def test_every_family_makes_an_image(arch, built):
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    extra = {"text_encoder_3": None, "tokenizer_3": None} if arch == "sd3" else {}
    pipe = DiffusionPipeline.from_pretrained(built[arch], local_files_only=True, **extra)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a red circle", num_inference_steps=2, height=64, width=64, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


def test_adapters_build_once_and_load(built, tmp_path):
    from diffusers import ControlNetModel, DiffusionPipeline

    base = built["sd15"]
    cn = build_tiny_controlnet(base, tmp_path / "cn")
    lora = build_tiny_lora(base, tmp_path / "lora")
    ip = build_tiny_ip_adapter(base, tmp_path / "ip")
    stamp = (cn / "config.json").stat().st_mtime_ns
    assert build_tiny_controlnet(base, tmp_path / "cn") == cn  # already built: kept
    assert (cn / "config.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="built with"):
        build_tiny_controlnet(base, cn, seed=1)
    model = ControlNetModel.from_pretrained(cn, local_files_only=True)
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "controlnet_down" in n)
    pipe = DiffusionPipeline.from_pretrained(base, local_files_only=True)
    pipe.load_lora_weights(str(lora), weight_name="pytorch_lora_weights.safetensors",
                           adapter_name="t")
    assert "t" in pipe.get_list_adapters()["unet"]
    pipe.load_ip_adapter(str(ip), subfolder="", weight_name=IP_ADAPTER_WEIGHTS)
    assert pipe.image_encoder is not None and pipe.unet.encoder_hid_proj is not None


def test_killed_build_leaves_nothing(tmp_path, monkeypatch):
    import diffusers

    def broken_save(self, save_directory, **kwargs):
        (Path(save_directory) / "unet").mkdir(parents=True)
        (Path(save_directory) / "unet" / "config.json").write_text("{")
        raise KeyboardInterrupt  # a Ctrl-C halfway through writing

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "save_pretrained", broken_save)
    with pytest.raises(KeyboardInterrupt):
        build_tiny_pipeline("sd15", tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_ensure_builds_once_and_checks_the_recipe(tmp_path):
    folder = tmp_path / "m"
    ensure_tiny_pipeline("sd3", folder, seed=3)
    assert (folder / "model_index.json").is_file() and (folder / RECIPE_FILE).is_file()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    assert ensure_tiny_pipeline("sd3", folder, seed=3) == folder.absolute()
    assert (folder / "model_index.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="built with .*'seed': 3.*Delete the folder"):
        ensure_tiny_pipeline("sd3", folder, seed=4)
    with pytest.raises(FileExistsError):
        build_tiny_pipeline("sd3", folder)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        ensure_tiny_pipeline("sd15", junk)
    assert (junk / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("arch, size", [("kandinsky", 64), ("sd15", 60)])
def test_bad_recipe_is_refused(arch, size, tmp_path):
    with pytest.raises(ValueError, match="kandinsky|multiple of 8"):
        build_tiny_pipeline(arch, tmp_path / "m", image_size=size)
