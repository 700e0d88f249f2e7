"""Small image-text-to-text models of real transformers VLM classes, with a word-level tokenizer
and a processor, saved as ordinary folders that ``AutoModelForImageTextToText`` /
``AutoProcessor.from_pretrained(folder)`` load like hub models.

Two families: ``qwen2_vl`` (``Qwen2VLForConditionalGeneration`` with ``Qwen2VLProcessor``: native
resolution patches merged 2x2, M-RoPE, the ChatML template) and ``llava``
(``LlavaForConditionalGeneration``: a CLIP vision tower, an MLP projector and a Llama decoder,
"USER: <image>\\n... ASSISTANT:" template). The toy VLM of the zoo is the second, its vision tower
started from the toy CLIP's and trained on the toy world; untrained ones (random weights) of both
are what the tests score with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ARCHS = ("qwen2_vl", "llava")
QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                 "<|video_pad|>")
LLAVA_SPECIALS = ("<s>", "</s>", "<image>")
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: "
    "{% endif %}{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
_WORD = re.compile(r"\w+|[^\w\s]")
BASE_WORDS = ("Yes", "No", "yes", "no", "user", "assistant", "system", "USER", "ASSISTANT", ":",
              "Does", "does", "this", "figure", "show", "Please", "please", "answer", "or", "?", ".",
              "'", '"', ",", "Is", "is", "there", "a", "an", "the", "image", "in")


def words_of(texts: Iterable[str]) -> list[str]:
    """Every word and punctuation mark of ``texts`` (as the tokenizer splits them), sorted."""
    found: set[str] = set()
    for t in texts:
        found.update(_WORD.findall(t))
    return sorted(found)


def tokenizer(words: Iterable[str], specials: tuple[str, ...]) -> Any:
    """A word-level fast tokenizer (whitespace and punctuation split, unknown words -> ``<unk>``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for t in ("<unk>", "<pad>", *specials, *BASE_WORDS, *words):
        vocab.setdefault(t, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                pre_tokenizers.Punctuation()])
    eos = "<|im_end|>" if "<|im_end|>" in specials else "</s>"
    extra = {"bos_token": "<s>"} if "<s>" in specials else {}
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>",
                                   eos_token=eos, additional_special_tokens=list(specials), **extra)


