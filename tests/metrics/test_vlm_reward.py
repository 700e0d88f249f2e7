"""HPSv3 on a tiny random Qwen2-VL (the zoo's ``build("qwen2_vl")``) made into a reward model the
way HPSv3's ``create_model_and_processor`` does it (``<|Reward|>`` added to the tokenizer, the
embeddings resized, a float32 ranknet head), saved as ``HPSv3.safetensors`` in the pre-4.52
transformers key layout (``visual.*``, ``model.*``, ``lm_head``, ``rm_head.*``), with only the
base model's config and processor files beside it. The metric's values are compared with the
published forward, written out here: Qwen's smart_resize to a fixed pixel count and PIL bicubic,
the chat template, right padding, image features scattered into the embeddings, the decoder run
with ``input_ids=None`` (sequential positions), the head read at the reward token."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
F = torch.nn.functional

from harness.metrics.clip_score import ModelUnavailable, weights_sha256  # noqa: E402
from harness.metrics.vlm_reward import INSTRUCTION, WITH_REWARD_TOKEN, HPSv3, map_key  # noqa: E402
from harness.zoo import vlm  # noqa: E402

PROMPTS = ["a red square", "a photo of a cat on a blue sign", "green text"]
TOKENS = 4  # merged image tokens per image: 4 * (8 * 2)^2 = 1024 pixels


def _images():
    rng = np.random.default_rng(11)
    sizes = [(40, 52), (64, 64), (30, 90)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def _items(prompts=PROMPTS):
    return [ScoreInput(f"k{i}", "m", im, {"text": p}) for i, (im, p) in enumerate(zip(_images(), prompts,
                                                                                      strict=True))]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hpsv3")
    words = vlm.words_of([INSTRUCTION, WITH_REWARD_TOKEN, *PROMPTS])
    model, proc = vlm.build("qwen2_vl", words, hidden=32, layers=2, heads=2, seed=5)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # O(1) activations (the default 0.02 init leaves every image alike)
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name:
                fan_in = p[0].numel() if "embed_tokens" not in name else 1
                p.copy_(torch.randn(p.shape, generator=g) * 1.2 / fan_in ** 0.5)
    base = d / "base"
    proc.save_pretrained(base)  # the base model's processor, before the reward token
    model.config.save_pretrained(base)  # its config; no weights: the checkpoint holds them all
    proc.tokenizer.padding_side = "right"
    proc.tokenizer.add_special_tokens({"additional_special_tokens": ["<|Reward|>"]})
    model.resize_token_embeddings(len(proc.tokenizer))
    torch.manual_seed(6)
    head = torch.nn.Sequential(torch.nn.Linear(32, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.05),
                               torch.nn.Linear(1024, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()
    sd = {}
    for k, v in model.state_dict().items():  # today's layout -> the older one a checkpoint may carry
        k = k.replace("model.visual.", "visual.").replace("model.language_model.", "model.")
        sd[k] = v.detach().clone().contiguous()
    sd |= {f"rm_head.{k}": v.detach().clone() for k, v in head.state_dict().items()}
    from safetensors.torch import save_file

    save_file(sd, str(d / "HPSv3.safetensors"))
    return {"ckpt": d / "HPSv3.safetensors", "base": base, "model": model.eval(), "proc": proc, "head": head}


def _smart_resize(h, w, factor=16, pixels=TOKENS * 256):
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > pixels:
        beta = math.sqrt(h * w / pixels)
        return math.floor(h / beta / factor) * factor, math.floor(w / beta / factor) * factor
    if hb * wb < pixels:
        beta = math.sqrt(pixels / (h * w))
        return math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def _reference(files, images, prompts):
    """The published HPSv3 forward on the model object the checkpoint was written from."""
    model, proc, head = files["model"], files["proc"], files["head"]
    ims = [im.resize(_smart_resize(im.height, im.width)[::-1], Image.BICUBIC) for im in images]
    texts = [INSTRUCTION.format(text_prompt=p) + WITH_REWARD_TOKEN for p in prompts]
    msgs = [[{"role": "user", "content": [{"type": "image", "image": im}, {"type": "text", "text": t}]}]
            for im, t in zip(ims, texts, strict=True)]
    enc = proc(text=proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True), images=ims,
               padding=True, return_tensors="pt")
    ids = enc["input_ids"]
    emb = model.model.language_model.embed_tokens(ids)
    feats = model.model.visual(enc["pixel_values"], grid_thw=enc["image_grid_thw"]).pooler_output
    emb = emb.masked_scatter((ids == model.config.image_token_id)[..., None].expand_as(emb), feats)
    hidden = model.model(input_ids=None, inputs_embeds=emb, attention_mask=enc["attention_mask"])[0]
    reward = proc.tokenizer.convert_tokens_to_ids("<|Reward|>")
    return head(hidden.float())[ids == reward].view(len(prompts), -1).tolist()


def _metric(files, **extra):
    return HPSv3(name="hpsv3", settings={"checkpoint": str(files["ckpt"]), "base": str(files["base"]),
                                         "image_tokens": TOKENS, "device": "cpu", "batch_size": 2, **extra})


def test_hpsv3_matches_the_published_forward(files):
    out = _metric(files).score_images(_items())
    with torch.no_grad():
        want = _reference(files, _images(), PROMPTS)
    assert [v for v, _ in out] == pytest.approx([mu for mu, _ in want], abs=2e-5)
    assert [e["sigma"] for _, e in out] == pytest.approx([s for _, s in want], abs=2e-5)
    # Tight: Qwen2-VL's M-RoPE image positions instead of the sequential ones move mu by ~1e-3 here.
    assert max(mu for mu, _ in want) - min(mu for mu, _ in want) > 0.01  # the images really differ
    assert all(e["weights_sha256"] == weights_sha256(files["ckpt"]) and e["dtype"] == "float32"
               for _, e in out)


def test_hpsv3_describe_says_scale_and_weights(files):
    _metric(files).preflight()  # every file local: nothing to check on the hub
    d = _metric(files).describe()
    assert d["weights"] == "sha256:" + weights_sha256(files["ckpt"])
    assert d["checkpoint"] == "HPSv3.safetensors" and d["base"] == "base" and d["image_tokens"] == TOKENS
    note = d["how_to_read"]["lines"][""]
    assert "mu" in note and "same prompt" in note and "sigma" in note


def test_published_prompt_text():
    assert INSTRUCTION.startswith("\nYou are tasked with evaluating a generated image based on Visual")
    assert INSTRUCTION.endswith("Textual prompt - {text_prompt}\n\n\n")
    assert WITH_REWARD_TOKEN == "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


def test_key_map_reads_both_layouts():
    assert map_key("visual.blocks.0.attn.qkv.weight") == "visual.blocks.0.attn.qkv.weight"
    assert map_key("model.visual.merger.mlp.0.bias") == "visual.merger.mlp.0.bias"
    assert map_key("model.layers.3.mlp.up_proj.weight") == "language_model.layers.3.mlp.up_proj.weight"
    assert map_key("model.language_model.norm.weight") == "language_model.norm.weight"
    assert map_key("rm_head.5.weight") == "head.5.weight"
    assert map_key("lm_head.weight") is None
    with pytest.raises(ConfigError, match="unknown key 'score.weight'"):
        map_key("score.weight")


def test_base_of_another_model_is_named(files, tmp_path):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(files["ckpt"]))
    sd["model.embed_tokens.weight"] = sd["model.embed_tokens.weight"][:, :16].contiguous()
    bad = tmp_path / "HPSv3.safetensors"
    save_file(sd, str(bad))
    with pytest.raises(ConfigError, match="does not fit"):
        _metric(files, checkpoint=str(bad)).score_images(_items())


@pytest.mark.parametrize("settings, needle, setting", [
    ({}, "MizzenAI/HPSv3/HPSv3.safetensors", "checkpoint"),
    ({"checkpoint": "CKPT"}, "'Qwen/Qwen2-VL-7B-Instruct'", "base"),
])
def test_offline_without_weights_fails_fast_naming_file_and_setting(settings, needle, setting, files,
                                                                    monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    settings = {k: str(files["ckpt"]) for k in settings}
    m = HPSv3(name="pref", settings={**settings, "device": "cpu"})
    before = sorted(p.name for p in tmp_path.iterdir())
    for step in (m.preflight, lambda: m.score_images(_items())):  # before a run, and when scoring
        t = time.perf_counter()
        with pytest.raises(ModelUnavailable) as e:
            step()
        assert time.perf_counter() - t < 1.0
        assert needle in str(e.value) and f"metrics.pref.settings.{setting}=" in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"metrics.h.settings.checkpoint: no such file"):
        HPSv3(name="h", settings={"checkpoint": str(tmp_path / "nope.safetensors")})
    with pytest.raises(ConfigError, match=r"metrics.h.settings.dtype: unknown dtype 'bf16'"):
        HPSv3(name="h", settings={"dtype": "bf16"})
