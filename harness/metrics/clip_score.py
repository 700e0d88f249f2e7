"""CLIP-score: how well an image matches its prompt, by a CLIP model's cosine similarity.

score = scale * max(cos(image_embedding, text_embedding), 0), with scale 100 by default: a
0..100 number (real CLIPs give roughly 15..40 for matching pairs). The CLIPScore paper
(Hessel et al., 2021) uses scale 2.5 instead, and torchmetrics reports x100: the two are not
comparable, so the scale is a setting stored with every value, as are the backend, the model
and the weights (a tag or hub id, or the sha256 of the local checkpoint). The raw cosine is kept
in each value's extra, with ``truncated: true`` when the prompt was longer than the text
encoder's context (it is truncated, as every CLIP-score implementation does, never an error).

Backends: ``open_clip`` (model = architecture name, pretrained = tag, or checkpoint = a local
weights file) and ``transformers`` (model = hub id, or checkpoint = a folder saved with
``save_pretrained``). Weights load lazily on the first image: constructing the metric touches
neither the disk nor the network.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.metrics.base import Metric, ReadingNotes, ScoreInput
from harness.metrics.prefetch import prepared_groups, resolve_workers
from harness.toyworld.paths import resolve_path

log = logging.getLogger(__name__)

BACKENDS = ("open_clip", "transformers")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# open_clip's file names inside a model folder, in the order open_clip itself prefers them.
_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

_hash_cache: dict[tuple[str, int, int], str] = {}


class ModelUnavailable(ConfigError):
    """The configured CLIP could not be loaded (not cached and the hub unreachable, ...). A
    ConfigError, so the CLI prints the message and the fix, not a traceback; images generated
    before it stay stored and the next run resumes."""


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def weights_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of a folder's weight files (name and content of each
    ``*.safetensors|bin|pt|pth|ckpt`` under it, sorted): configs and tokenizer files don't count."""
    p = Path(path).expanduser()
    if p.is_file():
        return _file_sha256(p)
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ConfigError(f"checkpoint folder {p} holds no weight files "
                          f"({', '.join('*' + s for s in WEIGHT_SUFFIXES)}).")
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(p).as_posix()}\0{_file_sha256(f)}\n".encode())
    return h.hexdigest()


