"""ImageReward on a tiny random checkpoint written with the original key names of
``ImageReward.pt`` (BLIP's timm-style ViT, med.py's BERT with cross-attention, the ``mlp.layers``
head), scored through the metric and compared with an independent forward written here in plain
torch from the raw tensors, following the published code (vit.py, med.py, ImageReward.py), with
the published z-score, 35-token truncation and preprocessing re-derived with PIL and numpy."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
F = torch.nn.functional

from harness.metrics.clip_score import ModelUnavailable, weights_sha256  # noqa: E402
from harness.metrics.image_reward import REWARD_MEAN, REWARD_STD, ImageReward, map_key  # noqa: E402

WORDS = ["a", "red", "square", "photo", "of", "cat", "green", "text", "on", "blue", "sign", "very", "long"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LONG = " ".join(["a very long photo of a cat"] * 8)  # 56 words: cut to 35 tokens
PROMPTS = ["a red square", "a photo of a cat", LONG]
V_WIDTH, V_DEPTH, V_HEADS, PATCH, SIZE = 32, 2, 4, 8, 32
T_WIDTH, T_DEPTH, T_HEADS, T_INTER, MAX_POS = 24, 2, 3, 40, 40
HEAD_DIMS = (T_WIDTH, 1024, 128, 64, 16, 1)  # the published head, on a 24-wide text encoder
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def _images():
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40 + 6 * i, 52 - 5 * i, 3), dtype=np.uint8))
            for i in range(3)]


def _items(prompts=PROMPTS):
    return [ScoreInput(f"k{i}", "m", im, {"text": p}) for i, (im, p) in enumerate(zip(_images(), prompts,
                                                                                      strict=True))]


def _vocab():
    return SPECIALS + WORDS  # [DEC] and [ENC] are appended by the loader (as BLIP's init_tokenizer)


def _original_state_dict(seed=3):
    """Random tensors under ImageReward.pt's own names and shapes (BLIP_Pretrain + MLP)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    def ln(prefix, n):
        return {f"{prefix}.weight": 1 + r(n, scale=0.1), f"{prefix}.bias": r(n, scale=0.1)}

    def lin(prefix, n_in, n_out, scale=None):
        return {f"{prefix}.weight": r(n_out, n_in, scale=scale or n_in ** -0.5), f"{prefix}.bias": r(n_out)}

    sd = {}
    v = "blip.visual_encoder"
    sd[f"{v}.cls_token"] = r(1, 1, V_WIDTH)
    sd[f"{v}.pos_embed"] = r(1, (SIZE // PATCH) ** 2 + 1, V_WIDTH)
    sd[f"{v}.patch_embed.proj.weight"] = r(V_WIDTH, 3, PATCH, PATCH, scale=0.05)
    sd[f"{v}.patch_embed.proj.bias"] = r(V_WIDTH)
    for i in range(V_DEPTH):
        b = f"{v}.blocks.{i}"
        sd |= ln(f"{b}.norm1", V_WIDTH) | lin(f"{b}.attn.qkv", V_WIDTH, 3 * V_WIDTH)
        sd |= lin(f"{b}.attn.proj", V_WIDTH, V_WIDTH) | ln(f"{b}.norm2", V_WIDTH)
        sd |= lin(f"{b}.mlp.fc1", V_WIDTH, 2 * V_WIDTH) | lin(f"{b}.mlp.fc2", 2 * V_WIDTH, V_WIDTH)
    sd |= ln(f"{v}.norm", V_WIDTH)
    t = "blip.text_encoder"
    vocab = len(_vocab()) + 2
    sd[f"{t}.embeddings.position_ids"] = torch.arange(MAX_POS).expand((1, -1))
    sd[f"{t}.embeddings.word_embeddings.weight"] = r(vocab, T_WIDTH, scale=1.0)
    sd[f"{t}.embeddings.position_embeddings.weight"] = r(MAX_POS, T_WIDTH, scale=0.5)
    sd |= ln(f"{t}.embeddings.LayerNorm", T_WIDTH)
    for i in range(T_DEPTH):
        b = f"{t}.encoder.layer.{i}"
        for part, kv_in in (("attention", T_WIDTH), ("crossattention", V_WIDTH)):
            sd |= lin(f"{b}.{part}.self.query", T_WIDTH, T_WIDTH)
            sd |= lin(f"{b}.{part}.self.key", kv_in, T_WIDTH) | lin(f"{b}.{part}.self.value", kv_in, T_WIDTH)
            sd |= lin(f"{b}.{part}.output.dense", T_WIDTH, T_WIDTH)
            sd |= ln(f"{b}.{part}.output.LayerNorm", T_WIDTH)
        sd |= lin(f"{b}.intermediate.dense", T_WIDTH, T_INTER) | lin(f"{b}.output.dense", T_INTER, T_WIDTH)
        sd |= ln(f"{b}.output.LayerNorm", T_WIDTH)
    sd |= lin("blip.vision_proj", V_WIDTH, 16) | lin("blip.text_proj", T_WIDTH, 16)  # unused by the score
    for j, layer in enumerate((0, 2, 4, 6, 7)):
        sd |= lin(f"mlp.layers.{layer}", HEAD_DIMS[j], HEAD_DIMS[j + 1], scale=1.5 * HEAD_DIMS[j] ** -0.5)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("imagereward")
    sd = _original_state_dict()
    torch.save(sd, d / "ImageReward.pt")
    med = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "hidden_size": T_WIDTH, "initializer_range": 0.02,
           "intermediate_size": T_INTER, "layer_norm_eps": 1e-12, "max_position_embeddings": MAX_POS,
           "model_type": "bert", "num_attention_heads": T_HEADS, "num_hidden_layers": T_DEPTH,
           "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": len(_vocab()) + 2, "encoder_width": 768,
           "add_cross_attention": True}
    (d / "med_config.json").write_text(json.dumps(med))
    tok = d / "tokenizer"
    tok.mkdir()
    (tok / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    (tok / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                           "do_lower_case": True}))
    return {"pt": d / "ImageReward.pt", "med": d / "med_config.json", "tok": tok, "sd": sd}


