"""Tiny random-weight diffusers pipelines, built offline and saved as ordinary model folders.

They exercise the real loading and generation code (``DiffusionPipeline.from_pretrained`` on a
folder) without a model hub: the two architectures the harness ships as default models are a
Stable-Diffusion-1.5-shaped U-Net pipeline (``sd15``) and a Stable-Diffusion-3-shaped MMDiT
pipeline (``sd3``); tests also build SDXL-shaped (``sdxl``, two text encoders, micro-conditioning)
and FLUX-shaped (``flux``, CLIP + T5, guidance-distilled transformer) ones. Sizes follow diffusers'
own ``get_dummy_components`` in its test suite. Their images are noise-like: every report must
label these models as untrained.

Adapters for the control tests are built the same way: a ControlNet copied from a tiny UNet
(:func:`build_tiny_controlnet`), a LoRA file made with peft (:func:`build_tiny_lora`) and an
IP-Adapter folder (:func:`build_tiny_ip_adapter`), each loaded through diffusers' ordinary
loaders.

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

from harness.generators.tiny_families import BUILDERS as FAMILY_BUILDERS
from harness.generators.tiny_families import FAMILY_PIPELINES
from harness.generators.tiny_text import t5_tokenizer, write_byte_vocab

BASE_ARCHS = ("sd15", "sd3", "sdxl", "flux")
"""The architectures of the first model line-up (built here)."""

ARCHS = (*BASE_ARCHS, *FAMILY_PIPELINES)
"""Architectures :func:`build_tiny_pipeline` knows: the base ones, today's families (FLUX.2,
FLUX.2 [klein], Qwen-Image, Z-Image, Chroma, Lumina-Image 2, CogView4, SANA-Sprint, BRIA 3.2,
Kandinsky 5, HunyuanImage 2.1, HiDream-I1, Qwen-Image 2.1, Ovis-Image, NucleusMoE-Image,
GLM-Image; built by
:mod:`~harness.generators.tiny_families`) and the instruction-editing pipelines (FLUX.1
Kontext, Qwen-Image-Edit, InstructPix2Pix)."""

RECIPE_FILE = ".harness-build.json"
"""Recipe a built folder was made from. A dotfile, so folder fingerprints skip it (the weights
and configs already identify the model)."""

MAX_TOKENS = 77
"""Tokenizer length and text-encoder positions, as in real CLIP (75 bytes of prompt)."""


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
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextModel

    unet = _tiny_unet(image_size, cross_attention_dim=32)
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


def _tiny_unet(image_size: int, **kwargs: Any) -> Any:
    """Two-block U-Net on 4-channel latents of the tiny VAE (a quarter of the image side)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=image_size // 4,  # three VAE blocks: two 2x downsamples
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        **kwargs,
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


def _sdxl(tok: Any, image_size: int) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    unet = _tiny_unet(
        image_size,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        # SDXL's micro-conditioning: six size/crop numbers embedded 8 wide + the pooled text.
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,  # the two 32-wide text encoders concatenated
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        steps_offset=1, timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=_tiny_vae(image_size, latent_channels=4), text_encoder=CLIPTextModel(_clip_config(tok)),
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(tok, projection_dim=32)),
        tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def tiny_t5_tokenizer(folder: str | Path) -> Any:
    """A character-level ``T5TokenizerFast`` (see :func:`~harness.generators.tiny_text.t5_tokenizer`)."""
    return t5_tokenizer(folder)


def _flux(tok: Any, image_size: int, t5_folder: Path) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    t5_tok = tiny_t5_tokenizer(t5_folder)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,  # FLUX.1-dev-style guidance distillation (schnell has none)
        axes_dims_rope=(4, 4, 8),
    )
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(t5_tok), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=t5_tok.pad_token_id,
        eos_token_id=t5_tok.eos_token_id, decoder_start_token_id=0,
    ))
    vae = _tiny_vae(image_size, latent_channels=4, use_quant_conv=False,
                    use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
        text_encoder=CLIPTextModel(_clip_config(tok)), tokenizer=tok,
        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer,
    )


