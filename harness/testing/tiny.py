"""Tiny random-weight diffusers pipelines, built offline and saved as ordinary model folders.

They exercise the real loading and generation code (``DiffusionPipeline.from_pretrained`` on a
folder) without a model hub: the two architectures the harness ships as default models are a
Stable-Diffusion-1.5-shaped U-Net pipeline (``sd15``) and a Stable-Diffusion-3-shaped MMDiT
pipeline (``sd3``). Sizes follow diffusers' own ``get_dummy_components`` in its test suite.
Their images are noise-like: every report must label these models as untrained.

The tokenizer is a byte-level CLIP BPE vocabulary with no merges (every token is one byte), so
it needs no downloaded vocabulary file. torch, diffusers and transformers are imported inside
the functions: importing this module is cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

ARCHS = ("sd15", "sd3")
"""Architectures :func:`build_tiny_pipeline` knows."""

RECIPE_FILE = ".harness-build.json"
"""Recipe a built folder was made from. A dotfile, so folder fingerprints skip it (the weights
and configs already identify the model)."""

MAX_TOKENS = 77
"""Tokenizer length and text-encoder positions, as in real CLIP (75 bytes of prompt)."""


def _byte_chars() -> list[str]:
    """CLIP/GPT-2 byte-to-unicode table: the 256 printable stand-ins BPE uses for raw bytes."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def write_byte_vocab(folder: str | Path) -> Path:
    """Write a merge-free CLIP BPE vocabulary (``vocab.json`` + ``merges.txt``) to ``folder``.

    Ids: 0-255 the bytes inside a word, 256-511 the same bytes ending a word (``</w>``),
    512 ``<|startoftext|>``, 513 ``<|endoftext|>`` (also padding and unknown).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def tiny_tokenizer(folder: str | Path) -> Any:
    """A byte-level ``CLIPTokenizer`` loaded from a vocabulary written into ``folder``.

    transformers 5 builds a 2-token vocabulary from ``CLIPTokenizer(vocab_file=...)``; loading
    the folder with ``from_pretrained`` is the form that works.
    """
    from transformers import CLIPTokenizer

    write_byte_vocab(folder)
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)


def _clip_config(tok: Any, projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        bos_token_id=tok.bos_token_id,
        # eos != 2 makes CLIP pool at the first end-of-text token (the modern rule).
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **extra,
    )


def _sd15(tok: Any, image_size: int) -> Any:
    from diffusers import (
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    vae_scale = 4  # three VAE blocks: two 2x downsamples; 64 px images are 16x16 latents
    unet = UNet2DConditionModel(
        sample_size=image_size // vae_scale,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = _tiny_vae(image_size, latent_channels=4)
    text_encoder = CLIPTextModel(_clip_config(tok))
    # SD1.5's own schedule; steps_offset=1 avoids the pipeline's "outdated config" rewrite.
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _tiny_vae(image_size: int, **kwargs: Any) -> Any:
    """Three-block VAE (two 2x downsamples): 64 px images are 16x16 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        **kwargs,
    )


def _sd3(tok: Any, image_size: int) -> Any:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    vae_scale, patch = 4, 2  # 64 px images: 16x16 latents, 8x8 = 64 image tokens
    transformer = SD3Transformer2DModel(
        sample_size=image_size // vae_scale,
        patch_size=patch,
        in_channels=16,
        out_channels=16,
        num_layers=4,
        attention_head_dim=16,
        num_attention_heads=4,
        caption_projection_dim=64,  # must equal heads x head dim (the joint stream width)
        # Two 32-wide CLIP encoders concatenated; with no T5 the pipeline feeds zeros this wide.
        joint_attention_dim=64,
        pooled_projection_dim=64,
        # Positional table covers 128 patches a side: images up to 1024 px.
        pos_embed_max_size=128,
    )
    vae = _tiny_vae(image_size, latent_channels=16, use_quant_conv=False,
                    use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    text_encoder = CLIPTextModelWithProjection(_clip_config(tok, projection_dim=32))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(tok, projection_dim=32))
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tok,
        text_encoder_3=None,
        tokenizer_3=None,
    )


def _check_recipe(arch: str, image_size: int) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny architecture {arch!r}; valid: {', '.join(ARCHS)}.")
    if image_size < 16 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 and at least 16, got {image_size}.")


def build_tiny_pipeline(arch: str, folder: str | Path, *, seed: int = 0,
                        image_size: int = 64) -> Path:
    """Build a tiny random-weight pipeline and save it (safetensors) as a model folder.

    The same arguments give byte-identical files. The folder is written next to its final
    place and renamed into it, so a killed build never leaves a half-written model.

    Args:
        arch: ``sd15`` (U-Net) or ``sd3`` (MMDiT).
        folder: Destination; must not exist yet (an empty folder is replaced).
        seed: Seed of the random weights.
        image_size: Default image side in pixels (the pipeline's default width and height).

    Returns:
        The folder.
    """
    import torch

    _check_recipe(arch, image_size)
    folder = Path(folder).expanduser().absolute()
    if folder.exists():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        else:
            raise FileExistsError(f"{folder} already exists; delete it or use ensure_tiny_pipeline.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            tok = tiny_tokenizer(tmp / "_vocab")
            pipe = (_sd15 if arch == "sd15" else _sd3)(tok, image_size)
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        # Quiet the "text_encoder_3=None cannot be saved" warnings (leaving T5 out is the
        # point) and the per-shard write bars.
        verbosity = diffusers_logging.get_verbosity()
        bars = transformers_logging.is_progress_bar_enabled()
        diffusers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
        try:
            pipe.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            diffusers_logging.set_verbosity(verbosity)
            if bars:
                transformers_logging.enable_progress_bar()
        shutil.rmtree(tmp / "_vocab")
        recipe = {"arch": arch, "seed": seed, "image_size": image_size}
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, sort_keys=True) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            # Another process finished the same build first: keep its folder.
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ensure_tiny_pipeline(arch: str, folder: str | Path, seed: int = 0,
                         image_size: int = 64) -> Path:
    """Return ``folder``, building the tiny pipeline there first if it has no model_index.json.

    Raises:
        ValueError: the folder holds a tiny pipeline built from a different recipe (changing
            the recipe in a config must not silently keep the old weights).
        FileExistsError: the folder exists, is not empty and is not a pipeline folder.
    """
    _check_recipe(arch, image_size)
    folder = Path(folder).expanduser().absolute()
    if not (folder / "model_index.json").is_file():
        return build_tiny_pipeline(arch, folder, seed=seed, image_size=image_size)
    recipe_path = folder / RECIPE_FILE
    if recipe_path.is_file():
        want = {"arch": arch, "seed": seed, "image_size": image_size}
        have = json.loads(recipe_path.read_text())
        if have != want:
            raise ValueError(
                f"{folder} holds a tiny pipeline built with {have}, not {want}. Delete the "
                "folder to rebuild it, or give the new recipe its own model_id."
            )
    return folder
