"""PickScore and HPSv2.1 on tiny random models of their real architectures (a transformers
CLIPModel; an open_clip CLIP saved the way HPS checkpoints are: ``{"state_dict": ...}`` with
DDP's ``module.`` prefix), against a hand computation from each model's own towers."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from harness.metrics.clip_score import ModelUnavailable, weights_sha256  # noqa: E402
from harness.metrics.preference_scorers import HPSv2, PickScore, hps_state_dict  # noqa: E402

TINY = "harness-tiny-hps-test"
PROMPTS = ["a red square", "a photo of a cat", "green text on a blue sign"]


def _images(n=3):
    rng = np.random.default_rng(4)
    return [Image.fromarray(rng.integers(0, 256, (36 + 4 * i, 40, 3), dtype=np.uint8)) for i in range(n)]


def _items(prompts=PROMPTS):
    return [ScoreInput(f"k{i}", "m", im, {"text": p}) for i, (im, p) in enumerate(zip(_images(), prompts,
                                                                                      strict=True))]


def _cos(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _clip_tokenizer_files(folder) -> None:
    """vocab.json + merges.txt from open_clip's bundled BPE (CLIP's real vocabulary)."""
    import gzip

    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as f:
        merges = f.read().decode("utf-8").split("\n")[1: 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


@pytest.fixture(scope="module")
def pick_folder(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    d = tmp_path_factory.mktemp("pick")
    _clip_tokenizer_files(d)
    tok = CLIPTokenizer.from_pretrained(str(d))
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                     crop_size={"height": 32, "width": 32}),
                  tokenizer=tok).save_pretrained(str(d))
    torch.manual_seed(0)
    common = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    cfg = CLIPConfig(text_config={**common, "vocab_size": 49408, "max_position_embeddings": 77},
                     vision_config={**common, "image_size": 32, "patch_size": 8}, projection_dim=16,
                     logit_scale_init_value=4.0)
    CLIPModel(cfg).save_pretrained(str(d))
    return d


def test_pickscore_is_logit_scale_times_cosine(pick_folder):
    from transformers import CLIPModel, CLIPProcessor

    m = PickScore(name="pickscore", settings={"checkpoint": str(pick_folder), "device": "cpu",
                                              "batch_size": 2})
    out = m.score_images(_items())
    model = CLIPModel.from_pretrained(pick_folder).eval()
    proc = CLIPProcessor.from_pretrained(pick_folder)
    with torch.no_grad():
        img = model.vision_model(pixel_values=proc(images=_images(), return_tensors="pt").pixel_values)
        img = model.visual_projection(img.pooler_output)
        enc = proc(text=PROMPTS, padding=True, return_tensors="pt")
        txt = model.text_projection(model.text_model(**enc).pooler_output)
    scale = float(np.exp(4.0))
    want = scale * _cos(img, txt)
    assert [v for v, _ in out] == pytest.approx(list(want), abs=1e-4)
    assert out[0][1]["scale"] == pytest.approx(scale, rel=1e-6)
    d = m.describe()
    assert d["weights"] == "sha256:" + weights_sha256(pick_folder)
    assert "prompt by prompt" in d["how_to_read"]["lines"][""]


@pytest.fixture(scope="module")
def hps_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("hps")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / f"{TINY}.json")
    torch.manual_seed(1)
    model = open_clip.create_model(TINY)
    path = d / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path


def test_hps_is_cosine_of_the_checkpoint_towers(hps_file):
    m = HPSv2(name="hpsv2", settings={"model": TINY, "checkpoint": str(hps_file), "device": "cpu",
                                       "batch_size": 2})
    out = m.score_images(_items())
    model, _, pre = open_clip.create_model_and_transforms(TINY)
    model.load_state_dict(hps_state_dict(hps_file))
    model.eval()
    with torch.no_grad():
        img = model.encode_image(torch.stack([pre(im) for im in _images()]))
        txt = model.encode_text(open_clip.get_tokenizer(TINY)(PROMPTS))
    assert [v for v, _ in out] == pytest.approx(list(_cos(img, txt)), abs=1e-5)
    assert "same prompt" in m.describe()["how_to_read"]["lines"][""]
    assert m.describe()["weights"] == "sha256:" + weights_sha256(hps_file)


def test_hps_checkpoint_of_another_architecture_names_the_mismatch(hps_file, tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": {"module.visual.conv1.weight": torch.zeros(1)}}, bad)
    m = HPSv2(name="hpsv2", settings={"model": TINY, "checkpoint": str(bad), "device": "cpu"})
    with pytest.raises(ConfigError, match="does not fit open_clip"):
        m.score_images(_items())


@pytest.mark.parametrize("cls, settings, needle", [
    (PickScore, {}, "yuvalkirstain/PickScore_v1"),
    (HPSv2, {}, "xswu/HPSv2/HPS_v2.1_compressed.pt"),
])
def test_offline_without_weights_fails_fast_with_the_setting(cls, settings, needle, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    m = cls(name="pref", settings=settings)
    t = time.perf_counter()
    with pytest.raises(ModelUnavailable) as e:
        m.score_images(_items())
    assert time.perf_counter() - t < 1.0
    assert needle in str(e.value) and "metrics.pref.settings." in str(e.value)