def pick_device(device: str = "auto") -> str:
    """``auto``: cuda, else mps, else cpu; anything else is passed to torch as is."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class ClipScore(Metric):
    kind = "clip_score"
    higher_is_better = True
    per = "image"
    version = "1"
    defaults = {
        "backend": "open_clip",
        "model": "ViT-L-14",
        "pretrained": "openai",
        "checkpoint": None,
        "scale": 100.0,
        # Runtime only: they don't change the number, so describe() leaves them out.
        "batch_size": 32,
        "device": "auto",
        "workers": "auto",
    }
    """backend: open_clip | transformers. model: open_clip architecture name or transformers hub
    id. pretrained: open_clip weights tag (ignored by transformers). checkpoint: a local weights
    file or folder, used instead of downloading. scale: score = scale * max(cos, 0).
    batch_size (images per forward pass), device (auto: cuda, mps, cpu) and workers (decoding
    threads; auto = one per core, 0 = none) don't change the number."""
    runtime = ("batch_size", "device", "workers")

    def __init__(self, *, name: str, settings: dict[str, Any] | None = None) -> None:
        super().__init__(name=name, settings=settings)
        s = self.settings
        batch_size, device, workers = s["batch_size"], s["device"], s["workers"]
        if s["backend"] not in BACKENDS:
            raise ConfigError(f"metrics.{name}.settings.backend: unknown backend {s['backend']!r}."
                              + did_you_mean(str(s["backend"]), list(BACKENDS)))
        try:
            s["scale"] = float(s["scale"])
        except (TypeError, ValueError):
            raise ConfigError(f"metrics.{name}.settings.scale: must be a number, got "
                              f"{s['scale']!r}.") from None
        if not s["scale"] > 0:
            raise ConfigError(f"metrics.{name}.settings.scale: must be > 0, got {s['scale']}.")
        if s["checkpoint"] is not None and not resolve_path(s["checkpoint"]).exists():
            raise ConfigError(f"metrics.{name}.settings.checkpoint: no such file or folder: "
                              f"{s['checkpoint']}")
        if int(batch_size) < 1:
            raise ConfigError(f"metrics.{name}.settings.batch_size: must be >= 1, got {batch_size}.")
        self.model_batch = int(batch_size)
        # The score stage hands over this many images per call: several model batches, so that
        # decoding and resizing the next batch (thread pool) overlaps the current forward pass.
        self.batch_size = 4 * self.model_batch
        self.device_setting = device
        self.workers = resolve_workers(workers, name=f"metrics.{name}.settings.workers")
        self._m: _Loaded | None = None
        self._weights: str | None = None

    # -- identity ---------------------------------------------------------------------------

    def weights_id(self) -> str:
        """``sha256:<hex>`` of the local checkpoint, else the tag / hub id that names the weights."""
        if self._weights is None:
            s = self.settings
            if s["checkpoint"] is not None:
                self._weights = "sha256:" + weights_sha256(resolve_path(s["checkpoint"]))
            elif s["backend"] == "open_clip":
                self._weights = f"open_clip:{s['model']}/{s['pretrained']}"
            else:
                self._weights = f"hf:{s['model']}"
        return self._weights

    def identity(self) -> dict[str, Any]:
        d = super().identity()
        d["weights"] = self.weights_id()
        if d["checkpoint"] is not None:
            # The weights are identified by content: moving the file must not re-score, and the
            # tag no longer applies.
            d["checkpoint"] = Path(d["checkpoint"]).name
            d["pretrained"] = None
        if d["backend"] == "transformers":
            d["pretrained"] = None
        d["formula"] = "scale * max(cos, 0)"
        return d

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """The scale and range, and what the number may be compared with."""
        scale = float(identity.get("scale", 100))
        # four decimals at most, trailing zeros dropped: 100 -> "100", 2.5 -> "2.5"
        shown = f"{scale:.4g}" if scale != 0 and (abs(scale) >= 1e5 or abs(scale) < 1e-4) else f"{scale:.4f}"
        return ReadingNotes(lines={"": (
            f"{shown.rstrip('0').rstrip('.')} x max(cos, 0) of image and prompt embeddings "
            f"({identity.get('model')}, {str(identity.get('weights'))[:23]}); with scale 100 the range is "
            "0-100 and real CLIPs give roughly 15-40 for matching pairs. Only comparable between runs "
            "with the same model, weights and scale.")})

    # -- scoring ----------------------------------------------------------------------------

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        import torch

        out: list[tuple[float | None, dict[str, Any]] | None] = [None] * len(items)
        todo = []
        for i, it in enumerate(items):
            text = str((it.prompt or {}).get("text") or "").strip()
            if not text:
                out[i] = (None, {"skipped": "empty prompt"})
            else:
                todo.append((i, text))
        if todo:
            m = self._load()

            for good in prepared_groups(m.preprocess, todo, lambda i: items[i].image, out,
                                        workers=self.workers, model_batch=self.model_batch,
                                        name="clip-prep"):
                tokens, truncated = m.tokenize([text for _, _, text in good])
                with torch.inference_mode():
                    img = m.encode_image(torch.stack([px for _, px, _ in good]).to(m.device))
                    txt = m.encode_text({k: v.to(m.device) for k, v in tokens.items()})
                    img = torch.nn.functional.normalize(img.float(), dim=-1)
                    txt = torch.nn.functional.normalize(txt.float(), dim=-1)
                    cos = (img * txt).sum(-1).cpu().tolist()
                for (i, _, _), c, tr in zip(good, cos, truncated, strict=True):
                    out[i] = (self.settings["scale"] * max(c, 0.0),
                              {"cos": c, "truncated": tr, "device": m.device})
        return [o if o is not None else (None, {"skipped": "not scored"}) for o in out]

    def _load(self) -> _Loaded:
        if self._m is None:
            s = self.settings
            device = pick_device(self.device_setting)
            loader = _load_open_clip if s["backend"] == "open_clip" else _load_transformers
            try:
                self._m = loader(s, device)
            except ConfigError:
                raise
            except Exception as e:
                if s["checkpoint"] is not None:
                    raise ModelUnavailable(
                        f"metrics.{self.name}: could not load the {s['backend']} CLIP "
                        f"{s['model']!r} from checkpoint {s['checkpoint']}: {type(e).__name__}: {e}"
                    ) from e
                what = (f"open_clip model {s['model']!r} with pretrained={s['pretrained']!r}"
                        if s["backend"] == "open_clip" else f"transformers model {s['model']!r}")
                raise ModelUnavailable(
                    f"metrics.{self.name}: could not load the {what}: its weights are not in the "
                    f"local cache and the model hub could not be reached or refused "
                    f"({type(e).__name__}: {str(e)[:300]}). Download them on a machine with "
                    f"internet, then point at the local copy: "
                    f"metrics.{self.name}.settings.checkpoint=/path/to/"
                    + ("open_clip_model.safetensors (or .bin/.pt)" if s["backend"] == "open_clip"
                       else "folder (saved with save_pretrained)")
                ) from e
            log.info("clip_score: %s %s on %s", s["backend"], s["model"], device)
        return self._m

    def close(self) -> None:
        self._m = None