def _flux_kontext(tok: Any, image_size: int, t5_folder: Path) -> Any:
    """FLUX.1 Kontext: FLUX.1's parts (the source image's latents join the sequence)."""
    from diffusers import FluxKontextPipeline

    parts = dict(_flux(tok, image_size, t5_folder).components)
    return FluxKontextPipeline(**{**parts, "image_encoder": None, "feature_extractor": None})


def _instruct_pix2pix(tok: Any, image_size: int) -> Any:
    """InstructPix2Pix: an SD1.5-shaped pipeline whose U-Net also reads the source image's
    latents (8 input channels: noise + image)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline
    from transformers import CLIPTextModel

    unet = _tiny_unet(image_size, cross_attention_dim=32)
    unet.register_to_config(in_channels=8)
    with torch.no_grad():  # widen conv_in the way InstructPix2Pix was trained from SD
        old = unet.conv_in
        new = torch.nn.Conv2d(8, old.out_channels, old.kernel_size, old.stride, old.padding)
        new.weight.zero_()
        new.weight[:, :4] = old.weight
        new.weight[:, 4:].normal_(0.0, 0.1)
        new.bias.copy_(old.bias)
        unet.conv_in = new
    return StableDiffusionInstructPix2PixPipeline(
        vae=_tiny_vae(image_size, latent_channels=4), text_encoder=CLIPTextModel(_clip_config(tok)),
        tokenizer=tok, unet=unet, scheduler=EulerAncestralDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


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
        arch: ``sd15`` (U-Net), ``sd3`` (MMDiT), ``sdxl`` (U-Net, two text encoders),
            ``flux`` (Flux transformer, CLIP + T5), or one of today's families and editing
            pipelines (:data:`ARCHS`; ``FAMILY_PIPELINES`` names each one's pipeline class).
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
            if arch in FAMILY_BUILDERS:
                pipe = FAMILY_BUILDERS[arch](tmp, image_size)
            else:
                tok = tiny_tokenizer(tmp / "_vocab")
                builder = {"sd15": _sd15, "sd3": _sd3, "sdxl": _sdxl, "flux": _flux,
                           "flux_kontext": _flux_kontext,
                           "instruct_pix2pix": _instruct_pix2pix}[arch]
                pipe = builder(tok, image_size, tmp / "_vocab_t5") if arch.startswith("flux") \
                    else builder(tok, image_size)
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
        for scratch in ("_vocab", "_vocab_t5", "_tok"):
            shutil.rmtree(tmp / scratch, ignore_errors=True)
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


# -- adapters for control tests -----------------------------------------------------------------


def _atomic_build(folder: str | Path, write: Any, recipe: dict[str, Any]) -> Path:
    """Run ``write(tmp_folder)`` and rename the result into ``folder`` (kept if already built
    with the same recipe)."""
    folder = Path(folder).expanduser().absolute()
    recipe_path = folder / RECIPE_FILE
    if recipe_path.is_file():
        have = json.loads(recipe_path.read_text())
        if have != recipe:
            raise ValueError(f"{folder} holds an adapter built with {have}, not {recipe}; delete "
                             "it to rebuild.")
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} exists and is not a built tiny adapter.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        import torch

        tmp.mkdir()
        from transformers.utils import logging as transformers_logging

        bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # the per-shard write bars
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(recipe.get("seed", 0)))
                write(tmp)
        finally:
            if bars:
                transformers_logging.enable_progress_bar()
        (tmp / RECIPE_FILE).write_text(json.dumps(recipe, sort_keys=True) + "\n")
        if folder.exists():
            folder.rmdir()
        try:
            os.rename(tmp, folder)
        except OSError:
            if not recipe_path.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _base_unet(base: str | Path) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(Path(base) / "unet"), local_files_only=True)


def build_tiny_controlnet(base: str | Path, folder: str | Path, *, seed: int = 0) -> Path:
    """A ControlNet for a tiny U-Net pipeline folder (sd15 or sdxl), saved as a model folder.

    ``ControlNetModel.from_unet`` copies the encoder and zero-initialises the output
    convolutions (a fresh ControlNet changes nothing); those are drawn at random here so the
    control visibly acts.
    """
    import torch
    from diffusers import ControlNetModel

    def write(tmp: Path) -> None:
        # Two 2x downsamples in the map embedding: the tiny VAE has 4x latents, not 8x.
        cn = ControlNetModel.from_unet(_base_unet(base), conditioning_channels=3,
                                       conditioning_embedding_out_channels=(16, 32, 64))
        with torch.no_grad():
            for name, p in cn.named_parameters():
                if name.startswith(("controlnet_down_blocks", "controlnet_mid_block")):
                    p.normal_(0.0, 0.1)
                elif name.startswith("controlnet_cond_embedding") and name.endswith("weight"):
                    # Strong enough that different maps steer differently (default init
                    # shrinks a map to almost nothing through four random convolutions).
                    p.normal_(0.0, 0.5 if "conv_out" in name else 0.3)
        cn.save_pretrained(str(tmp), safe_serialization=True)

    return _atomic_build(folder, write, {"adapter": "controlnet", "seed": seed})


def build_tiny_lora(base: str | Path, folder: str | Path, *, seed: int = 0, rank: int = 4,
                    weight_name: str = "pytorch_lora_weights.safetensors") -> Path:
    """A LoRA on a tiny U-Net's attention projections, made with peft and saved in diffusers'
    LoRA format (``folder/weight_name``); loads with ``pipe.load_lora_weights(folder,
    weight_name=...)``. B matrices are random (peft starts them at zero), so it acts."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    def write(tmp: Path) -> None:
        unet = _base_unet(base)
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
        with torch.no_grad():
            for name, p in unet.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.5)
        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
        StableDiffusionPipeline.save_lora_weights(str(tmp), unet_lora_layers=layers,
                                                  weight_name=weight_name, safe_serialization=True)

    return _atomic_build(folder, write, {"adapter": "lora", "seed": seed, "rank": rank,
                                         "weight_name": weight_name})


