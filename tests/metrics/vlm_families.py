"""Tiny random image-text-to-text models of more transformers VLM families, for the VLM judge's
tests (VQAScore and question scoring): each is built from config (1-2 layer decoders, a 1-layer
vision tower of a few patches) with a word-level tokenizer that carries the family's special
tokens, and a processor with a chat template in the family's own turn format, so that
``save_pretrained`` + ``AutoModelForImageTextToText`` / ``AutoProcessor.from_pretrained(folder)``
load them like hub models.

Families here: Qwen2.5-VL, Qwen3-VL, Qwen3.5, LLaVA-NeXT, LLaVA-OneVision, InternVL, Mistral 3
(Pixtral tower), PaliGemma (no chat template: the processor writes its own prefix), Gemma 3,
Gemma 4, Idefics2, Idefics3 and SmolVLM. Qwen2-VL and LLaVA come from :mod:`harness.zoo.vlm` (the
product's toy VLM builder).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from harness.zoo.vlm import BASE_WORDS, QWEN_SPECIALS, QWEN_TEMPLATE

HIDDEN = 32
HEADS = 2


def tokenizer(words: Iterable[str], specials: Iterable[str], *, eos: str, bos: str | None = None,
              named: dict[str, str] | None = None) -> Any:
    """A word-level fast tokenizer whose special tokens (``specials``, ``bos``/``eos`` and the
    ``named`` ones a processor reads as attributes, e.g. ``image_token``) are single tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    vocab: dict[str, int] = {}
    specials = [*specials, eos, *([bos] if bos else []), *named.values()]
    for t in ("<unk>", "<pad>", *specials, *BASE_WORDS, *words):
        vocab.setdefault(t, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Punctuation()])
    extra: dict[str, Any] = {"bos_token": bos} if bos else {}
    if named:
        extra["extra_special_tokens"] = named
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token=eos,
                                  **extra)
    # Unnamed specials (turn markers): kept whole by the pre-tokenizer, ids unchanged.
    tok.add_tokens([t for t in dict.fromkeys(specials) if t not in named.values()], special_tokens=True)
    return tok


def bpe_tokenizer(cls: Any, words: Iterable[str], specials: Iterable[str], *, eos: str) -> Any:
    """A byte-level BPE tokenizer trained on ``words`` (whole words become single tokens, with and
    without the leading space), as ``cls`` (a family tokenizer class that rebuilds its BPE from
    vocab and merges on load, so a word-level one would not survive ``from_pretrained``)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    words = [*BASE_WORDS, *words]
    specials = list(dict.fromkeys(["<|endoftext|>", *specials, eos]))
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=4000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([" ".join(words), *words, *(" " + w for w in words)] * 3, trainer)
    model = json.loads(tk.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split()) for m in model["merges"]]
    return cls(vocab=model["vocab"], merges=merges, eos_token=eos,
               extra_special_tokens=[t for t in specials if t not in ("<|endoftext|>", eos)])


def _ids(tok: Any, *tokens: str) -> list[int]:
    out = [tok.convert_tokens_to_ids(t) for t in tokens]
    assert tok.unk_token_id not in out, tokens
    return out


def _decoder(tok: Any, layers: int, **kw: Any) -> dict[str, Any]:
    """A tiny decoder's text config (``model_type`` and family extras in ``kw``)."""
    return dict(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                num_hidden_layers=layers, num_attention_heads=HEADS, num_key_value_heads=HEADS,
                max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id, **kw)


def _qwen_text(tok: Any, layers: int, section: list[int], **kw: Any) -> dict[str, Any]:
    # M-RoPE: each head's rotary half split into temporal / height / width sections.
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section}
    return _decoder(tok, layers, bos_token_id=None, rope_parameters=rope, **kw)


def _qwen_ids(tok: Any) -> dict[str, int]:
    i = dict(zip(QWEN_SPECIALS, _ids(tok, *QWEN_SPECIALS), strict=True))
    return dict(image_token_id=i["<|image_pad|>"], video_token_id=i["<|video_pad|>"],
                vision_start_token_id=i["<|vision_start|>"], vision_end_token_id=i["<|vision_end|>"])


