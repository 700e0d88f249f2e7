"""HPSv3 (Ma et al., ICCV 2025): a human-preference reward on a vision-language model, Qwen2-VL-7B-
Instruct with a reward head, trained on HPDv3 (1.08M text-image pairs, 1.17M pairwise choices)
with an uncertainty-aware ranking loss. Loaded from its published ``HPSv3.safetensors`` into
transformers' ``Qwen2VLModel``.

**The number.** The image and an instruction go through the model as one chat turn (the base
model's chat template, generation prompt added)::

    <instruction: rate Visual Quality (reasonableness, clarity, detail, aesthetics, safety) ...>
    Textual prompt - {prompt}
    Please provide the overall ratings of this image: <|Reward|>
    END

``<|Reward|>`` is a special token added to the tokenizer (the embedding table grows by one row).
The last hidden state at that token goes through the reward head (float32; Linear(hidden, 1024),
ReLU, dropout, Linear(1024, 16), ReLU, Linear(16, 2)), whose two outputs are the mean ``mu`` and
the uncertainty ``sigma`` of a Gaussian preference score. The value is ``mu``, as the authors'
inference reports it (``sigma`` goes to ``extra``). ``mu`` is not normalised and has no fixed
range; it was trained by comparing images of one prompt, so only differences within a
prompt are meaningful.

**As published** (``hpsv3/inference.py``, ``train.py``, ``model/qwen2vl_trainer.py``,
``dataset/data_collator_qwen.py`` and ``dataset/utils.py`` of MizzenAI/HPSv3):

- the image: RGB, resized with PIL bicubic to the dimensions Qwen's ``smart_resize`` gives for
  exactly ``image_tokens`` (256) merged tokens (multiples of patch x merge = 28 px, 256 * 28 * 28 =
  200,704 pixels, aspect ratio kept), then the base processor (CLIP normalisation);
- the text padded on the right, batches of any size;
- the language model runs on the merged embeddings with *sequential* positions (the published
  forward calls the language model with ``input_ids=None``, so Qwen2-VL's 3-D M-RoPE image
  positions are never computed: every token, image or text, gets the 1-D position of its index);
  reproduced here by passing those positions explicitly;
- bfloat16 weights on a GPU (``dtype: auto``), the head in float32.

**Files.** ``HPSv3.safetensors`` (hub ``MizzenAI/HPSv3``, or a local file: ``checkpoint``; a full
state dict of the reward model, ``.pth`` files and a ``{"model": ...}`` wrapper accepted) and the
base model's config, processor and tokenizer files (``base``: hub id ``Qwen/Qwen2-VL-7B-Instruct``
or a local folder; its weights are never read: the checkpoint holds all of them). The sha256 of
the checkpoint goes with every value.

**Key map** (checkpoint -> ``Qwen2VLModel`` + head), for both transformers layouts a checkpoint
may have been saved from::

    visual.* | model.visual.*          -> visual.*
    model.language_model.*             -> language_model.*
    model.* (any other)                -> language_model.*   (pre-4.52 layout)
    rm_head.{0,3,5}.*                  -> head.{0,3,5}.*
    lm_head.weight                     -> not used (the reward never reads the LM head)
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput, prompt_images
from harness.metrics.clip_score import pick_device, weights_sha256
from harness.metrics.hub import fetch_hub_file, hub_snapshot, require_hub_file
from harness.metrics.vqa import DTYPES, resolve_dtype
from harness.toyworld.paths import resolve_path

log = logging.getLogger(__name__)

REWARD_TOKEN = "<|Reward|>"
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 
Textual prompt - {text_prompt}


"""  # noqa: E501, W291 - byte for byte as HPSv3 was trained with (its trailing spaces included)
"""HPSv3's instruction (``INSTRUCTION`` of its data collator), byte for byte."""
WITH_REWARD_TOKEN = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"
"""What follows the instruction (``prompt_with_special_token``)."""
HEAD_LINEAR = (0, 3, 5)
BASE_FILES = ("*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken")
BASE_ENOUGH = "its config and tokenizer files are enough"
"""A base model's config, processor and tokenizer files (its weights are not needed)."""
MAX_RATIO = 200


