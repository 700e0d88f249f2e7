"""VQAScore: how likely an image-text-to-text VLM answers "Yes" to "Does this figure show
'{prompt}'? Please answer yes or no." (Lin et al., ECCV 2024).

The number is P(yes) = softmax over the two answer tokens of the logits of the *first generated
token* (the position after the chat template's generation prompt): exp(l_yes) / (exp(l_yes) +
exp(l_no)), in 0..1, higher = the model sees the prompt in the image. The answer token ids are
found from the model's own tokenizer (the first token of each answer word, e.g. "Yes" / "No") and
stored with every value, as are the question template, the weights (hub id and revision, or the
sha256 of the local folder's weight files) and the softmax's full-vocabulary P(yes) for reference.

Backends: whatever transformers' generic ``AutoModelForImageTextToText`` and ``AutoProcessor`` load,
from a hub id (``model``) or a local folder saved with ``save_pretrained`` (``checkpoint``).
Tested backends (tiny random models of the real classes, loaded from a folder, against a bare
forward pass to 1e-5, with transformers 5.x): Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, LLaVA,
LLaVA-NeXT, LLaVA-OneVision, InternVL, Mistral 3 (Pixtral tower), PaliGemma (``chat: false``: it
has no chat template; the question goes after its image token and its processor writes the
``<image>...<bos>question`` prefix), Gemma 3, Gemma 4 (image only), Idefics2, Idefics3 and SmolVLM
(its processor needs the ``num2words`` package). Weights load lazily on the first image;
offline without them the first image fails at once with the hub id and the setting to point at
a local copy.

:class:`VLMJudge` (the loaded model answering yes/no questions about images) is shared with the
question-based scoring of :mod:`harness.metrics.questions`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput
from harness.metrics.clip_score import ModelUnavailable, pick_device, weights_sha256
from harness.metrics.hub import hub_snapshot, require_hub_model
from harness.metrics.prefetch import prepared_groups, resolve_workers
from harness.toyworld.paths import resolve_path

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "Does this figure show '{prompt}'? Please answer yes or no."
DTYPES = ("auto", "float32", "float16", "bfloat16")
# What a hub snapshot needs to load with the generic classes (no duplicate .bin weights).


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto``: bfloat16 on a GPU that has it (float16 on older ones), float32 elsewhere."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def check_vlm_settings(name: str, s: Mapping[str, Any]) -> None:
    """The settings every VLM-backed metric shares, checked at construction (no model loaded)."""
    if not s.get("model") and not s.get("checkpoint"):
        raise ConfigError(f"metrics.{name}.settings: set model (a hub id such as "
                          f"Qwen/Qwen2.5-VL-7B-Instruct) or checkpoint (a local folder).")
    if s.get("checkpoint") is not None and not resolve_path(s["checkpoint"]).is_dir():
        raise ConfigError(f"metrics.{name}.settings.checkpoint: no such folder: {s['checkpoint']} "
                          "(a folder saved with save_pretrained: config.json, weights, processor "
                          "and tokenizer files).")
    if s["dtype"] not in DTYPES:
        raise ConfigError(f"metrics.{name}.settings.dtype: unknown dtype {s['dtype']!r}."
                          + did_you_mean(str(s["dtype"]), list(DTYPES)))
    answers = s["answers"]
    if (not isinstance(answers, (list, tuple)) or len(answers) != 2
            or not all(isinstance(a, str) and a.strip() for a in answers)):
        raise ConfigError(f"metrics.{name}.settings.answers: two non-empty words, the positive "
                          f"first (e.g. [Yes, No]), got {answers!r}.")
    if int(s["batch_size"]) < 1:
        raise ConfigError(f"metrics.{name}.settings.batch_size: must be >= 1, got {s['batch_size']}.")


def vlm_weights_id(s: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a local checkpoint folder's weight files, else ``hf:<id>[@revision]``."""
    if s.get("checkpoint") is not None:
        return "sha256:" + weights_sha256(resolve_path(s["checkpoint"]))
    rev = s.get("revision")
    return f"hf:{s['model']}" + (f"@{rev}" if rev else "")


def vlm_identity(d: dict[str, Any], s: Mapping[str, Any], weights: str) -> dict[str, Any]:
    """Shared identity edits: the weights id, and a checkpoint named by its folder name only
    (the weights are identified by content: moving the folder must not re-score)."""
    d["weights"] = weights
    if d.get("checkpoint") is not None:
        d["checkpoint"] = Path(str(d["checkpoint"])).name
        d["model"] = None
    return d