class _Loaded:
    """A loaded CLIP with a uniform interface over the backends."""

    def __init__(self, *, device, preprocess, tokenize, encode_image, encode_text):
        self.device = device
        self.preprocess = preprocess
        """RGB PIL image -> CHW float tensor."""
        self.tokenize = tokenize
        """list of texts -> (dict of tensors for encode_text, list of truncated flags)."""
        self.encode_image = encode_image
        self.encode_text = encode_text


def _open_clip_file(checkpoint: str) -> str:
    p = Path(checkpoint).expanduser()
    if p.is_file():
        return str(p)
    for name in _OPEN_CLIP_FILES:
        if (p / name).is_file():
            return str(p / name)
    found = sorted(f for f in p.iterdir() if f.name.endswith(WEIGHT_SUFFIXES))
    if len(found) == 1:
        return str(found[0])
    raise ConfigError(f"checkpoint folder {p}: expected one of {', '.join(_OPEN_CLIP_FILES)} or a "
                      f"single weights file, found {[f.name for f in found] or 'none'}.")


def _load_open_clip(s: dict[str, Any], device: str) -> _Loaded:
    import open_clip
    import torch

    pretrained = _open_clip_file(str(resolve_path(s["checkpoint"]))) if s["checkpoint"] else s["pretrained"]
    model, _, preprocess = open_clip.create_model_and_transforms(s["model"], pretrained=pretrained,
                                                                 device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(s["model"])
    ctx = int(getattr(tokenizer, "context_length", 77))

    def n_tokens(text: str) -> int:
        if hasattr(tokenizer, "encode"):  # open_clip's own BPE: start and end tokens added
            return len(tokenizer.encode(text)) + 2
        inner = getattr(tokenizer, "tokenizer", None)  # HFTokenizer wrapper
        return len(inner(text)["input_ids"]) if inner is not None else 0

    def tokenize(texts: list[str]):
        return {"text": tokenizer(texts)}, [n_tokens(t) > ctx for t in texts]

    def encode_image(pixels: torch.Tensor) -> torch.Tensor:
        return model.encode_image(pixels)

    def encode_text(tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return model.encode_text(tokens["text"])

    return _Loaded(device=device, preprocess=preprocess, tokenize=tokenize,
                   encode_image=encode_image, encode_text=encode_text)


def _load_transformers(s: dict[str, Any], device: str) -> _Loaded:
    import torch
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    src = str(resolve_path(s["checkpoint"])) if s["checkpoint"] else s["model"]
    local = bool(s["checkpoint"])
    model = CLIPModel.from_pretrained(src, local_files_only=local).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(src, local_files_only=local)
    processor = CLIPImageProcessor.from_pretrained(src, local_files_only=local)
    ctx = int(model.config.text_config.max_position_embeddings)

    def preprocess(image) -> torch.Tensor:
        return processor(images=image, return_tensors="pt")["pixel_values"][0]

    def tokenize(texts: list[str]):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=ctx, return_tensors="pt")
        # tokenize() adds no special tokens: +2 for start and end.
        flags = [len(tokenizer.tokenize(t)) + 2 > ctx for t in texts]
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}, flags

    def _features(out) -> torch.Tensor:
        # transformers 5 returns an output object whose pooler_output is the projection.
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def encode_image(pixels: torch.Tensor) -> torch.Tensor:
        return _features(model.get_image_features(pixel_values=pixels))

    def encode_text(tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return _features(model.get_text_features(**tokens))

    return _Loaded(device=device, preprocess=preprocess, tokenize=tokenize,
                   encode_image=encode_image, encode_text=encode_text)