# ---- the independent forward (published code, written out in torch functional ops) ----

def _preprocess(im: Image.Image, size: int) -> torch.Tensor:
    """Resize(size, bicubic) of the short side, CenterCrop(size), ToTensor, Normalize."""
    w, h = im.size
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    im = im.convert("RGB").resize((nw, nh), Image.BICUBIC)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    a = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float64) / 255.0
    return torch.from_numpy(((a - MEAN) / STD).transpose(2, 0, 1)).float()


def _tokens(prompt: str, n: int = 35):
    vocab = {t: i for i, t in enumerate(_vocab())}
    ids = [vocab["[CLS]"], *[vocab.get(w, vocab["[UNK]"]) for w in prompt.lower().split()]][: n - 1]
    ids.append(vocab["[SEP]"])
    mask = [1] * len(ids) + [0] * (n - len(ids))
    return torch.tensor(ids + [0] * (n - len(ids))), torch.tensor(mask)


def _mha(q_in, kv_in, sd, p, heads, mask_add=None):
    q = F.linear(q_in, sd[f"{p}.query.weight"], sd[f"{p}.query.bias"])
    k = F.linear(kv_in, sd[f"{p}.key.weight"], sd[f"{p}.key.bias"])
    v = F.linear(kv_in, sd[f"{p}.value.weight"], sd[f"{p}.value.bias"])

    def split(x):
        return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)

    q, k, v = split(q), split(k), split(v)
    att = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if mask_add is not None:
        att = att + mask_add
    return (att.softmax(-1) @ v).transpose(1, 2).reshape(q_in.shape[0], q_in.shape[1], -1)