IP_ADAPTER_WEIGHTS = "ip-adapter_tiny.safetensors"
"""File name of the tiny IP-Adapter weights (next to an ``image_encoder/`` folder)."""


def build_tiny_ip_adapter(base: str | Path, folder: str | Path, *, seed: int = 0) -> Path:
    """An IP-Adapter for a tiny sd15 pipeline: ``folder/image_encoder`` (a tiny
    CLIPVisionModelWithProjection) and ``folder/ip-adapter_tiny.safetensors`` in the original
    layout diffusers' ``load_ip_adapter`` converts (``image_proj.proj/norm`` and
    ``ip_adapter.<n>.to_k_ip/to_v_ip`` for every cross-attention layer, n = 1, 3, 5 ...)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def write(tmp: Path) -> None:
        unet = _base_unet(base)
        cross = unet.config.cross_attention_dim
        embed = 32
        enc = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, projection_dim=embed, num_channels=3))
        enc.save_pretrained(str(tmp / "image_encoder"), safe_serialization=True)
        tokens = 4
        sd = {"image_proj.proj.weight": torch.randn(cross * tokens, embed) * 0.2,
              "image_proj.proj.bias": torch.zeros(cross * tokens),
              "image_proj.norm.weight": torch.ones(cross),
              "image_proj.norm.bias": torch.zeros(cross)}
        # Same walk as diffusers' _convert_ip_adapter_attn_to_diffusers: every attention
        # processor in order, cross-attention ones numbered 1, 3, 5 ...
        key_id = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            attn = unet.get_submodule(name.removesuffix(".processor"))
            hidden = attn.to_k.out_features
            sd[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.2
            sd[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.2
            key_id += 2
        save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp / IP_ADAPTER_WEIGHTS))

    return _atomic_build(folder, write, {"adapter": "ip_adapter", "seed": seed})
