"""Offline tokenizers and processors for the tiny random pipelines of today's model families.

The real families encode prompts with large language models (Qwen2.5-VL, Qwen3, Qwen3-VL,
Mistral-3, Gemma-2, GLM, Llama 3) and CLIP, whose tokenizers are hub downloads. The tiny
pipelines get byte-level BPE tokenizers with no merges instead (every byte of the UTF-8 prompt
is one token, so nothing is unknown), wrapped in the tokenizer class each pipeline's
``__init__`` names and carrying the special tokens and a chat template in the family's own
shape: the pipeline code (chat templates, dropped template prefixes, padding to
``max_length``) runs unchanged.

Everything heavy is imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
                 "<think>", "</think>")
"""Qwen2/2.5-VL/3 special tokens the pipelines' templates and the VL processors name."""

# Qwen's template in its essentials: text parts of structured content, the generation prompt
# and Qwen3's empty thinking block when thinking is switched off.
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)

MISTRAL_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]",
                    "[/SYSTEM_PROMPT]", "[IMG]", "[IMG_BREAK]", "[IMG_END]")
"""Mistral-3 (Pixtral) special tokens: start/end of text, instruction and image markers."""

MISTRAL_CHAT_TEMPLATE = (
    "<s>{% for m in messages %}{% set ns = namespace(text='') %}"
    "{% if m['content'] is string %}{% set ns.text = m['content'] %}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{% set ns.text = ns.text + c['text'] %}"
    "{% endif %}{% endfor %}{% endif %}"
    "{% if m['role'] == 'system' %}[SYSTEM_PROMPT]{{ ns.text }}[/SYSTEM_PROMPT]"
    "{% elif m['role'] == 'user' %}[INST]{{ ns.text }}[/INST]"
    "{% else %}{{ ns.text }}</s>{% endif %}{% endfor %}"
)

GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
"""Gemma special tokens (ids 0-3 as in Gemma: pad, eos, bos, unk)."""


def _byte_level_backend(specials: tuple[str, ...]) -> Any:
    """A ``tokenizers`` byte-level BPE with the 256 byte symbols and no merges; the special
    tokens come first (ids 0..n-1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {t: i for i, t in enumerate(specials)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(specials))
    return backend


def qwen_tokenizer(folder: str | Path) -> Any:
    """A ``Qwen2Tokenizer`` (the class Qwen-Image, Z-Image and FLUX.2 [klein] name) over bytes,
    with Qwen's special tokens and chat template, saved to and reloaded from ``folder``."""
    from transformers import Qwen2Tokenizer

    tok = Qwen2Tokenizer(tokenizer_object=_byte_level_backend(QWEN_SPECIALS),
                         eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
                         bos_token=None, model_max_length=1024)
    tok.chat_template = QWEN_CHAT_TEMPLATE
    tok.save_pretrained(str(folder))
    return Qwen2Tokenizer.from_pretrained(str(folder))


def gemma_tokenizer(folder: str | Path, model_max_length: int = 1024) -> Any:
    """A ``GemmaTokenizer`` over bytes (Lumina-Image 2 and Sana take Gemma-2's tokenizer);
    it prepends ``<bos>`` as Gemma does. SANA-Sprint prefixes every prompt with a long
    instruction (over 1,000 bytes), so it asks for a longer ``model_max_length``."""
    from tokenizers import processors
    from transformers import GemmaTokenizer

    backend = _byte_level_backend(GEMMA_SPECIALS)
    bos = backend.token_to_id("<bos>")
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)])
    tok = GemmaTokenizer(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                         pad_token="<pad>", unk_token="<unk>",
                         model_max_length=model_max_length)
    tok.save_pretrained(str(folder))
    return GemmaTokenizer.from_pretrained(str(folder))


