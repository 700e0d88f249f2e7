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
    clip_tokenizer,
    gemma_tokenizer,
    glm_image_processor,
    glm_tokenizer,
    llama3_tokenizer,
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
    "sana_sprint": "SanaSprintPipeline",
    "bria": "BriaPipeline",
    "kandinsky5": "Kandinsky5T2IPipeline",
    "hunyuan_image": "HunyuanImagePipeline",
    "hidream": "HiDreamImagePipeline",
    "qwen_image_21": "QwenImage21Pipeline",
    "ovis_image": "OvisImagePipeline",
    "nucleus_moe": "NucleusMoEImagePipeline",
    "glm_image": "GlmImagePipeline",
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
    into the text encoder's prompt.

    The pipeline resizes every source to about 1 MP before the VAE, whatever the output size, so
    the VAE here downsamples 16x (four stages) from 4 channels: the source's latents are 1,024
    tokens instead of Qwen-Image's 16,384 at 4x, and one edit takes seconds, not a minute."""
    from diffusers import AutoencoderKLQwenImage, QwenImageEditPipeline

    tok = qwen_tokenizer(tmp / "_tok")
    parts = _qwen_image_parts(image_size)
    z_dim = parts["vae"].config.z_dim
    parts["vae"] = AutoencoderKLQwenImage(
        base_dim=4, z_dim=z_dim, dim_mult=[1, 2, 4, 4, 4], num_res_blocks=1,
        temperal_downsample=[False, True, True, True], latents_mean=[0.0] * z_dim,
        latents_std=[1.0] * z_dim)
    return QwenImageEditPipeline(text_encoder=_qwen25_vl(tok), tokenizer=tok,
                                 processor=_qwen2vl_processor(tok), **parts)


def _qwen2vl_processor(tok: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": 56 * 56 * 4}
    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tok,
                            video_processor=Qwen2VLVideoProcessor(**pixels),
                            chat_template=tok.chat_template)


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


def sana_sprint(tmp: Path, image_size: int) -> Any:
    """SANA-Sprint: linear-attention Sana transformer with QK norm and a guidance embedding
    (distilled guidance is a model input), Gemma-2 text encoder fed a long instruction prefix,
    deep-compression autoencoder (DC-AE), sCM scheduler."""
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import Gemma2Config, Gemma2Model

    # The instruction prefix the pipeline puts before every prompt is ~1,000 byte tokens.
    tok = gemma_tokenizer(tmp / "_tok", model_max_length=8192)
    text_encoder = Gemma2Model(Gemma2Config(
        vocab_size=len(tok), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=8192,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id)).eval()
    # sample_size 32 is the value the pipeline's resolution binning accepts (as the real model).
    transformer = SanaTransformer2DModel(
        patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_attention_heads=2,
        attention_head_dim=8, num_cross_attention_heads=2, cross_attention_head_dim=8,
        cross_attention_dim=16, caption_channels=16, sample_size=32,
        qk_norm="rms_norm_across_heads", guidance_embeds=True)
    blocks = ("ResBlock", "ResBlock", "EfficientViTBlock")
    vae = AutoencoderDC(  # three blocks: 4x, so 64 px is 16x16 latents
        in_channels=3, latent_channels=4, attention_head_dim=2, encoder_block_types=blocks,
        decoder_block_types=blocks, encoder_block_out_channels=(8, 16, 16),
        decoder_block_out_channels=(8, 16, 16), encoder_qkv_multiscales=((), (), (5,)),
        decoder_qkv_multiscales=((), (), (5,)), encoder_layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1), downsample_block_type="conv",
        upsample_block_type="interpolate", decoder_norm_types="rms_norm",
        decoder_act_fns="silu", scaling_factor=0.41407)
    return SanaSprintPipeline(tokenizer=tok, text_encoder=text_encoder, vae=vae,
                              transformer=transformer, scheduler=SCMScheduler())


def bria(tmp: Path, image_size: int) -> Any:
    """BRIA 3.2: FLUX-shaped transformer without pooled text or guidance embeddings, T5 only
    (prompts zero-padded), real classifier-free guidance with negative prompts, an SDXL-style
    VAE without shift factor (the pipeline keeps it in float32), and the model's own
    dynamically shifted flow-matching schedule."""
    from diffusers import BriaPipeline, BriaTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tok = t5_tokenizer(tmp / "_tok")
    transformer = BriaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[0, 4, 4])
    return BriaPipeline(
        transformer=transformer, text_encoder=_t5(tok), tokenizer=tok,
        vae=_vae_kl(image_size, 4, scaling_factor=0.13025),
        scheduler=FlowMatchEulerDiscreteScheduler(  # briaai/BRIA-3.2's scheduler_config.json
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096),
        image_encoder=None, feature_extractor=None)