def _reference(sd, images, prompts) -> list[float]:
    v, t = "blip.visual_encoder", "blip.text_encoder"
    x = torch.stack([_preprocess(im, SIZE) for im in images])
    x = F.conv2d(x, sd[f"{v}.patch_embed.proj.weight"], sd[f"{v}.patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[f"{v}.cls_token"].expand(x.shape[0], -1, -1), x], 1) + sd[f"{v}.pos_embed"]
    for i in range(V_DEPTH):
        b = f"{v}.blocks.{i}"
        h = F.layer_norm(x, (V_WIDTH,), sd[f"{b}.norm1.weight"], sd[f"{b}.norm1.bias"], 1e-6)
        qkv = F.linear(h, sd[f"{b}.attn.qkv.weight"], sd[f"{b}.attn.qkv.bias"])
        qkv = qkv.view(x.shape[0], x.shape[1], 3, V_HEADS, -1).permute(2, 0, 3, 1, 4)
        att = (qkv[0] @ qkv[1].transpose(-1, -2) * (V_WIDTH // V_HEADS) ** -0.5).softmax(-1)
        h = (att @ qkv[2]).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(h, sd[f"{b}.attn.proj.weight"], sd[f"{b}.attn.proj.bias"])
        h = F.layer_norm(x, (V_WIDTH,), sd[f"{b}.norm2.weight"], sd[f"{b}.norm2.bias"], 1e-6)
        h = F.gelu(F.linear(h, sd[f"{b}.mlp.fc1.weight"], sd[f"{b}.mlp.fc1.bias"]))
        x = x + F.linear(h, sd[f"{b}.mlp.fc2.weight"], sd[f"{b}.mlp.fc2.bias"])
    img = F.layer_norm(x, (V_WIDTH,), sd[f"{v}.norm.weight"], sd[f"{v}.norm.bias"], 1e-6)

    ids, mask = zip(*(_tokens(p) for p in prompts), strict=True)
    ids, mask = torch.stack(ids), torch.stack(mask)
    emb = f"{t}.embeddings"
    e = sd[f"{emb}.word_embeddings.weight"][ids] + sd[f"{emb}.position_embeddings.weight"][:35]
    h = F.layer_norm(e, (T_WIDTH,), sd[f"{emb}.LayerNorm.weight"], sd[f"{emb}.LayerNorm.bias"], 1e-12)
    add = (1.0 - mask[:, None, None, :].float()) * -10000.0  # med.py's extended attention mask

    def out(y, res, p):
        y = F.linear(y, sd[f"{p}.dense.weight"], sd[f"{p}.dense.bias"])
        ln_w, ln_b = sd[f"{p}.LayerNorm.weight"], sd[f"{p}.LayerNorm.bias"]
        return F.layer_norm(y + res, (T_WIDTH,), ln_w, ln_b, 1e-12)

    for i in range(T_DEPTH):
        b = f"{t}.encoder.layer.{i}"
        h = out(_mha(h, h, sd, f"{b}.attention.self", T_HEADS, add), h, f"{b}.attention.output")
        h = out(_mha(h, img, sd, f"{b}.crossattention.self", T_HEADS), h, f"{b}.crossattention.output")
        y = F.gelu(F.linear(h, sd[f"{b}.intermediate.dense.weight"], sd[f"{b}.intermediate.dense.bias"]))
        h = out(y, h, f"{b}.output")
    r = h[:, 0, :].double()
    for layer in (0, 2, 4, 6, 7):  # no activations in ImageReward's head
        r = F.linear(r, sd[f"mlp.layers.{layer}.weight"].double(), sd[f"mlp.layers.{layer}.bias"].double())
    return ((r[:, 0] - 0.16717362830052426) / 1.0333394966054072).tolist()


def _metric(files, **extra):
    return ImageReward(name="image_reward", settings={
        "checkpoint": str(files["pt"]), "med_config": str(files["med"]), "tokenizer": str(files["tok"]),
        "vision_heads": V_HEADS, "device": "cpu", "batch_size": 2, **extra})


def test_image_reward_matches_the_published_forward(files):
    m = _metric(files)
    out = m.score_images(_items())
    with torch.no_grad():
        want = _reference(files["sd"], _images(), PROMPTS)
    got = [v for v, _ in out]
    assert got == pytest.approx(want, abs=2e-5)
    assert max(want) - min(want) > 0.05  # the three images really differ
    for v, extra in out:
        assert (extra["raw"] - REWARD_MEAN) / REWARD_STD == pytest.approx(v, abs=1e-9)
        assert extra["weights_sha256"] == weights_sha256(files["pt"])
    assert [e["truncated"] for _, e in out] == [False, False, True]


def test_image_reward_describe_states_scale_and_weights(files):
    _metric(files).preflight()  # every file local: nothing to check on the hub
    d = _metric(files).describe()
    assert d["weights"] == "sha256:" + weights_sha256(files["pt"])
    assert d["checkpoint"] == "ImageReward.pt" and d["med_config"].startswith("sha256:")
    assert "batch_size" not in d and "device" not in d
    note = d["how_to_read"]["lines"][""]
    assert "z-scored" in note and "prompt by prompt" in note and "35" in note


def test_key_map_covers_the_published_names():
    assert map_key("blip.visual_encoder.blocks.23.attn.proj.weight") == \
        "vision_model.encoder.layers.23.self_attn.projection.weight"
    assert map_key("blip.visual_encoder.norm.bias") == "vision_model.post_layernorm.bias"
    assert map_key("blip.text_encoder.encoder.layer.3.crossattention.self.key.weight") == \
        "text_encoder.encoder.layer.3.crossattention.self.key.weight"
    assert map_key("mlp.layers.7.bias") == "head.7.bias"
    assert map_key("blip.vision_proj.weight") is None
    with pytest.raises(ConfigError, match="unknown key 'blip.itm_head.weight'"):
        map_key("blip.itm_head.weight")


def test_checkpoint_of_another_model_is_named(files, tmp_path):
    bad = tmp_path / "bad.pt"
    sd = dict(files["sd"])
    sd["blip.itm_head.weight"] = torch.zeros(2, T_WIDTH)
    torch.save(sd, bad)
    with pytest.raises(ConfigError, match="itm_head"):
        _metric(files, checkpoint=str(bad)).score_images(_items())


@pytest.mark.parametrize("settings, needle, setting", [
    ({}, "THUDM/ImageReward/ImageReward.pt", "checkpoint"),
    ({"checkpoint": "PT"}, "THUDM/ImageReward/med_config.json", "med_config"),
    ({"checkpoint": "PT", "med_config": "MED"}, "'bert-base-uncased'", "tokenizer"),
])
def test_offline_without_weights_fails_fast_naming_file_and_setting(settings, needle, setting, files,
                                                                    monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    settings = {k: str(files["pt"] if v == "PT" else files["med"]) for k, v in settings.items()}
    m = ImageReward(name="pref", settings={**settings, "device": "cpu"})
    before = sorted(p.name for p in tmp_path.iterdir())
    for step in (m.preflight, lambda: m.score_images(_items())):  # before a run, and when scoring
        t = time.perf_counter()
        with pytest.raises(ModelUnavailable) as e:
            step()
        assert time.perf_counter() - t < 1.0
        assert needle in str(e.value) and f"metrics.pref.settings.{setting}=" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.ir.settings.checkpoint: no such file"):
        ImageReward(name="ir", settings={"checkpoint": str(tmp_path / "nope.pt")})
    with pytest.raises(ConfigError, match=r"metrics.ir.settings.max_length: must be >= 1"):
        ImageReward(name="ir", settings={"max_length": 0})