def qwen2_5_vl(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Qwen2.5-VL: windowed-attention vision tower (window = 2x2 merged patches), M-RoPE, ChatML."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    patch = 8
    tok = tokenizer(words, QWEN_SPECIALS, eos="<|im_end|>")
    cfg = Qwen2_5_VLConfig(
        text_config=_qwen_text(tok, layers, [4, 2, 2]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                           patch_size=patch, spatial_merge_size=2, temporal_patch_size=2,
                           window_size=4 * patch, fullatt_block_indexes=[1]),
        **_qwen_ids(tok))
    model = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    ip = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                               min_pixels=(2 * patch) ** 2, max_pixels=48 * 48)
    vp = Qwen2VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
    return model, Qwen2_5_VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                      chat_template=QWEN_TEMPLATE)


def qwen3_vl(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Qwen3-VL: learned + 2D-rotary vision positions, DeepStack features into the first decoder
    layers, interleaved M-RoPE, ChatML."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    patch = 8
    tok = tokenizer(words, QWEN_SPECIALS, eos="<|im_end|>")
    cfg = Qwen3VLConfig(
        text_config=_qwen_text(tok, layers, [4, 2, 2], head_dim=HIDDEN // HEADS),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                           patch_size=patch, spatial_merge_size=2, temporal_patch_size=2,
                           num_position_embeddings=64, deepstack_visual_indexes=[0]),
        **_qwen_ids(tok))
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    ip = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                               min_pixels=(2 * patch) ** 2, max_pixels=48 * 48)
    vp = Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
    return model, Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                   chat_template=QWEN_TEMPLATE)


ONEVISION_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def llava_onevision(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """LLaVA-OneVision: SigLIP tower, AnyRes tiles (a base view plus a grid of crops) with
    newline tokens, a Qwen2 decoder, ChatML with ``<image>``."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    side, patch = 32, 8
    tok = tokenizer(words, ["<|im_start|>"], eos="<|im_end|>",
                    named={"image_token": "<image>", "video_token": "<video>"})
    image_id, video_id = _ids(tok, "<image>", "<video>")
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    cfg = LlavaOnevisionConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=side, patch_size=patch),
        text_config=_decoder(tok, layers, model_type="qwen2"),
        image_token_index=image_id, video_token_index=video_id, image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9")
    model = LlavaOnevisionForConditionalGeneration(cfg).eval()
    ip = LlavaOnevisionImageProcessor(size={"height": side, "width": side}, image_grid_pinpoints=pinpoints)
    vp = LlavaOnevisionVideoProcessor(size={"height": side, "width": side})
    proc = LlavaOnevisionProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                   num_image_tokens=(side // patch) ** 2, vision_aspect_ratio="anyres_max_9",
                                   vision_feature_select_strategy="full", chat_template=ONEVISION_TEMPLATE)
    return model, proc


INTERNVL_TEMPLATE = ONEVISION_TEMPLATE.replace("<image>\n", "<IMG_CONTEXT>\n")


def internvl(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """InternVL (3/3.5, the transformers-native format): InternViT tower, pixel-shuffle to a quarter
    of the patches, ``<img><IMG_CONTEXT>...</img>`` per tile, a Qwen2 decoder, ChatML."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    side, patch = 32, 8
    tok = tokenizer(words, ["<|im_start|>"], eos="<|im_end|>",
                    named={"start_image_token": "<img>", "end_image_token": "</img>",
                           "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    seq = (side // patch) ** 2 // 4
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=[side, side], patch_size=[patch, patch]),
        text_config=_decoder(tok, layers, model_type="qwen2"),
        image_token_id=_ids(tok, "<IMG_CONTEXT>")[0], image_seq_length=seq, downsample_ratio=0.5)
    model = InternVLForConditionalGeneration(cfg).eval()
    ip = GotOcr2ImageProcessor(size={"height": side, "width": side}, crop_to_patches=True, min_patches=1,
                               max_patches=4)
    vp = InternVLVideoProcessor(size={"height": side, "width": side})
    proc = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_length=seq,
                             chat_template=INTERNVL_TEMPLATE)
    return model, proc


