"""ImageReward (Xu et al., NeurIPS 2023): a BLIP reward model trained on 137k expert rankings of
text-to-image outputs, loaded from its published checkpoint into transformers' BLIP classes.

**The number.** A BLIP ViT-L/16 encodes the image; BLIP's text encoder (BERT-base with a
cross-attention block in every layer) reads the prompt while attending to all image tokens; the
first output token (``[CLS]``: ImageReward does not swap in BLIP's ``[ENC]`` token) goes through a
5-layer linear head (768-1024-128-64-16-1, dropout only, *no* activations, as published) and is
z-scored with the published constants::

    reward = (head(cls) - 0.16717362830052426) / 1.0333394966054072

so 0 is the training set's mean and 1 one standard deviation (typical values -2..2, above 1 is
good). The raw head output is kept in ``extra.raw``. It was trained on rankings of images of one
prompt; across prompts the values shift with the prompt.

**Inputs, as published.** The prompt: BLIP's ``bert-base-uncased`` tokenizer (with ``[DEC]`` and
``[ENC]`` added, vocabulary 30524), padded and truncated to 35 tokens (``[CLS]`` and ``[SEP]``
included: longer prompts are cut, ``extra.truncated`` says so). The image: RGB, torchvision
``Resize(224, bicubic)`` of the short side, ``CenterCrop(224)``, ``ToTensor``, ``Normalize`` with
mean (0.48145466, 0.4578275, 0.40821073) and std (0.26862954, 0.26130258, 0.27577711) (BLIP's
constants, the same as CLIP's). The image size and patch size are read from the checkpoint.

**Files.** ``ImageReward.pt`` (a plain ``state_dict`` of the ``ImageReward`` module) and
``med_config.json`` (the BERT config) from the hub repository ``THUDM/ImageReward``; the tokenizer
from ``bert-base-uncased``. Each may be a local file or folder instead (``checkpoint``,
``med_config``, ``tokenizer``). The sha256 of the weights file goes with every value.

**Key map** (ImageReward.pt -> :class:`ImageRewardModel`; ``i`` a layer index)::

    blip.visual_encoder.cls_token            -> vision_model.embeddings.class_embedding
    blip.visual_encoder.pos_embed            -> vision_model.embeddings.position_embedding
    blip.visual_encoder.patch_embed.proj.*   -> vision_model.embeddings.patch_embedding.*
    blip.visual_encoder.blocks.i.norm1.*     -> vision_model.encoder.layers.i.layer_norm1.*
    blip.visual_encoder.blocks.i.attn.qkv.*  -> vision_model.encoder.layers.i.self_attn.qkv.*
    blip.visual_encoder.blocks.i.attn.proj.* -> vision_model.encoder.layers.i.self_attn.projection.*
    blip.visual_encoder.blocks.i.norm2.*     -> vision_model.encoder.layers.i.layer_norm2.*
    blip.visual_encoder.blocks.i.mlp.fc1|2.* -> vision_model.encoder.layers.i.mlp.fc1|2.*
    blip.visual_encoder.norm.*               -> vision_model.post_layernorm.*
    blip.text_encoder.*                      -> text_encoder.*   (same names: HF's BlipTextModel
                                                                  is a port of BLIP's med.py)
    mlp.layers.{0,2,4,6,7}.*                 -> head.{0,2,4,6,7}.*
    blip.vision_proj.*, blip.text_proj.*     -> not used (ImageReward's score never reads them)

The ViT's LayerNorms use eps 1e-6 (timm's), the text encoder's come from ``med_config.json``;
the number of vision heads cannot be read from weights (``vision_heads``, 16 for ViT-L).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, prompt_images
from harness.metrics.clip_score import pick_device, weights_sha256
from harness.metrics.hub import fetch_hub_file, hub_snapshot, require_hub_file
from harness.toyworld.paths import resolve_path

log = logging.getLogger(__name__)

REWARD_MEAN = 0.16717362830052426
"""ImageReward's published z-score constants (``ImageReward.py``: ``self.mean``, ``self.std``)."""
REWARD_STD = 1.0333394966054072
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HEAD_LINEAR = (0, 2, 4, 6, 7)
"""Indices of the linear layers in ImageReward's ``mlp.layers`` (dropouts between the first four)."""