def build(arch: str, words: Iterable[str] = (), *, hidden: int = 32, layers: int = 2, heads: int = 2,
          vision_layers: int = 1, vision_hidden: int = 32, patch: int = 8, image_size: int = 32,
          seed: int = 0, vision_config: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """A random-weight (model, processor) pair of one family, sized by the arguments.

    ``image_size`` is the side images are resized to (llava) or the most pixels per side
    (qwen2_vl: ``max_pixels = image_size**2``). ``vision_config`` (llava) replaces the vision
    tower's config, e.g. by a trained CLIP's, so its weights can be copied in."""
    import torch

    if arch not in ARCHS:
        from harness.errors import ConfigError, did_you_mean

        raise ConfigError(f"unknown VLM family {arch!r}." + did_you_mean(arch, list(ARCHS)))
    torch.manual_seed(seed)
    head_dim = hidden // heads
    if arch == "qwen2_vl":
        from transformers import (
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            Qwen2VLImageProcessor,
            Qwen2VLProcessor,
            Qwen2VLVideoProcessor,
        )

        tok = tokenizer(words, QWEN_SPECIALS)
        ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
        # M-RoPE splits each head's rotary half into temporal / height / width sections.
        half = head_dim // 2
        section = [half - 2 * (half // 3), half // 3, half // 3]
        cfg = Qwen2VLConfig(
            text_config=dict(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                             max_position_embeddings=512, eos_token_id=ids["<|im_end|>"],
                             pad_token_id=tok.pad_token_id, bos_token_id=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                              "mrope_section": section}),
            vision_config=dict(depth=vision_layers, embed_dim=vision_hidden, hidden_size=hidden,
                               num_heads=max(1, vision_hidden // 16), patch_size=patch, spatial_merge_size=2,
                               temporal_patch_size=2, mlp_ratio=2),
            image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
            vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
        model = Qwen2VLForConditionalGeneration(cfg).eval()
        side = image_size
        ip = Qwen2VLImageProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2,
                                   min_pixels=(2 * patch) ** 2, max_pixels=side * side)
        vp = Qwen2VLVideoProcessor(patch_size=patch, merge_size=2, temporal_patch_size=2)
        proc = Qwen2VLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp,
                                chat_template=QWEN_TEMPLATE)
        return model, proc
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = tokenizer(words, LLAVA_SPECIALS)
    vision = vision_config or dict(hidden_size=vision_hidden, intermediate_size=2 * vision_hidden,
                                   num_hidden_layers=vision_layers,
                                   num_attention_heads=max(1, vision_hidden // 16), image_size=image_size,
                                   patch_size=patch, projection_dim=vision_hidden)
    patch = int(vision["patch_size"])
    image_size = int(vision["image_size"])
    cfg = LlavaConfig(
        vision_config={**vision, "model_type": "clip_vision_model"},
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=512,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
        vision_feature_select_strategy="default", projector_hidden_act="gelu")
    model = LlavaForConditionalGeneration(cfg).eval()
    ip = CLIPImageProcessor(size={"shortest_edge": image_size},
                            crop_size={"height": image_size, "width": image_size})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=patch,
                          vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE,
                          num_additional_image_tokens=1)
    return model, proc


def resize_vision(model: Any, processor: Any, size: int) -> tuple[Any, Any]:
    """A llava model and processor whose vision tower reads images at ``size`` px a side: the
    processor resizes images to it, the tower keeps its patch size (so more, smaller patches of
    the same picture: a 64 px image at 128 gives each 8 px patch 4 x 4 source pixels), and its
    position embeddings are the old grid's, bicubically interpolated (the class token's as it
    was). Every other weight is copied. The model is new; the processor is changed in place."""
    import torch
    import torch.nn.functional as F

    if model.config.model_type != "llava":
        from harness.errors import ConfigError

        raise ConfigError(f"resize_vision: only llava models ({model.config.model_type!r} given)")
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    cfg = model.config.to_dict()
    patch = int(cfg["vision_config"]["patch_size"])
    if size % patch:
        from harness.errors import ConfigError

        raise ConfigError(f"resize_vision: {size} px is not a whole number of {patch} px patches")
    cfg["vision_config"]["image_size"] = size
    new = LlavaForConditionalGeneration(LlavaConfig.from_dict(cfg)).to(model.dtype).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    key = next(k for k in state if k.endswith("embeddings.position_embedding.weight") and "vision" in k)
    pe = state[key]
    old, n = int(round((pe.shape[0] - 1) ** 0.5)), size // patch
    grid = pe[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(n, n), mode="bicubic", align_corners=False)
    state[key] = torch.cat([pe[:1], grid.permute(0, 2, 3, 1).reshape(n * n, -1).to(pe.dtype)])
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise RuntimeError(f"resize_vision: weights did not map ({missing}, {unexpected})")
    processor.image_processor.size = {"shortest_edge": size}
    processor.image_processor.crop_size = {"height": size, "width": size}
    return new, processor


_NEW_LAYER_ZEROS = ("self_attn.out_proj.", "mlp.fc2.", "self_attn.o_proj.", "mlp.down_proj.")
"""The weights of an added block that write into the residual stream (CLIP's and Llama's)."""
_MLP_OUT = ("mlp.fc2.weight", "mlp.down_proj.weight")
"""An MLP's output weights: their added columns (for added hidden units) start at zero."""


def deepen(model: Any, *, vision_layers: int | None = None, vision_mlp: int | None = None,
           text_layers: int | None = None, text_mlp: int | None = None, seed: int = 0) -> Any:
    """A llava model with more capacity that computes exactly what ``model`` computes: blocks
    added after the last ones of the vision tower (``vision_layers`` in all) and of the decoder
    (``text_layers``), and MLPs widened to ``vision_mlp`` / ``text_mlp`` hidden units. An added
    block starts with the weights that write into the residual stream (attention output, MLP
    output) at zero, so it passes its input on unchanged; added MLP units start with zero output
    weights. Everything else of an added part has the class's own initialisation (``seed``), so
    training moves it at once. Targets are totals (None or the present number: unchanged)."""
    import torch

    if model.config.model_type != "llava":
        from harness.errors import ConfigError

        raise ConfigError(f"deepen: only llava models ({model.config.model_type!r} given)")
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    cfg = model.config.to_dict()
    for part, layers, mlp in (("vision_config", vision_layers, vision_mlp),
                              ("text_config", text_layers, text_mlp)):
        have = cfg[part]
        for key, want in (("num_hidden_layers", layers), ("intermediate_size", mlp)):
            if want is not None and int(want) < int(have[key]):
                from harness.errors import ConfigError

                raise ConfigError(f"deepen: {part}.{key} {want} is fewer than the model's "
                                  f"{have[key]} (deepen only adds)")
            if want is not None:
                have[key] = int(want)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        new = LlavaForConditionalGeneration(LlavaConfig.from_dict(cfg)).to(model.dtype).eval()
    old = model.state_dict()
    state = new.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            if key in old and old[key].shape == value.shape:
                value.copy_(old[key])
            elif key in old:  # a widened MLP: the old units first
                src = old[key]
                value[tuple(slice(0, n) for n in src.shape)] = src
                if key.endswith(_MLP_OUT):
                    value[:, src.shape[1]:] = 0
                elif value.dim() == 1:
                    value[src.shape[0]:] = 0
            elif any(z in key for z in _NEW_LAYER_ZEROS):
                value.zero_()
    new.load_state_dict(state)
    return new


def save(model: Any, processor: Any, folder: str | Path) -> Path:
    """Save both into ``folder`` (loadable with the generic Auto classes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


class QwenBatcher:
    """Model inputs for square uint8 images and questions, built in torch without the
    processor's per-image Python work (training calls this every step). :meth:`verify` checks
    every tensor against the processor's own output; trainers call it once before training."""

    def __init__(self, processor: Any) -> None:
        ip = processor.image_processor
        self.processor = processor
        self.patch, self.merge, self.tp = ip.patch_size, ip.merge_size, ip.temporal_patch_size
        self.mean, self.std = list(ip.image_mean), list(ip.image_std)
        self.image_token = processor.image_token
        self.image_token_id = processor.tokenizer.convert_tokens_to_ids(self.image_token)

    def prompt(self, question: str) -> str:
        """The chat-templated prompt (one image, then the question, then the generation prompt)."""
        return self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
            add_generation_prompt=True, tokenize=False)

    def __call__(self, images: Any, questions: Sequence[str], answers: Sequence[str] | None = None
                 ) -> dict[str, Any]:
        """``images``: uint8 array (n, s, s, 3) with s a multiple of patch * merge. With
        ``answers``, each is appended after the generation prompt and ``answer_mask`` marks its
        tokens (for a language-model loss on them)."""
        import torch

        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        x = (x - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)
        b, c, h, w = x.shape
        p, m, tp = self.patch, self.merge, self.tp
        gh, gw = h // p, w // p
        x = x.unsqueeze(1).expand(b, tp, c, h, w).reshape(b, 1, tp, c, gh // m, m, p, gw // m, m, p)
        pixels = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9).reshape(b * gh * gw, c * tp * p * p)
        n_tokens = gh * gw // (m * m)
        texts = [self.prompt(q).replace(self.image_token, self.image_token * n_tokens) for q in questions]
        tok = self.processor.tokenizer
        tok.padding_side = "left"
        if answers is not None:
            texts = [t + a for t, a in zip(texts, answers, strict=True)]
        enc = tok(texts, padding=True, return_tensors="pt")
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "mm_token_type_ids": (enc["input_ids"] == self.image_token_id).to(enc["input_ids"].dtype),
               "pixel_values": pixels,
               "image_grid_thw": torch.tensor([[1, gh, gw]] * b)}
        if answers is not None:
            # Left padding: each answer is the last len(answer tokens) positions of its row.
            lengths = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
            pos = torch.arange(enc["input_ids"].shape[1]).unsqueeze(0)
            out["answer_mask"] = pos >= (enc["input_ids"].shape[1] - torch.tensor(lengths).unsqueeze(1))
        return out

    def verify(self, images: Any, questions: Sequence[str]) -> None:
        """Raise ValueError when these inputs differ from the processor's."""
        import torch

        ours = self(images, questions)
        self.processor.tokenizer.padding_side = "left"
        ref = self.processor(text=[self.prompt(q) for q in questions], images=list(images),
                             padding=True, return_tensors="pt")
        for k, v in ours.items():
            r = ref[k]
            same = (r.shape == v.shape and (torch.allclose(r.float(), v.float(), atol=1e-5)))
            if not same:
                raise ValueError(f"fast VLM inputs differ from the processor's in {k}")


class ProcessorBatcher:
    """Model inputs through the processor itself (any family), with ``answer_mask`` as
    :class:`QwenBatcher` gives it; for processors cheap enough to run every training step."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def prompt(self, question: str) -> str:
        """The chat-templated prompt (one image, then the question, then the generation prompt)."""
        return self.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}],
            add_generation_prompt=True, tokenize=False)

    def __call__(self, images: Any, questions: Sequence[str], answers: Sequence[str] | None = None
                 ) -> dict[str, Any]:
        """``images``: uint8 array (n, h, w, 3) or PIL images."""
        import torch

        tok = self.processor.tokenizer
        tok.padding_side = "left"
        texts = [self.prompt(q) for q in questions]
        if answers is not None:
            texts = [t + a for t, a in zip(texts, answers, strict=True)]
        enc = dict(self.processor(text=texts, images=list(images), padding=True, return_tensors="pt"))
        if answers is not None:
            lengths = [len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers]
            pos = torch.arange(enc["input_ids"].shape[1]).unsqueeze(0)
            enc["answer_mask"] = pos >= (enc["input_ids"].shape[1] - torch.tensor(lengths).unsqueeze(1))
        return enc