def glm_tokenizer(folder: str | Path) -> Any:
    """A fast tokenizer over bytes for CogView4's GLM text encoder (the pipeline loads it
    through ``AutoTokenizer``); pads on the left and starts with ``[gMASK]<sop>`` as GLM-4's
    tokenizer does."""
    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    specials = ("<|endoftext|>", "[gMASK]", "<sop>")
    backend = _byte_level_backend(specials)
    # GLM-4 starts every text with [gMASK]<sop> (so an empty negative prompt is not empty).
    backend.post_processor = processors.TemplateProcessing(
        single="[gMASK] <sop> $A", pair="[gMASK] <sop> $A $B",
        special_tokens=[("[gMASK]", 1), ("<sop>", 2)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend,
                                  eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  padding_side="left", model_max_length=1024)
    tok.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


def mistral_processor(folder: str | Path) -> Any:
    """A ``PixtralProcessor`` (FLUX.2 [dev] loads Mistral-3's processor through
    ``AutoProcessor``): a byte-level tokenizer with Mistral's instruction and image tokens and
    a chat template of Mistral's shape, plus a Pixtral image processor."""
    from transformers import AutoProcessor, LlamaTokenizerFast, PixtralImageProcessor, PixtralProcessor

    tok = LlamaTokenizerFast(tokenizer_object=_byte_level_backend(MISTRAL_SPECIALS),
                             bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                             unk_token="<unk>", add_bos_token=False, add_eos_token=False,
                             model_max_length=1024)
    proc = PixtralProcessor(image_processor=PixtralImageProcessor(patch_size=6),
                            tokenizer=tok, patch_size=6, chat_template=MISTRAL_CHAT_TEMPLATE)
    proc.save_pretrained(str(folder))
    return AutoProcessor.from_pretrained(str(folder))


def t5_tokenizer(folder: str | Path) -> Any:
    """A character-level ``T5TokenizerFast`` (printable ASCII, SentencePiece-style word starts)
    built from a ``tokenizers`` Unigram model: FLUX.1, Chroma and Kontext want a T5 tokenizer,
    and the real vocabulary is a hub download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    chars = [chr(i) for i in range(32, 127)]
    vocab = ([("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in chars]
             + [("\u2581" + c, -1.0) for c in chars] + [("\u2581", -2.0)])
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    tok = T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", pad_token="<pad>",
                          unk_token="<unk>", extra_ids=0, model_max_length=512)
    tok.save_pretrained(str(folder))
    return T5TokenizerFast.from_pretrained(str(folder))


def write_byte_vocab(folder: str | Path) -> Path:
    """Write a merge-free CLIP BPE vocabulary (``vocab.json`` + ``merges.txt``) to ``folder``.

    Ids: 0-255 the bytes inside a word, 256-511 the same bytes ending a word (``</w>``),
    512 ``<|startoftext|>``, 513 ``<|endoftext|>`` (also padding and unknown).
    """
    import json

    from harness.toyworld.vocab import byte_chars

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder


def clip_tokenizer(folder: str | Path, max_length: int = 77) -> Any:
    """A byte-level ``CLIPTokenizer`` (merge-free BPE over the 256 byte symbols, each also in
    its word-final ``</w>`` form) for pipelines with a CLIP text encoder beside their language
    model (Kandinsky 5, HiDream); saved to and reloaded from ``folder`` (the form transformers
    5 builds the full vocabulary from)."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_byte_vocab(folder)), model_max_length=max_length)


LLAMA3_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                   "<|start_header_id|>", "<|end_header_id|>")
"""Llama 3 special tokens (start and end of text, end of turn, header marks)."""


def llama3_tokenizer(folder: str | Path) -> Any:
    """A fast tokenizer over bytes in Llama 3's shape (HiDream-I1 loads Llama-3.1-8B-Instruct's
    through ``AutoTokenizer``): starts every text with ``<|begin_of_text|>``, ends turns with
    ``<|eot_id|>``."""
    from tokenizers import processors
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    backend = _byte_level_backend(LLAMA3_SPECIALS)
    backend.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>", model_max_length=1024)
    tok.save_pretrained(str(folder))
    return AutoTokenizer.from_pretrained(str(folder))


GLM_IMAGE_SPECIALS = ("<|endoftext|>", "[gMASK]", "<sop>", "<eop>", "<|image|>", "<|user|>",
                      "<|assistant|>")
"""GLM-Image text specials: end of text, GLM's prefix pair, the grid brackets the processor
writes the target size between (``<sop>h w<eop>``), the image placeholder and chat roles."""

GLM_IMAGE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}"
    "{% elif c['type'] == 'image' %}<|image|>{% endif %}{% endfor %}{% endif %}{% endfor %}"
)


def glm_image_processor(folder: str | Path, codes: int) -> Any:
    """A ``GlmImageProcessor`` for GLM-Image's autoregressive stage: a byte-level tokenizer whose
    first ids are the image tokens the model samples (``codes`` codebook entries, then image
    start, which is also the bos the processor ends a prompt with, and image end), so the
    vision vocabulary is a prefix of the text vocabulary as in GLM-Image; plus the image,
    grid-bracket and chat tokens the processor and template name."""
    from transformers import AutoTokenizer, GlmImageImageProcessor, GlmImageProcessor, PreTrainedTokenizerFast

    vision = tuple(f"<|dit_token_{i}|>" for i in range(codes + 2))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_byte_level_backend(vision + GLM_IMAGE_SPECIALS),
        eos_token="<|endoftext|>", pad_token="<|endoftext|>", bos_token=vision[codes],
        padding_side="left", model_max_length=4096,
        extra_special_tokens={"image_token": "<|image|>", "grid_bos_token": "<sop>",
                              "grid_eos_token": "<eop>"})
    tok.chat_template = GLM_IMAGE_CHAT_TEMPLATE
    tok.save_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    return GlmImageProcessor(image_processor=GlmImageImageProcessor(patch_size=16, merge_size=1),
                             tokenizer=tok, chat_template=GLM_IMAGE_CHAT_TEMPLATE)