def kandinsky5(tmp: Path, image_size: int) -> Any:
    """Kandinsky 5.0 Image Lite: cross-attention DiT fed Qwen2.5-VL hidden states (through a
    Qwen2-VL processor) and a pooled CLIP embedding, 8x VAE, real classifier-free guidance.

    The pipeline snaps every size to its nearest trained resolution (1024x1024, 1280x768 ...),
    so even this tiny model draws at about a megapixel: the VAE's first blocks are kept narrow.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = qwen_tokenizer(tmp / "_tok")
    clip_tok = clip_tokenizer(tmp / "_tok" / "clip")  # scratch folders are removed after saving
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=clip_tok.bos_token_id,
        eos_token_id=clip_tok.eos_token_id, pad_token_id=clip_tok.pad_token_id)).eval()
    transformer = Kandinsky5Transformer3DModel(
        in_visual_dim=4, out_visual_dim=4, in_text_dim=16, in_text_dim2=32, time_dim=16,
        patch_size=(1, 2, 2), model_dim=32, ff_dim=64, num_text_blocks=1, num_visual_blocks=2,
        axes_dims=(8, 4, 4))
    return Kandinsky5T2IPipeline(
        transformer=transformer,
        # The pipeline's VAE scale is a constant 8: four blocks.
        vae=_vae_kl(image_size, 4, (4, 4, 8, 8), norm_num_groups=4),
        text_encoder=_qwen25_vl(tok), tokenizer=_qwen2vl_processor(tok), text_encoder_2=clip,
        tokenizer_2=clip_tok, scheduler=FlowMatchEulerDiscreteScheduler())


def hunyuan_image(tmp: Path, image_size: int) -> Any:
    """HunyuanImage 2.1: dual-stream DiT fed Qwen2.5-VL hidden states plus ByT5 glyph
    embeddings of the prompt's quoted text, guided by the pipeline's guider components
    (adaptive projected guidance mixed with CFG; a separate one for prompts with text),
    HunyuanImage VAE."""
    from diffusers import (
        AutoencoderKLHunyuanImage,
        FlowMatchEulerDiscreteScheduler,
        HunyuanImagePipeline,
        HunyuanImageTransformer2DModel,
    )
    from diffusers.guiders import AdaptiveProjectedMixGuidance
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    tok = qwen_tokenizer(tmp / "_tok")
    byt5_tok = ByT5Tokenizer()  # bytes: needs no vocabulary file
    byt5 = T5EncoderModel(T5Config(
        vocab_size=len(byt5_tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=byt5_tok.pad_token_id,
        eos_token_id=byt5_tok.eos_token_id, decoder_start_token_id=0)).eval()
    transformer = HunyuanImageTransformer2DModel(
        in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_single_layers=1, num_refiner_layers=1, patch_size=(1, 1), guidance_embeds=False,
        text_embed_dim=16, text_embed_2_dim=16, rope_axes_dim=(4, 4))
    vae = AutoencoderKLHunyuanImage(  # three blocks: 4x (the real one compresses 32x)
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64, 64),
        layers_per_block=1, spatial_compression_ratio=4, sample_size=image_size,
        scaling_factor=0.75289)
    # The projected guidance starts at step 1 (not 5) so a two-step run exercises it.
    return HunyuanImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=_qwen25_vl(tok),
        tokenizer=tok, text_encoder_2=byt5, tokenizer_2=byt5_tok, transformer=transformer,
        guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=1),
        ocr_guider=AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=1))


HIDREAM_LLAMA = "llama"
"""Subfolder of the tiny HiDream-I1 model holding its stand-in Llama text encoder and
tokenizer. As on the hub, the pipeline folder itself leaves ``text_encoder_4`` and
``tokenizer_4`` out; a config passes them in with ``options.components`` pointing here."""


def hidream(tmp: Path, image_size: int) -> Any:
    """HiDream-I1: sparse mixture-of-experts DiT fed two pooled CLIP-G/L embeddings, T5 hidden
    states and every layer of a Llama-3.1 text encoder, real classifier-free guidance.

    The Llama (``text_encoder_4``, ``tokenizer_4``) is saved apart, in :data:`HIDREAM_LLAMA`,
    and left out of the pipeline: the real one is Meta's gated Llama-3.1-8B-Instruct, which
    users download separately. The pipeline scales every size to the area of 128x128 latents
    (1024 px with the real 8x VAE; 512 px with this 4x one).
    """
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        HiDreamImagePipeline,
        HiDreamImageTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, LlamaConfig, LlamaForCausalLM

    clip_tok = clip_tokenizer(tmp / "_tok" / "clip", max_length=248)
    t5_tok = t5_tokenizer(tmp / "_tok" / "t5")

    def clip() -> Any:  # HiDream's CLIPs take 248 positions (the pipeline pads to 128)
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=len(clip_tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=248, projection_dim=16,
            bos_token_id=clip_tok.bos_token_id, eos_token_id=clip_tok.eos_token_id,
            pad_token_id=clip_tok.pad_token_id)).eval()

    llama_tok = llama3_tokenizer(tmp / HIDREAM_LLAMA)
    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(llama_tok), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=1024,
        bos_token_id=llama_tok.bos_token_id, eos_token_id=llama_tok.eos_token_id)).eval()
    from transformers.utils import logging as transformers_logging

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # no per-shard write bar
    try:
        llama.save_pretrained(str(tmp / HIDREAM_LLAMA), safe_serialization=True)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, num_single_layers=1,
        attention_head_dim=8, num_attention_heads=4, caption_channels=[32, 16], text_emb_dim=32,
        num_routed_experts=4, num_activated_experts=2, axes_dims_rope=(4, 2, 2),
        max_resolution=(128, 128), llama_layers=(0, 1)).eval()
    return HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae_kl(image_size, 4, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=clip(), tokenizer=clip_tok, text_encoder_2=clip(), tokenizer_2=clip_tok,
        text_encoder_3=_t5(t5_tok), tokenizer_3=t5_tok, text_encoder_4=None, tokenizer_4=None,
        transformer=transformer)


def _qwen3_vl(tok: Any, layers: int = 2) -> Any:
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = tok.convert_tokens_to_ids
    return Qwen3VLForConditionalGeneration(Qwen3VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 16,
                     "num_hidden_layers": layers, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "head_dim": 8, "pad_token_id": tok.pad_token_id,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                         "mrope_section": [2, 1, 1], "mrope_interleaved": True}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "patch_size": 16, "out_hidden_size": 16, "num_position_embeddings": 16,
                       "deepstack_visual_indexes": [0]},
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True)).eval()


def _qwen3vl_processor(tok: Any) -> Any:
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    pixels = {"min_pixels": 32 * 32 * 4, "max_pixels": 64 * 64 * 4}
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(patch_size=16, merge_size=2, **pixels),
        video_processor=Qwen3VLVideoProcessor(patch_size=16, merge_size=2), tokenizer=tok,
        chat_template=tok.chat_template)


def qwen_image_21(tmp: Path, image_size: int) -> Any:
    """Qwen-Image 2.1: single-stream block-causal DiT fed Qwen3-VL hidden states (through a
    Qwen3-VL processor, which also carries condition images for editing), RGBA VAE with 16x
    compression; true classifier-free guidance only with a negative prompt."""
    from diffusers import (
        AutoencoderKLQwenImage21,
        FlowMatchEulerDiscreteScheduler,
        QwenImage21Pipeline,
        QwenImage21Transformer2DModel,
    )

    tok = qwen_tokenizer(tmp / "_tok")
    z_dim = 4
    transformer = QwenImage21Transformer2DModel(
        patch_size=1, in_channels=z_dim, out_channels=z_dim, num_layers=1, attention_head_dim=16,
        num_attention_heads=2, context_in_dim=16, axes_dims_rope=(8, 4, 4))
    vae = AutoencoderKLQwenImage21(  # five levels: the pipeline's fixed 16x
        base_dim=8, decoder_base_dim=8, z_dim=z_dim, dim_mult=[1, 1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False] * 4, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    return QwenImage21Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                               text_encoder=_qwen3_vl(tok), processor=_qwen3vl_processor(tok),
                               transformer=transformer)


def nucleus_moe(tmp: Path, image_size: int) -> Any:
    """NucleusMoE-Image: mixture-of-experts DiT (dense first and last blocks) fed the
    eighth-from-last hidden state of a Qwen3-VL encoder, real classifier-free guidance,
    Qwen-Image VAE."""
    import torch
    from diffusers import (
        NucleusMoEImagePipeline,
        NucleusMoEImageTransformer2DModel,
    )

    tok = qwen_tokenizer(tmp / "_tok")
    transformer = NucleusMoEImageTransformer2DModel(  # five blocks: the fourth is the MoE one
        patch_size=2, in_channels=16, out_channels=4, num_layers=5, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=16, axes_dims_rope=(8, 4, 4), num_experts=4,
        moe_intermediate_dim=16, capacity_factors=2.0,  # expert choice: factor <= experts
        mlp_ratio=6.0)  # dense MLPs round their width down to 128s: 32 * 6 * 2/3 = 128
    with torch.no_grad():  # the experts' weights are created with torch.empty: fix them
        for name, param in transformer.named_parameters():
            if ".experts." in name:
                param.normal_(0.0, 0.02)
    parts = _qwen_image_parts(image_size)
    parts.pop("transformer")
    return NucleusMoEImagePipeline(
        transformer=transformer, text_encoder=_qwen3_vl(tok, layers=9),  # reads hidden_states[-8]
        processor=_qwen3vl_processor(tok), **parts)


def ovis_image(tmp: Path, image_size: int) -> Any:
    """Ovis-Image: FLUX-shaped MMDiT fed Qwen3 hidden states of a chat-templated prompt (the
    Ovis 2.5 language model), real classifier-free guidance, FLUX.1 VAE."""
    from diffusers import FlowMatchEulerDiscreteScheduler, OvisImagePipeline, OvisImageTransformer2DModel
    from transformers import Qwen3Model

    tok = qwen_tokenizer(tmp / "_tok")
    transformer = OvisImageTransformer2DModel(
        patch_size=1, in_channels=16, out_channels=16, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
        axes_dims_rope=(4, 4, 8))
    return OvisImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae_kl(image_size, 4, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoder=Qwen3Model(_qwen3_config(tok, 2)).eval(), tokenizer=tok,
        transformer=transformer)


def glm_image(tmp: Path, image_size: int) -> Any:
    """GLM-Image: a GLM vision-language model samples the image as prior tokens (a 16x16
    preview grid, then the target grid), which a CogView4-style DiT decodes with ByT5 glyph
    embeddings of the prompt's quoted text; 8x VAE with latent mean and std."""
    from diffusers import FlowMatchEulerDiscreteScheduler, GlmImagePipeline, GlmImageTransformer2DModel
    from transformers import (
        ByT5Tokenizer,
        GlmImageConfig,
        GlmImageForConditionalGeneration,
        T5Config,
        T5EncoderModel,
    )

    codes = 64
    processor = glm_image_processor(tmp / "_tok", codes)
    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    # The language model's head covers the image tokens only (ids 0..codes+1); its eos is the
    # text end, which it cannot sample, so generation always runs the planned length.
    vl = GlmImageForConditionalGeneration(GlmImageConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "vision_vocab_size": codes + 2, "pad_token_id": tok.pad_token_id,
                     "eos_token_id": tok.eos_token_id,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                         "mrope_section": [2, 1, 1]}},
        vision_config={"depth": 1, "hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                       "image_size": image_size, "patch_size": 16},
        vq_config={"embed_dim": 16, "num_embeddings": codes, "latent_channels": 16},
        image_token_id=ids("<|image|>"), image_start_token_id=codes,
        image_end_token_id=codes + 1)).eval()
    byt5_tok = ByT5Tokenizer()  # bytes: needs no vocabulary file
    byt5 = T5EncoderModel(T5Config(
        vocab_size=len(byt5_tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=byt5_tok.pad_token_id,
        eos_token_id=byt5_tok.eos_token_id, decoder_start_token_id=0)).eval()
    transformer = GlmImageTransformer2DModel(  # prior ids may be any sampled image token
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, text_embed_dim=16, time_embed_dim=16, condition_dim=8,
        prior_vq_quantizer_codebook_size=codes + 2)
    return GlmImagePipeline(
        tokenizer=byt5_tok, processor=processor, text_encoder=byt5, vision_language_encoder=vl,
        # Four blocks: the prior grid (32 px a token, upsampled 2x) meets 8x latents in 2x2 patches.
        vae=_vae_kl(image_size, 4, (16, 16, 32, 32), norm_num_groups=16,
                    latents_mean=[0.0] * 4, latents_std=[1.0] * 4),
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler())


BUILDERS: dict[str, Callable[[Path, int], Any]] = {
    "flux2": flux2, "flux2_klein": flux2_klein, "qwen_image": qwen_image, "z_image": z_image,
    "chroma": chroma, "lumina2": lumina2, "cogview4": cogview4, "qwen_image_edit": qwen_image_edit,
    "sana_sprint": sana_sprint, "bria": bria, "kandinsky5": kandinsky5,
    "hunyuan_image": hunyuan_image, "hidream": hidream, "qwen_image_21": qwen_image_21,
    "ovis_image": ovis_image, "nucleus_moe": nucleus_moe, "glm_image": glm_image,
}
"""Builders of this module; the FLUX.1 Kontext and InstructPix2Pix recipes reuse
:mod:`~harness.generators.tiny`'s FLUX and SD1.5 parts and live there."""