def paligemma(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """PaliGemma: SigLIP tower, a linear projector, a Gemma decoder; no chat template (the processor
    writes ``<image>...<bos>question\\n``, the prefix attended bidirectionally)."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    side, patch = 32, 8
    tok = tokenizer(words, [], eos="<eos>", bos="<bos>", named={"image_token": "<image>"})
    seq = (side // patch) ** 2
    cfg = PaliGemmaConfig(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=side, patch_size=patch,
                           projection_dim=HIDDEN, num_image_tokens=seq),
        text_config=_decoder(tok, layers, model_type="gemma", head_dim=HIDDEN // HEADS,
                             bos_token_id=tok.bos_token_id),
        image_token_index=_ids(tok, "<image>")[0], projection_dim=HIDDEN, hidden_size=HIDDEN,
        vocab_size=len(tok))
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    ip = SiglipImageProcessor(size={"height": side, "width": side})
    ip.image_seq_length = seq
    return model, PaliGemmaProcessor(image_processor=ip, tokenizer=tok)


GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{% if message['role'] == 'assistant' %}model{% else %}{{ message['role'] }}{% endif %}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<start_of_image>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def gemma3(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Gemma 3: SigLIP tower pooled to a fixed square of soft tokens between
    ``<start_of_image>``/``<end_of_image>``, sliding + global attention layers, Gemma turns."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    side, patch, per_image = 32, 8, 4
    tok = tokenizer(words, ["<start_of_turn>", "<end_of_turn>"], eos="<eos>", bos="<bos>",
                    named={"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                           "eoi_token": "<end_of_image>"})
    image_id, boi, eoi = _ids(tok, "<image_soft_token>", "<start_of_image>", "<end_of_image>")
    cfg = Gemma3Config(
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=side, patch_size=patch),
        text_config=_decoder(tok, layers, head_dim=HIDDEN // HEADS, query_pre_attn_scalar=HIDDEN // HEADS,
                             bos_token_id=tok.bos_token_id, sliding_window=8,
                             # Gemma 3 interleaves local (sliding) and global layers; both kinds here.
                             layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                                          for i in range(layers)]),
        mm_tokens_per_image=per_image, boi_token_index=boi, eoi_token_index=eoi, image_token_index=image_id)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    ip = Gemma3ImageProcessor(size={"height": side, "width": side}, do_pan_and_scan=False)
    return model, Gemma3Processor(image_processor=ip, tokenizer=tok, image_seq_length=per_image,
                                  chat_template=GEMMA3_TEMPLATE)


IDEFICS3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}: {{ message['content'] }}{% else %}:"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% elif c['type'] == 'text' %} {{ c['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}")
IDEFICS3_SPECIALS = ("<|begin_of_text|>", "<fake_token_around_image>", "<global-img>", "User", "Assistant",
                     *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)))


def _idefics(family: str, words: Iterable[str], layers: int) -> tuple[Any, Any]:
    import transformers as tf

    side, patch, scale = 32, 8, 2
    cls = {"idefics3": ("Idefics3Config", "Idefics3ForConditionalGeneration", "Idefics3ImageProcessor",
                        "Idefics3Processor"),
           "smolvlm": ("SmolVLMConfig", "SmolVLMForConditionalGeneration", "SmolVLMImageProcessor",
                       "SmolVLMProcessor")}[family]
    config_cls, model_cls, ip_cls, proc_cls = (getattr(tf, c) for c in cls)
    tok = tokenizer(words, IDEFICS3_SPECIALS, eos="<end_of_utterance>",
                    named={"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                           "global_image_token": "<global-img>",
                           "end_of_utterance_token": "<end_of_utterance>"})
    seq = (side // patch) ** 2 // scale**2
    cfg = config_cls(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=side, patch_size=patch),
        text_config=_decoder(tok, layers, model_type="llama"),
        image_token_id=_ids(tok, "<image>")[0], scale_factor=scale, pad_token_id=tok.pad_token_id)
    model = model_cls(cfg).eval()
    # Images up to twice the tile side: split into a grid of tiles plus a global view.
    ip = ip_cls(size={"longest_edge": 2 * side}, max_image_size={"longest_edge": side},
                do_image_splitting=True)
    extra: dict[str, Any] = {}
    if family == "smolvlm":
        extra["video_processor"] = tf.SmolVLMVideoProcessor(size={"longest_edge": side},
                                                            max_image_size={"longest_edge": side})
    return model, proc_cls(image_processor=ip, tokenizer=tok, image_seq_len=seq,
                           chat_template=IDEFICS3_TEMPLATE, **extra)


def idefics3(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Idefics3: SigLIP-style tower on a global view plus a grid of tiles (row/col tokens), pixel
    shuffle, a Llama decoder, "User:<image> ...<end_of_utterance>\\nAssistant:"."""
    return _idefics("idefics3", words, layers)


def smolvlm(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """SmolVLM (Idefics3's architecture and prompt format with its own processor classes)."""
    return _idefics("smolvlm", words, layers)


def qwen3_5(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Qwen3.5: Qwen3-VL's vision tower and processor over a hybrid decoder (Gated DeltaNet
    linear-attention layers and full-attention layers; one of each here), ChatML. Its tokenizer
    class rebuilds a byte-level BPE on load, so the tokenizer here is a small trained BPE."""
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3_5Tokenizer,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    patch = 8
    tok = bpe_tokenizer(Qwen3_5Tokenizer, words, QWEN_SPECIALS, eos="<|im_end|>")
    head = HIDDEN // HEADS
    cfg = Qwen3_5Config(
        text_config=_qwen_text(tok, layers, [4, 2, 2], head_dim=head, linear_key_head_dim=head,
                               linear_value_head_dim=head, linear_num_key_heads=HEADS,
                               linear_num_value_heads=HEADS,
                               layer_types=["linear_attention" if i % 2 == 0 else "full_attention"
                                            for i in range(layers)]),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                           patch_size=patch, spatial_merge_size=2, temporal_patch_size=2,
                           num_position_embeddings=64),
        **_qwen_ids(tok))
    model = Qwen3_5ForConditionalGeneration(cfg).eval()
    ip = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                               min_pixels=(2 * patch) ** 2, max_pixels=48 * 48)
    vp = Qwen3VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
    return model, Qwen3VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                   chat_template=QWEN_TEMPLATE)


LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}[INST] {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} [/INST]{% endif %}{% endfor %}")


def llava_next(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """LLaVA-NeXT (1.6): CLIP tower on a base view plus AnyRes crops with newline tokens, a
    Mistral decoder, "[INST] <image>\\n... [/INST]"."""
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    side, patch = 32, 8
    tok = tokenizer(words, ["[INST]", "[/INST]"], eos="</s>", bos="<s>", named={"image_token": "<image>"})
    pinpoints = [[side, side], [side, 2 * side], [2 * side, side], [2 * side, 2 * side]]
    cfg = LlavaNextConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, image_size=side, patch_size=patch,
                           projection_dim=32),
        text_config=_decoder(tok, layers, model_type="mistral", bos_token_id=tok.bos_token_id),
        image_token_index=_ids(tok, "<image>")[0], image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="default", vision_feature_layer=-1)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    ip = LlavaNextImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                 image_grid_pinpoints=pinpoints)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=LLAVA_NEXT_TEMPLATE)
    return model, proc


MISTRAL3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}[INST]{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}[IMG]"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %}[/INST]{% endif %}{% endfor %}")


def mistral3(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Mistral 3 (Mistral Small 3.1+): a Pixtral tower at native resolution (2D RoPE,
    ``[IMG_BREAK]`` per row, ``[IMG_END]``), patches merged 2x2, a Mistral decoder, "[INST]...[/INST]"."""
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        PixtralImageProcessor,
        PixtralProcessor,
    )

    patch, merge = 4, 2
    tok = tokenizer(words, ["[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"], eos="</s>", bos="<s>")
    cfg = Mistral3Config(
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=48, patch_size=patch, head_dim=16),
        text_config=_decoder(tok, layers, model_type="mistral", bos_token_id=tok.bos_token_id,
                             head_dim=HIDDEN // HEADS),
        image_token_index=_ids(tok, "[IMG]")[0], spatial_merge_size=merge, vision_feature_layer=-1)
    model = Mistral3ForConditionalGeneration(cfg).eval()
    ip = PixtralImageProcessor(size={"longest_edge": 48}, patch_size={"height": patch * merge,
                                                                      "width": patch * merge})
    return model, PixtralProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                                   spatial_merge_size=merge, chat_template=MISTRAL3_TEMPLATE)