@dataclass
class VLMJudge:
    """A loaded image-text-to-text model that answers yes/no questions about images."""

    model: Any
    processor: Any
    device: str
    dtype: str
    yes_id: int
    no_id: int
    yes_token: str
    no_token: str
    weights_sha256: str
    chat: bool

    def prompt(self, question: str) -> str:
        """The model's input text for one image and one question (its chat template with the
        generation prompt, or the bare question when ``chat`` is off)."""
        if not self.chat:
            # The processor's image token first, as PaliGemma's prefix format has it
            # ("<image>...<bos>question\n"); without it that processor guesses the same layout
            # but warns on every batch.
            token = getattr(self.processor, "image_token", None)
            return question if not token or token in question else token + question
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def inputs(self, images: Sequence[Any], questions: Sequence[str]) -> Any:
        """The preprocessed batch (left padded, so the last position is every row's next token).

        Images go one list per prompt: processors that count images per sample (Gemma 3,
        Idefics3/SmolVLM) read a flat list of two as two images for the first prompt."""
        return self.processor(text=[self.prompt(q) for q in questions], images=[[im] for im in images],
                              padding=True, return_tensors="pt")

    def forward(self, enc: Any) -> tuple[list[float], list[float]]:
        """P(yes) over the two answer tokens, and P(yes) over the whole vocabulary, per row."""
        import torch

        enc = enc.to(self.device)
        if "pixel_values" in enc and enc["pixel_values"].is_floating_point():
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            last = self.model(**enc).logits[:, -1, :].float()
        two = torch.log_softmax(last[:, [self.yes_id, self.no_id]], dim=-1)[:, 0].exp()
        full = torch.log_softmax(last, dim=-1)[:, self.yes_id].exp()
        return two.cpu().tolist(), full.cpu().tolist()

    def p_yes(self, images: Sequence[Any], questions: Sequence[str]) -> tuple[list[float], list[float]]:
        """P(yes) for each (image, question) pair, in one forward pass."""
        return self.forward(self.inputs(images, questions))


def answer_token(tokenizer: Any, word: str) -> tuple[int, str]:
    """The id and text of the first token of ``word`` as the model would start its answer."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if not ids:
        raise ConfigError(f"answer word {word!r} encodes to no token with this tokenizer.")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and ids[0] == unk:
        raise ConfigError(f"answer word {word!r} is unknown to this tokenizer (it encodes to "
                          f"{tokenizer.unk_token!r}); set answers to words the model knows.")
    return int(ids[0]), str(tokenizer.convert_ids_to_tokens(int(ids[0])))


def load_judge(name: str, s: Mapping[str, Any], device_setting: str) -> VLMJudge:
    """Load the VLM a metric's settings name (local folder, cache or hub), in eval mode."""
    # The weights' folder first: offline without them this fails before torch is imported.
    if s.get("checkpoint") is not None:
        folder = resolve_path(s["checkpoint"])
    else:
        folder = hub_snapshot(name, str(s["model"]), s.get("revision"))
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = pick_device(device_setting)
    dtype = resolve_dtype(str(s["dtype"]), device)
    try:
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(
            folder, local_files_only=True, dtype=getattr(torch, dtype)).to(device).eval()
    except Exception as e:
        raise ModelUnavailable(
            f"metrics.{name}: could not load an image-text-to-text model and processor from "
            f"{folder} ({type(e).__name__}: {str(e)[:300]}). The folder needs config.json, the "
            f"weights and the processor/tokenizer files (save_pretrained of both).") from e
    tok = processor.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    chat = bool(s.get("chat", True))
    if chat and not getattr(processor, "chat_template", None):
        raise ConfigError(f"metrics.{name}: the processor in {folder} has no chat template; set "
                          f"metrics.{name}.settings.chat=false to send the bare question (models "
                          "such as PaliGemma take it without a template).")
    (yes_id, yes_tok), (no_id, no_tok) = (answer_token(tok, w) for w in s["answers"])
    if yes_id == no_id:
        raise ConfigError(f"metrics.{name}.settings.answers: {s['answers']!r} start with the same "
                          f"token ({yes_tok!r}); pick two words that differ in their first token.")
    log.info("%s: %s on %s (%s)", name, folder, device, dtype)
    return VLMJudge(model=model, processor=processor, device=device, dtype=dtype, yes_id=yes_id,
                    no_id=no_id, yes_token=yes_tok, no_token=no_tok,
                    weights_sha256=weights_sha256(folder), chat=chat)


