"""CLIP-score on tiny random CLIPs (one per backend), against a hand computation from each
model's own towers: normalise, cosine, x100, clamp at 0."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from harness.metrics.clip_score import ClipScore, ModelUnavailable, weights_sha256  # noqa: E402

TINY = "harness-tiny-clip-test"
PROMPTS = ["a red square on a white table", "a photo of a cat", "green text on a blue sign",
           "an astronaut riding a horse", "a bowl of fruit"]
LONG = " ".join(["word"] * 200)


def _images(n: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(40 + 3 * i, 48, 3), dtype=np.uint8))
            for i in range(n)]


def _hand(img_emb, txt_emb) -> tuple[list[float], list[float]]:
    a = np.asarray(img_emb, dtype=np.float64)
    b = np.asarray(txt_emb, dtype=np.float64)
    a /= np.linalg.norm(a, axis=-1, keepdims=True)
    b /= np.linalg.norm(b, axis=-1, keepdims=True)
    cos = (a * b).sum(-1)
    return [100 * max(c, 0.0) for c in cos], list(cos)


def _items(images, prompts):
    return [ScoreInput(f"k{i}", "m", im, {"text": p})
            for i, (im, p) in enumerate(zip(images, prompts, strict=True))]


# -- open_clip ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def oc_checkpoint(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("oc")
    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (d / f"{TINY}.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(d / f"{TINY}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    ckpt = d / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return ckpt


def _oc_metric(ckpt, **kw) -> ClipScore:
    return ClipScore(name="clip_score", settings={"backend": "open_clip", "model": TINY,
                                                  "pretrained": None, "checkpoint": str(ckpt),
                                                  "device": "cpu", "batch_size": 2, **kw})


def test_open_clip_matches_hand_computation(oc_checkpoint):
    images = _images()
    m = _oc_metric(oc_checkpoint)
    out = m.score_images(_items(images, PROMPTS))  # 5 images in batches of 2 (last one short)

    model, _, preprocess = open_clip.create_model_and_transforms(TINY, pretrained=str(oc_checkpoint))
    model.eval()
    tok = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        img = model.visual(torch.stack([preprocess(im) for im in images]))
        txt = model.encode_text(tok(PROMPTS))
    want, cos = _hand(img, txt)
    assert [v for v, _ in out] == pytest.approx(want, abs=1e-4)
    assert [e["cos"] for _, e in out] == pytest.approx(cos, abs=1e-6)
    assert all(e["truncated"] is False for _, e in out)
    assert all(v >= 0 for v, _ in out)
    assert min(cos) < 0 < max(cos)  # both the clamp and the scale are exercised
    # Decoding in this thread, or on 3 threads ahead of the model: the same numbers, same order.
    for workers in (0, 3):
        again = _oc_metric(oc_checkpoint, workers=workers).score_images(_items(images, PROMPTS))
        assert [e["cos"] for _, e in again] == pytest.approx(cos, abs=1e-6)


def test_open_clip_describe_stores_what_changes_the_number(oc_checkpoint, tmp_path):
    m = _oc_metric(oc_checkpoint)
    d = m.describe()
    assert d["backend"] == "open_clip" and d["model"] == TINY and d["scale"] == 100.0
    assert d["weights"] == "sha256:" + weights_sha256(oc_checkpoint)
    assert "device" not in d and "batch_size" not in d
    # Other weights in a file with the same name: another weights id, another settings hash.
    sd = torch.load(oc_checkpoint)
    sd["logit_scale"] = sd["logit_scale"] + 1
    other = tmp_path / "tiny.pt"
    torch.save(sd, other)
    m2 = _oc_metric(other)
    assert m2.describe()["weights"] != d["weights"] and m2.settings_hash() != m.settings_hash()
    assert _oc_metric(oc_checkpoint, device="cpu", batch_size=7).settings_hash() == m.settings_hash()
    assert _oc_metric(oc_checkpoint, scale=2.5).settings_hash() != m.settings_hash()


def test_scale_is_applied_and_long_prompts_are_truncated_not_errors(oc_checkpoint):
    images = _images(2)
    a = _oc_metric(oc_checkpoint).score_images(_items(images, [LONG, "a cat"]))
    b = _oc_metric(oc_checkpoint, scale=2.5).score_images(_items(images, [LONG, "a cat"]))
    assert a[0][1]["truncated"] is True and a[1][1]["truncated"] is False
    for (va, ea), (vb, _) in zip(a, b, strict=True):
        assert vb == pytest.approx(2.5 * max(ea["cos"], 0)) and va == pytest.approx(100 * max(ea["cos"], 0))


def test_bad_inputs_are_recorded_skips_and_other_images_still_score(oc_checkpoint):
    rgb = _images(1)[0]
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    corrupt = Image.open(io.BytesIO(buf.getvalue()[:80]))
    rgba = rgb.convert("RGBA")
    grey = rgb.convert("L")
    out = _oc_metric(oc_checkpoint).score_images([
        ScoreInput("a", "m", rgb, {"text": "a cat"}),
        ScoreInput("b", "m", corrupt, {"text": "a cat"}),
        ScoreInput("c", "m", rgb, {"text": "   "}),
        ScoreInput("d", "m", rgba, {"text": "a cat"}),
        ScoreInput("e", "m", grey, {"text": "a cat"}),
    ])
    assert out[1][0] is None and out[1][1]["skipped"].startswith("unreadable image")
    assert out[2] == (None, {"skipped": "empty prompt"})
    assert out[3][0] == pytest.approx(out[0][0], abs=1e-5)  # opaque RGBA: same pixels
    ref = _oc_metric(oc_checkpoint).score_images(
        [ScoreInput("x", "m", grey.convert("RGB"), {"text": "a cat"})])
    assert out[4][0] == pytest.approx(ref[0][0], abs=1e-5)


def test_folder_weights_hash_counts_weight_files_only(tmp_path, oc_checkpoint):
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"abc")
    (tmp_path / "config.json").write_text("{}")
    h = weights_sha256(tmp_path)
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert weights_sha256(tmp_path) == h
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"abd")
    assert weights_sha256(tmp_path) != h


# -- transformers ---------------------------------------------------------------------------

def _clip_tokenizer_files(folder: Path) -> None:
    """vocab.json + merges.txt from open_clip's bundled BPE, as open_clip's SimpleTokenizer
    builds its vocabulary (so the token ids agree with it)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as f:
        merges = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

    d = tmp_path_factory.mktemp("hf")
    _clip_tokenizer_files(d)
    CLIPTokenizer.from_pretrained(str(d)).save_pretrained(str(d))
    CLIPImageProcessor(size={"shortest_edge": 32},
                       crop_size={"height": 32, "width": 32}).save_pretrained(str(d))
    torch.manual_seed(0)
    common = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    cfg = CLIPConfig(text_config={**common, "vocab_size": 49408, "max_position_embeddings": 77},
                     vision_config={**common, "image_size": 32, "patch_size": 8}, projection_dim=16)
    CLIPModel(cfg).save_pretrained(str(d))
    return d