def idefics2(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Idefics2: SigLIP-style tower, a perceiver resampler to a fixed number of latents, a Mistral
    decoder, Idefics3's "User:<image> ...<end_of_utterance>\\nAssistant:" format."""
    from transformers import (
        Idefics2Config,
        Idefics2ForConditionalGeneration,
        Idefics2ImageProcessor,
        Idefics2Processor,
    )

    side, patch, latents = 32, 8, 4
    tok = tokenizer(words, IDEFICS3_SPECIALS, eos="<end_of_utterance>",
                    named={"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>",
                           "end_of_utterance_token": "<end_of_utterance>"})
    cfg = Idefics2Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=side, patch_size=patch),
        perceiver_config=dict(hidden_size=HIDDEN, rms_norm_eps=1e-6, hidden_act="silu",
                              resampler_n_latents=latents, resampler_depth=1,
                              resampler_n_heads=2, resampler_head_dim=16, num_key_value_heads=2),
        text_config=_decoder(tok, layers, model_type="mistral"),
        image_token_id=_ids(tok, "<image>")[0], pad_token_id=tok.pad_token_id)
    model = Idefics2ForConditionalGeneration(cfg).eval()
    ip = Idefics2ImageProcessor(size={"shortest_edge": side, "longest_edge": side}, do_image_splitting=True)
    return model, Idefics2Processor(image_processor=ip, tokenizer=tok, image_seq_len=latents,
                                    chat_template=IDEFICS3_TEMPLATE)