_VISION_RULES = (
    (re.compile(r"^cls_token$"), "embeddings.class_embedding"),
    (re.compile(r"^pos_embed$"), "embeddings.position_embedding"),
    (re.compile(r"^patch_embed\.proj\.(weight|bias)$"), r"embeddings.patch_embedding.\1"),
    (re.compile(r"^blocks\.(\d+)\.norm1\.(weight|bias)$"), r"encoder.layers.\1.layer_norm1.\2"),
    (re.compile(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$"), r"encoder.layers.\1.self_attn.qkv.\2"),
    (re.compile(r"^blocks\.(\d+)\.attn\.proj\.(weight|bias)$"), r"encoder.layers.\1.self_attn.projection.\2"),
    (re.compile(r"^blocks\.(\d+)\.norm2\.(weight|bias)$"), r"encoder.layers.\1.layer_norm2.\2"),
    (re.compile(r"^blocks\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$"), r"encoder.layers.\1.mlp.\2.\3"),
    (re.compile(r"^norm\.(weight|bias)$"), r"post_layernorm.\1"),
)
_UNUSED = re.compile(r"^blip\.(vision_proj|text_proj)\.|position_ids$")


TOKENIZER_FILES = ("*.json", "*.txt")
TOKENIZER_ENOUGH = "its config and tokenizer files are enough"


def map_key(key: str) -> str | None:
    """The :class:`ImageRewardModel` name of one ``ImageReward.pt`` key (see the module's key
    map); None for keys the score never reads. Raises ConfigError for keys it does not know."""
    if _UNUSED.search(key):
        return None
    if key.startswith("blip.visual_encoder."):
        rest = key.removeprefix("blip.visual_encoder.")
        for pat, repl in _VISION_RULES:
            if pat.match(rest):
                return "vision_model." + pat.sub(repl, rest)
    elif key.startswith("blip.text_encoder."):
        return "text_encoder." + key.removeprefix("blip.text_encoder.")
    elif m := re.match(r"^mlp\.layers\.(\d+)\.(weight|bias)$", key):
        return f"head.{m.group(1)}.{m.group(2)}"
    raise ConfigError(f"ImageReward checkpoint: unknown key {key!r} (not an ImageReward-v1.0 state_dict?).")


def imagereward_state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors of an ``ImageReward.pt`` (a plain state_dict; a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper and DDP's ``module.`` prefix are accepted too)."""
    import torch

    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(raw, dict):
        for k in ("state_dict", "model"):
            if k in raw and isinstance(raw[k], dict):
                raw = raw[k]
                break
    return {k.removeprefix("module."): v for k, v in raw.items()}


def build_model(sd: Mapping[str, Any], med: Mapping[str, Any], *, vision_heads: int) -> Any:
    """An :class:`ImageRewardModel` shaped by an ImageReward state dict and its med_config, with
    the weights loaded through :func:`map_key`. Raises ConfigError naming what does not fit."""
    import torch
    from torch import nn
    from transformers import BlipTextConfig, BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipVisionModel
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    try:
        pos = sd["blip.visual_encoder.pos_embed"]
        patch_w = sd["blip.visual_encoder.patch_embed.proj.weight"]
        fc1 = sd["blip.visual_encoder.blocks.0.mlp.fc1.weight"]
        head = [sd[f"mlp.layers.{i}.weight"] for i in HEAD_LINEAR]
    except KeyError as e:
        raise ConfigError(f"ImageReward checkpoint: missing {e.args[0]!r} (not an ImageReward-v1.0 "
                          f"state_dict?).") from e
    width, patch = int(pos.shape[-1]), int(patch_w.shape[-1])
    grid = round((int(pos.shape[1]) - 1) ** 0.5)
    depth = len({k.split(".")[3] for k in sd if k.startswith("blip.visual_encoder.blocks.")})
    if width % vision_heads:
        raise ConfigError(f"ImageReward: vision width {width} is not divisible by "
                          f"vision_heads={vision_heads}.")
    vcfg = BlipVisionConfig(hidden_size=width, intermediate_size=int(fc1.shape[0]), num_hidden_layers=depth,
                            num_attention_heads=vision_heads, image_size=grid * patch, patch_size=patch,
                            hidden_act="gelu", layer_norm_eps=1e-6, attention_dropout=0.0)
    act = med.get("hidden_act", "gelu")
    tcfg = BlipTextConfig(
        vocab_size=int(med["vocab_size"]), hidden_size=int(med["hidden_size"]),
        encoder_hidden_size=width,  # BLIP_Pretrain sets encoder_width to the ViT's width
        intermediate_size=int(med["intermediate_size"]), num_hidden_layers=int(med["num_hidden_layers"]),
        num_attention_heads=int(med["num_attention_heads"]),
        max_position_embeddings=int(med.get("max_position_embeddings", 512)), hidden_act=act,
        layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)), pad_token_id=int(med.get("pad_token_id", 0)),
        bos_token_id=None, eos_token_id=None, sep_token_id=None,  # decoding ids: the encoder never reads them
        is_decoder=True)  # is_decoder builds the cross-attention blocks; forward runs bidirectional

    class ImageRewardModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision_model = BlipVisionModel(vcfg)
            self.text_encoder = BlipTextModel(tcfg, add_pooling_layer=False)
            layers: list[nn.Module] = []
            for i in range(HEAD_LINEAR[-1] + 1):
                if i in HEAD_LINEAR:
                    w = head[HEAD_LINEAR.index(i)]
                    layers.append(nn.Linear(int(w.shape[1]), int(w.shape[0])))
                else:
                    layers.append(nn.Identity())  # ImageReward's dropouts (no activations in between)
            self.head = nn.Sequential(*layers)

    model = ImageRewardModel()
    mapped = {}
    for k, v in sd.items():
        new = map_key(k)
        if new is not None:
            mapped[new] = v
    try:
        missing, unexpected = model.load_state_dict(mapped, strict=False)
    except RuntimeError as e:
        first = (str(e).splitlines()[1:] or [str(e)])[0][:300]
        raise ConfigError(f"ImageReward checkpoint does not fit its med_config: {first}") from e
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ConfigError(f"ImageReward checkpoint does not fit: missing {missing[:5]}, unexpected "
                          f"{unexpected[:5]}.")
    return model.to(torch.float32).eval()


class ImageReward(Metric):
    """ImageReward-v1.0: z-scored BLIP reward of (image, prompt); higher = preferred."""

    kind = "image_reward"
    version = "1"
    per = "image"
    higher_is_better = True
    runtime = ("batch_size", "device")
    defaults = {
        "checkpoint": None,
        "hub_file": "THUDM/ImageReward/ImageReward.pt",
        "med_config": None,
        "hub_med_config": "THUDM/ImageReward/med_config.json",
        "tokenizer": "bert-base-uncased",
        "vision_heads": 16,
        "max_length": 35,
        "batch_size": 8,
        "device": "auto",
    }
    """checkpoint: local ImageReward.pt (else hub_file, ``org/repo/file``). med_config: local
    med_config.json (else hub_med_config). tokenizer: hub id or folder of BLIP's BERT tokenizer.
    vision_heads: attention heads of the ViT (16 for ViT-L). max_length: prompt tokens (35 as
    published)."""

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        for k in ("checkpoint", "med_config"):
            if s.get(k) is not None and not resolve_path(s[k]).is_file():
                raise ConfigError(f"metrics.{name}.settings.{k}: no such file: {s[k]}")
        for k in ("batch_size", "max_length", "vision_heads"):
            if int(s[k]) < 1:
                raise ConfigError(f"metrics.{name}.settings.{k}: must be >= 1, got {s[k]}.")
        self.batch_size = 4 * int(s["batch_size"])
        self._m: Any = None
        self._weights: str | None = None

    def identity(self) -> dict[str, Any]:
        s = self.settings
        if self._weights is None:
            self._weights = ("sha256:" + weights_sha256(resolve_path(s["checkpoint"]))
                             if s["checkpoint"] is not None else f"hf:{s['hub_file']}")
        d = super().identity()
        d["weights"] = self._weights
        if s["checkpoint"] is not None:
            d["checkpoint"] = Path(str(s["checkpoint"])).name  # identified by content, not place
        if s["med_config"] is not None:
            d["med_config"] = "sha256:" + weights_sha256(resolve_path(s["med_config"]))
        if s["tokenizer"] is not None and resolve_path(s["tokenizer"]).is_dir():
            d["tokenizer"] = Path(str(s["tokenizer"])).name
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale (z-score) and that it ranks images of one prompt."""
        return ReadingNotes(lines={"": (
            "ImageReward: a BLIP reward head z-scored with the published constants, (raw - 0.167) / 1.033: "
            "0 = the training images' mean, 1 = one standard deviation better (typically -2..2). Trained on "
            "rankings of images of the same prompt: compare models prompt by prompt. Prompts cut at 35 "
            f"tokens. Weights {str(identity.get('weights'))[:23]}.")})

    def preflight(self) -> None:
        """Weights, config and tokenizer local, cached or reachable (nothing large downloaded)."""
        s = self.settings
        if s["checkpoint"] is None:
            require_hub_file(self.name, str(s["hub_file"]), "checkpoint")
        if s["med_config"] is None:
            fetch_hub_file(self.name, str(s["hub_med_config"]), "med_config")
        if not resolve_path(str(s["tokenizer"])).is_dir():
            hub_snapshot(self.name, str(s["tokenizer"]), setting="tokenizer", patterns=TOKENIZER_FILES,
                         enough=TOKENIZER_ENOUGH)

    def _load(self) -> dict[str, Any]:
        import torch
        from torchvision import transforms
        from transformers import AutoTokenizer

        s = self.settings
        ckpt = (resolve_path(s["checkpoint"]) if s["checkpoint"] is not None
                else fetch_hub_file(self.name, str(s["hub_file"]), "checkpoint"))
        med_path = (resolve_path(s["med_config"]) if s["med_config"] is not None
                    else fetch_hub_file(self.name, str(s["hub_med_config"]), "med_config"))
        src = str(s["tokenizer"])
        tok_folder = (resolve_path(src) if resolve_path(src).is_dir() else
                      hub_snapshot(self.name, src, setting="tokenizer", patterns=TOKENIZER_FILES,
                                   enough=TOKENIZER_ENOUGH))
        try:
            med = json.loads(Path(med_path).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"metrics.{self.name}.settings.med_config: {med_path}: not a JSON BERT config "
                              f"({e}).") from e
        tok = AutoTokenizer.from_pretrained(str(tok_folder), local_files_only=True)
        # BLIP's init_tokenizer: a [DEC] bos token and an [ENC] token (vocabulary 30522 -> 30524).
        tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
        if len(tok) > int(med["vocab_size"]):
            raise ConfigError(f"metrics.{self.name}.settings.tokenizer: {len(tok)} tokens, more than the "
                              f"{med['vocab_size']} of med_config's vocab_size; use BLIP's "
                              "bert-base-uncased.")
        device = pick_device(str(s["device"]))
        try:
            model = build_model(imagereward_state_dict(ckpt), med, vision_heads=int(s["vision_heads"]))
        except ConfigError as e:
            raise ConfigError(f"metrics.{self.name}.settings.checkpoint: {ckpt}: {e} Point checkpoint at "
                              f"THUDM's ImageReward.pt and med_config at its med_config.json.") from e
        model = model.to(device)
        size = int(model.vision_model.config.image_size)
        pre = transforms.Compose([
            transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size), transforms.ToTensor(), transforms.Normalize(BLIP_MEAN, BLIP_STD)])
        return {"model": model, "tok": tok, "pre": pre, "device": device, "torch": torch,
                "weights_sha256": weights_sha256(ckpt)}

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)
        good = prompt_images(items, out)
        if good:
            self._m = self._m or self._load()
            m = self._m
            torch, model, tok = m["torch"], m["model"], m["tok"]
            n = int(self.settings["max_length"])
            step = int(self.settings["batch_size"])
            for s in range(0, len(good), step):
                chunk = good[s:s + step]
                texts = [t for _, _, t in chunk]
                enc = tok(texts, padding="max_length", truncation=True, max_length=n, return_tensors="pt")
                full = tok(texts, truncation=False)["input_ids"]
                px = torch.stack([m["pre"](im) for _, im, _ in chunk]).to(m["device"])
                with torch.inference_mode():
                    img = model.vision_model(pixel_values=px).last_hidden_state
                    every = torch.ones(img.shape[:-1], dtype=torch.long, device=img.device)
                    txt = model.text_encoder(
                        input_ids=enc["input_ids"].to(m["device"]),
                        attention_mask=enc["attention_mask"].to(m["device"]),
                        encoder_hidden_states=img,
                        encoder_attention_mask=every,
                        is_decoder=False).last_hidden_state[:, 0, :].float()
                    raw = model.head(txt)[:, 0].cpu().tolist()
                for (i, _, _), r, ids in zip(chunk, raw, full, strict=True):
                    out[i] = ((r - REWARD_MEAN) / REWARD_STD,
                              {"raw": r, "truncated": len(ids) > n, "device": m["device"],
                               "weights_sha256": m["weights_sha256"]})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def close(self) -> None:
        self._m = None