class VQAScore(Metric):
    """P("Yes") of a VLM asked whether the image shows the prompt."""

    kind = "vqascore"
    higher_is_better = True
    per = "image"
    version = "1"
    defaults = {
        "model": None,
        "revision": None,
        "checkpoint": None,
        "template": DEFAULT_TEMPLATE,
        "answers": ["Yes", "No"],
        "chat": True,
        "dtype": "auto",
        # Runtime only: they don't change the number, so describe() leaves them out.
        "batch_size": 8,
        "device": "auto",
        "workers": 1,
    }
    """model: hub id (downloaded on first use, or read from the cache). revision: a hub branch,
    tag or commit. checkpoint: a local save_pretrained folder, used instead of the hub. template:
    the question, ``{prompt}`` replaced by the prompt. answers: the positive and negative answer
    words (their first tokens are compared). chat: wrap the question in the processor's chat
    template with the generation prompt. dtype: auto (bfloat16/float16 on a GPU, float32 on the
    CPU), float32, float16, bfloat16."""
    runtime = ("batch_size", "device", "workers")

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        check_vlm_settings(name, s)
        if "{prompt}" not in str(s["template"]):
            raise ConfigError(f"metrics.{name}.settings.template: must contain {{prompt}}, got "
                              f"{s['template']!r}.")
        self.model_batch = int(s["batch_size"])
        self.batch_size = 4 * self.model_batch
        self.workers = resolve_workers(s["workers"], name=f"metrics.{name}.settings.workers")
        self._judge: VLMJudge | None = None
        self._weights: str | None = None

    def question(self, prompt: str) -> str:
        """The question asked for a prompt."""
        return str(self.settings["template"]).replace("{prompt}", prompt)

    def identity(self) -> dict[str, Any]:
        if self._weights is None:
            self._weights = vlm_weights_id(self.settings)
        d = vlm_identity(super().identity(), self.settings, self._weights)
        d["formula"] = "softmax(logits[yes, no])[yes] at the first generated token"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """Range, what it rests on, and what it may be compared with."""
        who = identity.get("model") or identity.get("checkpoint")
        return ReadingNotes(lines={"": (
            f"P(yes) in 0-1 that the VLM ({who}, {str(identity.get('weights'))[:23]}) answers "
            f"'{identity.get('answers', ['Yes'])[0]}' to the question "
            f"\"{identity.get('template')}\": softmax over the yes/no tokens of its first answer "
            "token. Higher = the image shows the prompt. Only comparable between runs with the "
            "same VLM, weights and template.")})

    def judge(self) -> VLMJudge:
        """The loaded VLM (loaded on first use)."""
        if self._judge is None:
            self._judge = load_judge(self.name, self.settings, str(self.settings["device"]))
        return self._judge

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)
        todo = []
        for i, it in enumerate(items):
            text = str((it.prompt or {}).get("text") or "").strip()
            if not text:
                out[i] = (None, {"skipped": "empty prompt"})
            else:
                todo.append((i, self.question(text)))
        if todo:
            j = self.judge()
            for good in prepared_groups(lambda im: im, todo, lambda i: items[i].image, out,
                                        workers=self.workers, model_batch=self.model_batch,
                                        name="vqa-prep"):
                two, full = j.p_yes([im for _, im, _ in good], [q for _, _, q in good])
                for (i, _, q), p, pf in zip(good, two, full, strict=True):
                    out[i] = (p, {"question": q, "p_yes_vocab": pf, "yes_token": [j.yes_id, j.yes_token],
                                  "no_token": [j.no_id, j.no_token], "weights_sha256": j.weights_sha256,
                                  "device": j.device, "dtype": j.dtype})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def preflight(self) -> None:
        """A hub model must be cached or reachable (a checkpoint folder is checked by identity())."""
        if self.settings.get("checkpoint") is None:
            require_hub_model(self.name, str(self.settings["model"]), self.settings.get("revision"))

    def close(self) -> None:
        self._judge = None
