"""Tiny random-weight pipelines of today's open model families, built from each pipeline's own
component classes (the classes its ``__init__`` names) so the real pipeline code runs.

Sizes follow diffusers' ``get_dummy_components`` in its test suite, with two differences that
keep the shipped model configs valid on the tiny models: text encoders have as many layers as
the pipeline's default ``text_encoder_out_layers`` reaches (FLUX.2 stacks layers 10, 20, 30;
[klein] 9, 18, 27), and VAEs downsample 4x so a 64 px image is a few dozen tokens. Tokenizers
are byte-level (see :mod:`~harness.generators.tiny_text`).

Each builder takes the folder it may write tokenizers into and the default image side, and
returns the pipeline object; :func:`harness.generators.tiny.build_tiny_pipeline` saves it.
torch, diffusers and transformers are imported inside the builders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.generators.tiny_text import (
    gemma_tokenizer,
    glm_tokenizer,
    mistral_processor,
    qwen_tokenizer,
    t5_tokenizer,
)

FAMILY_PIPELINES = {
    "flux2": "Flux2Pipeline",
    "flux2_klein": "Flux2KleinPipeline",
    "qwen_image": "QwenImagePipeline",
    "z_image": "ZImagePipeline",
    "chroma": "ChromaPipeline",
    "lumina2": "Lumina2Pipeline",
    "cogview4": "CogView4Pipeline",
    "flux_kontext": "FluxKontextPipeline",
    "qwen_image_edit": "QwenImageEditPipeline",
    "instruct_pix2pix": "StableDiffusionInstructPix2PixPipeline",
}
"""Tiny architecture name -> the diffusers pipeline class it builds."""


def _vae_kl(image_size: int, latent_channels: int, blocks: tuple[int, ...] = (32, 64, 64),
            **kwargs: Any) -> Any:
    """AutoencoderKL with one 2x downsample per block after the first (three blocks: 64 px
    images are 16x16 latents)."""
    from diffusers import AutoencoderKL

    n = len(blocks)
    return AutoencoderKL(
        sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=blocks,
        down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        latent_channels=latent_channels, **kwargs)


def _flux2_vae(image_size: int) -> Any:
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(
        sample_size=image_size, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1, latent_channels=4, use_quant_conv=False, use_post_quant_conv=False)


def _flux2_transformer(joint_dim: int, guidance: bool) -> Any:
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1, in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=joint_dim, timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=guidance)


def flux2(tmp: Path, image_size: int) -> Any:
    """FLUX.2 [dev]: Mistral-3 text encoder (hidden states of layers 10, 20, 30 stacked),
    guidance-distilled transformer (guidance is a model input), FLUX.2 VAE."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    proc = mistral_processor(tmp / "_tok")
    tok = proc.tokenizer
    hidden = 16
    config = Mistral3Config(
        text_config={"model_type": "mistral", "vocab_size": len(tok), "hidden_size": hidden,
                     "intermediate_size": 37, "max_position_embeddings": 4096,
                     "num_attention_heads": 4, "num_hidden_layers": 30, "num_key_value_heads": 2,
                     "head_dim": 4, "rms_norm_eps": 1e-5, "rope_theta": 1e9, "sliding_window": None,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id},
        vision_config={"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "intermediate_size": 37, "image_size": 30,
                       "patch_size": 6, "num_channels": 3, "head_dim": 4},
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, image_seq_length=4, vision_feature_layer=-1,
        image_token_index=tok.convert_tokens_to_ids("[IMG]"), spatial_merge_size=1)
    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(image_size),
        text_encoder=Mistral3ForConditionalGeneration(config).eval(), tokenizer=proc,
        transformer=_flux2_transformer(3 * hidden, guidance=True))


def _qwen3_config(tok: Any, layers: int, hidden: int = 16) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=16, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, head_dim=8, max_position_embeddings=2048,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)


def flux2_klein(tmp: Path, image_size: int) -> Any:
    """FLUX.2 [klein] 4B (step-distilled): Qwen3 text encoder (layers 9, 18, 27 stacked), no
    guidance embedding, ``is_distilled`` so guidance is off."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen3ForCausalLM

    tok = qwen_tokenizer(tmp / "_tok")
    hidden = 16
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux2_vae(image_size),
        text_encoder=Qwen3ForCausalLM(_qwen3_config(tok, 27, hidden)).eval(), tokenizer=tok,
        transformer=_flux2_transformer(3 * hidden, guidance=False), is_distilled=True)


def _qwen25_vl(tok: Any) -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tok.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": len(tok),
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default",
                                      "type": "default"},
                     "rope_theta": 1e6, "pad_token_id": tok.pad_token_id,
                     "bos_token_id": None, "eos_token_id": tok.eos_token_id},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        hidden_size=16, vocab_size=len(tok), vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"), vision_token_id=ids("<|vision_pad|>"),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"))
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _qwen_image_parts(image_size: int) -> dict[str, Any]:
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    z_dim = 4
    return {
        "transformer": QwenImageTransformer2DModel(
            patch_size=2, in_channels=4 * z_dim, out_channels=z_dim, num_layers=2,
            attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
            guidance_embeds=False, axes_dims_rope=(8, 4, 4)),
        "vae": AutoencoderKLQwenImage(
            base_dim=z_dim * 6, z_dim=z_dim, dim_mult=[1, 2, 4], num_res_blocks=1,
            temperal_downsample=[False, True], latents_mean=[0.0] * z_dim,
            latents_std=[1.0] * z_dim),
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


def qwen_image(tmp: Path, image_size: int) -> Any:
    """Qwen-Image: Qwen2.5-VL text encoder (last hidden state, the chat template's system
    prefix dropped), MMDiT transformer with true classifier-free guidance (``true_cfg_scale``
    with a negative prompt), Qwen-Image VAE."""
    from diffusers import QwenImagePipeline

    tok = qwen_tokenizer(tmp / "_tok")
    return QwenImagePipeline(text_encoder=_qwen25_vl(tok), tokenizer=tok,
                             **_qwen_image_parts(image_size))


def qwen_image_edit(tmp: Path, image_size: int) -> Any:
    """Qwen-Image-Edit: Qwen-Image's parts plus a Qwen2-VL processor that puts the source image
    into the text encoder's prompt."""
    from diffusers import QwenImageEditPipeline
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    tok = qwen_tokenizer(tmp / "_tok")
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 56 * 56 * 4}
    proc = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tok,
                            video_processor=Qwen2VLVideoProcessor(**pixels),
                            chat_template=tok.chat_template)
    return QwenImageEditPipeline(text_encoder=_qwen25_vl(tok), tokenizer=tok, processor=proc,
                                 **_qwen_image_parts(image_size))