GEMMA4_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|turn>"
    "{% if message['role'] == 'assistant' %}model{% else %}{{ message['role'] }}{% endif %}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<|image|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<turn|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|turn>model\n{% endif %}")


def gemma4(words: Iterable[str], layers: int = 2) -> tuple[Any, Any]:
    """Gemma 4: a vision tower with learned 2D positions at (capped) native aspect ratio, patches
    pooled to a soft-token budget, per-layer input embeddings, sliding + global layers; no audio
    tower here (the processor still takes its audio feature extractor)."""
    from transformers import (
        Gemma4AudioFeatureExtractor,
        Gemma4Config,
        Gemma4ForConditionalGeneration,
        Gemma4ImageProcessor,
        Gemma4Processor,
        Gemma4VideoProcessor,
    )

    patch, pool, soft = 4, 2, 70
    tok = tokenizer(words, ["<|turn>", "<turn|>"], eos="<eos>", bos="<bos>",
                    named={"image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
                           "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>"})
    ids = dict(zip(("image", "boi", "eoi", "audio", "boa", "eoa"),
                   _ids(tok, "<|image|>", "<|image>", "<image|>", "<|audio|>", "<|audio>", "<audio|>"),
                   strict=True))
    cfg = Gemma4Config(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           num_key_value_heads=2, head_dim=16, patch_size=patch, pooling_kernel_size=pool,
                           position_embedding_size=64),
        text_config=_decoder(tok, layers, head_dim=HIDDEN // HEADS, bos_token_id=tok.bos_token_id,
                             sliding_window=8, hidden_size_per_layer_input=8,
                             vocab_size_per_layer_input=len(tok),
                             layer_types=["sliding_attention" if i % 2 == 0 else "full_attention"
                                          for i in range(layers)]),
        audio_config=None, boi_token_id=ids["boi"], eoi_token_id=ids["eoi"], image_token_id=ids["image"],
        video_token_id=ids["image"], boa_token_id=ids["boa"], eoa_token_index=ids["eoa"],
        audio_token_id=ids["audio"])
    model = Gemma4ForConditionalGeneration(cfg).eval()
    ip = Gemma4ImageProcessor(patch_size=patch, max_soft_tokens=soft, pooling_kernel_size=pool)
    vp = Gemma4VideoProcessor(patch_size=patch, pooling_kernel_size=pool)
    return model, Gemma4Processor(feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=ip,
                                  tokenizer=tok, video_processor=vp, image_seq_length=soft,
                                  chat_template=GEMMA4_TEMPLATE)


FAMILIES = {"qwen2_5_vl": qwen2_5_vl, "qwen3_vl": qwen3_vl, "llava_onevision": llava_onevision,
            "internvl": internvl, "paligemma": paligemma, "gemma3": gemma3, "idefics3": idefics3,
            "smolvlm": smolvlm, "qwen3_5": qwen3_5, "llava_next": llava_next, "mistral3": mistral3,
            "idefics2": idefics2, "gemma4": gemma4}
# PaliGemma has no chat template: its processor builds the prefix itself (settings chat=false).
NO_CHAT = frozenset({"paligemma"})


def build(family: str, words: Iterable[str], *, seed: int = 0, layers: int = 2) -> tuple[Any, Any]:
    """A random-weight (model, processor) pair of one family (seeded)."""
    import torch

    torch.manual_seed(seed)
    return FAMILIES[family](list(words), layers)