def test_transformers_matches_hand_computation(hf_folder):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    images = _images()
    prompts = PROMPTS[:4] + [LONG]
    m = ClipScore(name="clip_score", settings={"backend": "transformers", "model": "tiny",
                                               "checkpoint": str(hf_folder), "device": "cpu",
                                               "batch_size": 3})
    out = m.score_images(_items(images, prompts))
    assert m.describe()["weights"] == "sha256:" + weights_sha256(hf_folder)

    model = CLIPModel.from_pretrained(str(hf_folder)).eval()
    tok = CLIPTokenizer.from_pretrained(str(hf_folder))
    proc = CLIPImageProcessor.from_pretrained(str(hf_folder))
    img_emb, txt_emb = [], []
    with torch.no_grad():
        for im, p in zip(images, prompts, strict=True):  # one at a time, no padding
            pix = proc(images=im, return_tensors="pt")["pixel_values"]
            img_emb.append(model.visual_projection(model.vision_model(pixel_values=pix).pooler_output)[0])
            ids = tok(p, truncation=True, max_length=77, return_tensors="pt")
            txt_emb.append(model.text_projection(model.text_model(**ids).pooler_output)[0])
    want, cos = _hand(torch.stack(img_emb), torch.stack(txt_emb))
    assert [v for v, _ in out] == pytest.approx(want, abs=1e-4)
    assert [e["cos"] for _, e in out] == pytest.approx(cos, abs=1e-5)
    assert [e["truncated"] for _, e in out] == [False] * 4 + [True]
    assert min(cos) < 0 < max(cos)


def test_tokenizer_ids_agree_with_open_clip(hf_folder):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(hf_folder))
    oc = open_clip.get_tokenizer("ViT-B-32")
    text = "A neon sign spelling OPEN, 24/7!"
    ids = tok(text)["input_ids"]
    assert ids == oc([text])[0][: len(ids)].tolist()


# -- construction and the default model offline ----------------------------------------------

def test_construction_checks_settings_but_loads_nothing(tmp_path):
    m = ClipScore(name="clip_score")
    assert m._m is None and m.describe()["weights"] == "open_clip:ViT-L-14/openai"
    with pytest.raises(ConfigError, match="unknown backend 'openclip'.*'open_clip'"):
        ClipScore(name="c", settings={"backend": "openclip"})
    with pytest.raises(ConfigError, match="no such file"):
        ClipScore(name="c", settings={"checkpoint": str(tmp_path / "missing.pt")})
    with pytest.raises(ConfigError, match="scale"):
        ClipScore(name="c", settings={"scale": 0})


@pytest.mark.parametrize("settings, name", [
    ({}, "ViT-L-14"),
    ({"backend": "transformers", "model": "openai/clip-vit-large-patch14"}, "openai/clip-vit-large-patch14"),
])
def test_default_model_offline_fails_when_scoring_with_the_fix(settings, name, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no 40 s of retries
    m = ClipScore(name="clip_score", settings=settings)
    with pytest.raises(ModelUnavailable) as e:
        m.score_images([ScoreInput("k", "m", _images(1)[0], {"text": "a cat"})])
    msg = str(e.value)
    assert name in msg and "hub" in msg and "metrics.clip_score.settings.checkpoint=" in msg


def test_moving_the_checkpoint_keeps_the_settings_hash(oc_checkpoint, tmp_path):
    import shutil

    moved = tmp_path / "elsewhere" / oc_checkpoint.name
    moved.parent.mkdir()
    shutil.copy(oc_checkpoint, moved)
    a, b = _oc_metric(oc_checkpoint), _oc_metric(moved)
    assert a.describe()["checkpoint"] == oc_checkpoint.name and a.describe()["pretrained"] is None
    assert a.settings_hash() == b.settings_hash()