def z_image(tmp: Path, image_size: int) -> Any:
    """Z-Image (Turbo): Qwen3 text encoder (second-to-last hidden state), single-stream DiT."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Model

    tok = qwen_tokenizer(tmp / "_tok")
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2,
        n_refiner_layers=1, n_heads=2, n_kv_heads=2, norm_eps=1e-5, qk_norm=True,
        cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4],
        axes_lens=[1024, 64, 64])
    with torch.no_grad():  # created with torch.empty: fixed so the weights are deterministic
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token))
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae_kl(image_size, 16, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=Qwen3Model(_qwen3_config(tok, 2)).eval(), tokenizer=tok,
        transformer=transformer)


def _t5(tok: Any, d_model: int = 32) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=len(tok), d_model=d_model, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=0)).eval()


def chroma(tmp: Path, image_size: int) -> Any:
    """Chroma: FLUX.1-schnell-derived transformer with a modulation approximator instead of
    pooled CLIP, T5 only, real classifier-free guidance with negative prompts."""
    from diffusers import ChromaPipeline, ChromaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tok = t5_tokenizer(tmp / "_tok")
    transformer = ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 4, 8),
        approximator_hidden_dim=32, approximator_layers=1, approximator_num_channels=16)
    return ChromaPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae_kl(image_size, 4, use_quant_conv=False, use_post_quant_conv=False,
                    shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=_t5(tok), tokenizer=tok, transformer=transformer,
        image_encoder=None, feature_extractor=None)


def lumina2(tmp: Path, image_size: int) -> Any:
    """Lumina-Image 2.0: Gemma-2 text encoder (second-to-last hidden state), unified
    next-DiT transformer."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Lumina2Pipeline, Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tok = gemma_tokenizer(tmp / "_tok")
    transformer = Lumina2Transformer2DModel(
        sample_size=image_size // 8, patch_size=2, in_channels=4, hidden_size=32, num_layers=2,
        num_refiner_layers=1, num_attention_heads=2, num_kv_heads=1, multiple_of=16,
        norm_eps=1e-5, axes_dim_rope=(8, 4, 4), axes_lens=(1024, 64, 64), cap_feat_dim=16)
    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=2048,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)).eval()
    return Lumina2Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(),
        # Lumina2Pipeline assumes an 8x VAE (its vae_scale_factor is a constant): four blocks.
        vae=_vae_kl(image_size, 4, (32, 32, 64, 64), use_quant_conv=False,
                    use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=text_encoder, tokenizer=tok)


def cogview4(tmp: Path, image_size: int) -> Any:
    """CogView4: GLM text encoder (second-to-last hidden state), DiT with dynamic shifting."""
    from diffusers import CogView4Pipeline, CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmModel

    tok = glm_tokenizer(tmp / "_tok")
    transformer = CogView4Transformer2DModel(
        patch_size=2, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=4,
        out_channels=4, text_embed_dim=32, time_embed_dim=8, condition_dim=4,
        sample_size=image_size // 4)
    text_encoder = GlmModel(GlmConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=8, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).eval()
    return CogView4Pipeline(
        tokenizer=tok, text_encoder=text_encoder, vae=_vae_kl(image_size, 4),
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(
            base_shift=0.25, max_shift=0.75, base_image_seq_len=256, use_dynamic_shifting=True,
            time_shift_type="linear"))


BUILDERS: dict[str, Callable[[Path, int], Any]] = {
    "flux2": flux2, "flux2_klein": flux2_klein, "qwen_image": qwen_image, "z_image": z_image,
    "chroma": chroma, "lumina2": lumina2, "cogview4": cogview4, "qwen_image_edit": qwen_image_edit,
}
"""Builders of this module; the FLUX.1 Kontext and InstructPix2Pix recipes reuse
:mod:`~harness.generators.tiny`'s FLUX and SD1.5 parts and live there."""