def smart_resize(height: int, width: int, factor: int, pixels: int) -> tuple[int, int]:
    """Qwen-VL's ``smart_resize`` with ``min_pixels = max_pixels = pixels`` (as HPSv3 calls it):
    both sides multiples of ``factor``, about ``pixels`` pixels, the aspect ratio kept."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio over {MAX_RATIO}: {width}x{height}")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > pixels:
        beta = math.sqrt(height * width / pixels)
        h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h * w < pixels:
        beta = math.sqrt(pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


def map_key(key: str) -> str | None:
    """The loaded model's name of one HPSv3 checkpoint key (``visual.``/``language_model.`` of
    ``Qwen2VLModel``, ``head.`` for the reward head); None for the unused LM head."""
    if key == "lm_head.weight":
        return None
    if key.startswith("rm_head."):
        return "head." + key.removeprefix("rm_head.")
    if key.startswith("visual."):
        return key
    if key.startswith("model.visual."):
        return key.removeprefix("model.")
    if key.startswith("model.language_model."):
        return key.removeprefix("model.")
    if key.startswith("model."):
        return "language_model." + key.removeprefix("model.")
    raise ConfigError(f"HPSv3 checkpoint: unknown key {key!r} (not a Qwen2-VL reward model state dict?).")


def hpsv3_state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors of an HPSv3 checkpoint (``.safetensors``, or a torch file; a ``{"model": ...}``
    wrapper and DDP's ``module.`` prefix are accepted)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    else:
        import torch

        sd = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
            sd = sd["model"]
    return {k.removeprefix("module."): v for k, v in sd.items()}


class HPSv3(Metric):
    """HPSv3: mu of the Qwen2-VL reward model's preference score; higher = preferred."""

    kind = "hpsv3"
    version = "1"
    per = "image"
    higher_is_better = True
    runtime = ("batch_size", "device")
    defaults = {
        "checkpoint": None,
        "hub_file": "MizzenAI/HPSv3/HPSv3.safetensors",
        "base": "Qwen/Qwen2-VL-7B-Instruct",
        "image_tokens": 256,
        "dtype": "auto",
        "batch_size": 4,
        "device": "auto",
    }
    """checkpoint: local HPSv3.safetensors (else hub_file, ``org/repo/file``). base: hub id or
    folder of the base model's config, processor and tokenizer. image_tokens: merged image tokens
    per image (256 as published). dtype: auto (bfloat16 on a GPU as published, float32 on the
    CPU), float32, float16 or bfloat16."""

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        if s.get("checkpoint") is not None and not resolve_path(s["checkpoint"]).is_file():
            raise ConfigError(f"metrics.{name}.settings.checkpoint: no such file: {s['checkpoint']}")
        if s["dtype"] not in DTYPES:
            raise ConfigError(f"metrics.{name}.settings.dtype: unknown dtype {s['dtype']!r}."
                              + did_you_mean(str(s["dtype"]), list(DTYPES)))
        for k in ("batch_size", "image_tokens"):
            if int(s[k]) < 1:
                raise ConfigError(f"metrics.{name}.settings.{k}: must be >= 1, got {s[k]}.")
        self.batch_size = 4 * int(s["batch_size"])
        self._m: dict[str, Any] | None = None
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
        if resolve_path(str(s["base"])).is_dir():
            d["base"] = Path(str(s["base"])).name
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Scale (mu of a learnt Gaussian, no fixed range) and that it compares within a prompt."""
        return ReadingNotes(lines={"": (
            "HPSv3: mu, the mean of the preference score the Qwen2-VL-7B reward model predicts (its sigma, "
            "the uncertainty, is in extra); not normalised, no fixed range, higher = preferred. Trained on "
            "pairs of images of one prompt: comparable only between images of the same prompt, so compare "
            f"models prompt by prompt. Weights {str(identity.get('weights'))[:23]}.")})

    def preflight(self) -> None:
        """Checkpoint cached or reachable (not downloaded here), base config and processor there."""
        s = self.settings
        if s["checkpoint"] is None:
            require_hub_file(self.name, str(s["hub_file"]), "checkpoint")
        if not resolve_path(str(s["base"])).is_dir():
            hub_snapshot(self.name, str(s["base"]), setting="base", patterns=BASE_FILES,
                         enough=BASE_ENOUGH)

    def _load(self) -> dict[str, Any]:
        import torch
        from torch import nn
        from transformers import AutoConfig, AutoProcessor
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

        if not hasattr(Qwen2VLModel, "get_image_features"):  # the vision tower moved in in 4.52
            import transformers

            raise ConfigError(f"metrics.{self.name}: HPSv3 needs transformers>=4.52 (installed: "
                              f"{transformers.__version__}): pip install -U 'transformers>=4.52'")
        s = self.settings
        ckpt = (resolve_path(s["checkpoint"]) if s["checkpoint"] is not None
                else fetch_hub_file(self.name, str(s["hub_file"]), "checkpoint"))
        src = str(s["base"])
        base = (resolve_path(src) if resolve_path(src).is_dir()
                else hub_snapshot(self.name, src, setting="base", patterns=BASE_FILES,
                                   enough=BASE_ENOUGH))
        device = pick_device(str(s["device"]))
        dtype = resolve_dtype(str(s["dtype"]), device)
        processor = AutoProcessor.from_pretrained(str(base), local_files_only=True)
        tok = processor.tokenizer
        tok.padding_side = "right"  # as HPSv3's create_model_and_processor
        tok.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        reward_id = tok.convert_tokens_to_ids(REWARD_TOKEN)

        sd: dict[str, Any] = {}
        head_sd: dict[str, Any] = {}
        for k, v in hpsv3_state_dict(ckpt).items():
            new = map_key(k)
            if new is None:
                continue
            if new.startswith("head."):
                head_sd[new.removeprefix("head.")] = v
            else:
                sd[new] = v
        try:
            rows = int(sd["language_model.embed_tokens.weight"].shape[0])
            dims = [tuple(head_sd[f"{i}.weight"].shape) for i in HEAD_LINEAR]
        except KeyError as e:
            raise ConfigError(f"metrics.{self.name}: {ckpt} has no {e.args[0]!r}: not an HPSv3 checkpoint "
                              f"(a Qwen2-VL reward model with the default ranknet head).") from e
        if reward_id >= rows:
            raise ConfigError(f"metrics.{self.name}: the {REWARD_TOKEN} token of {src}'s tokenizer has id "
                              f"{reward_id}, past the checkpoint's {rows} embeddings: settings.base is not "
                              f"the checkpoint's base model.")
        cfg = AutoConfig.from_pretrained(str(base), local_files_only=True)
        # HPSv3 resized the embeddings to the grown tokenizer (older configs are flat).
        getattr(cfg, "text_config", cfg).vocab_size = rows
        # Mismatched shapes come back in info (named in the error below) instead of a RuntimeError.
        model, info = Qwen2VLModel.from_pretrained(
            None, config=cfg, state_dict=sd, dtype=getattr(torch, dtype), output_loading_info=True,
            ignore_mismatched_sizes=True)
        bad = {k: v for k, v in info.items()
               if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if bad:
            raise ConfigError(f"metrics.{self.name}: {ckpt} does not fit {src}'s config: "
                              + "; ".join(f"{k} {sorted(v)[:4]}" for k, v in bad.items()))
        model = model.to(device).eval()
        (h0, _), (h1, _), (n_out, _) = dims
        head = nn.Sequential(nn.Linear(dims[0][1], h0), nn.ReLU(), nn.Dropout(0.05), nn.Linear(h0, h1),
                             nn.ReLU(), nn.Linear(h1, n_out))
        try:
            head.load_state_dict(head_sd)
        except RuntimeError as e:
            raise ConfigError(f"metrics.{self.name}: {ckpt}: the reward head is not HPSv3's "
                              f"(rm_head.0/3/5 linear layers): {str(e).splitlines()[0][:200]}") from e
        head = head.to(device=device, dtype=torch.float32).eval()
        ip = processor.image_processor
        factor = int(ip.patch_size) * int(ip.merge_size)
        log.info("%s: %s on %s (%s), base %s", self.name, ckpt.name, device, dtype, src)
        return {"model": model, "head": head, "processor": processor, "reward_id": reward_id,
                "device": device, "dtype": dtype, "factor": factor, "weights_sha256": weights_sha256(ckpt)}

    def text(self, prompt: str) -> str:
        """The user text for one prompt: HPSv3's instruction, then the reward-token line."""
        return INSTRUCTION.format(text_prompt=prompt) + WITH_REWARD_TOKEN

    def _forward(self, m: dict[str, Any], images: list[Any], prompts: list[str]) -> list[tuple[float, float]]:
        import torch
        from PIL import Image

        proc, model = m["processor"], m["model"]
        pixels = int(self.settings["image_tokens"]) * m["factor"] ** 2
        ims = []
        for im in images:
            h, w = smart_resize(im.height, im.width, m["factor"], pixels)
            ims.append(im.resize((w, h), Image.BICUBIC))
        msgs = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.text(p)}]}]
                for p in prompts]
        texts = [proc.apply_chat_template(x, tokenize=False, add_generation_prompt=True) for x in msgs]
        enc = proc(text=texts, images=ims, padding=True, return_tensors="pt")
        ids = enc["input_ids"].to(m["device"])
        mask = enc["attention_mask"].to(m["device"])
        with torch.inference_mode():
            emb = model.get_input_embeddings()(ids)
            feats = model.get_image_features(enc["pixel_values"].to(m["device"], model.dtype),
                                             enc["image_grid_thw"].to(m["device"]))
            feats = getattr(feats, "pooler_output", feats)
            if isinstance(feats, (list, tuple)):
                feats = torch.cat(list(feats))
            img_mask = (ids == model.config.image_token_id).unsqueeze(-1).expand_as(emb)
            emb = emb.masked_scatter(img_mask, feats.to(emb.dtype))
            # Sequential positions, as the published forward gets (see the module docstring).
            pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
            hidden = model.language_model(inputs_embeds=emb, attention_mask=mask,
                                          position_ids=pos[None].expand(3, -1, -1)).last_hidden_state
            out = []
            for row in range(ids.shape[0]):
                at = (ids[row] == m["reward_id"]).nonzero()
                if not len(at):
                    raise RuntimeError(f"{REWARD_TOKEN} missing from the input of prompt {prompts[row]!r}")
                mu, sigma = m["head"](hidden[row, int(at[-1])].float())[:2].tolist()
                out.append((mu, sigma))
        return out

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)

        def check(im: Any) -> None:
            if max(im.size) / min(im.size) > MAX_RATIO:
                raise ValueError(f"aspect ratio over {MAX_RATIO}: {im.width}x{im.height}")

        # The reward token marks where the head reads: a prompt must not carry its own.
        good = [(i, im, re.sub(re.escape(REWARD_TOKEN), "", text))
                for i, im, text in prompt_images(items, out, check)]
        if good:
            self._m = self._m or self._load()
            m = self._m
            step = int(self.settings["batch_size"])
            for s in range(0, len(good), step):
                chunk = good[s:s + step]
                scores = self._forward(m, [im for _, im, _ in chunk], [t for _, _, t in chunk])
                for (i, _, _), (mu, sigma) in zip(chunk, scores, strict=True):
                    out[i] = (mu, {"mu": mu, "sigma": sigma, "device": m["device"], "dtype": m["dtype"],
                                   "weights_sha256": m["weights_sha256"]})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def close(self) -> None:
        self._m = None
