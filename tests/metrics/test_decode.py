"""Fast PNG decoding (libspng through imagecodecs): the same pixels as PIL on every 8-bit RGB PNG
variant, PIL for everything else, errors still named; decoding ahead of the model (bounded,
ordered); and CPU streams in feature extraction giving the same features in the same order."""

from __future__ import annotations

import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from harness.errors import ConfigError
from harness.metrics import decode
from harness.metrics.base import as_rgb
from harness.metrics.features import FeatureError, FeatureExtractor, load_rgb
from harness.metrics.prefetch import batched, cpu_count, prefetch_map, resolve_workers

pytest.importorskip("imagecodecs")


@pytest.fixture(autouse=True)
def _fresh_decoder(monkeypatch):
    monkeypatch.delenv("HARNESS_PNG_DECODER", raising=False)
    monkeypatch.setattr(decode, "_decode", None)


def _pixels(rng, h, w):
    # Smooth fields plus noise: every PNG filter type gets chosen somewhere.
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
                        .resize((w, h), Image.BICUBIC), dtype=np.int16)
    noise = rng.integers(-20, 21, (h, w, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _save(path, arr, **kw):
    Image.fromarray(arr).save(path, format="PNG", **kw)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_by_hand(width: int, height: int, raw_rows: bytes, *, interlace: int) -> bytes:
    """A PNG written from the specification (colour type 2, 8 bits), for kinds PIL can't write."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, interlace)
    return (decode.PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw_rows))
            + _chunk(b"IEND", b""))


@pytest.mark.parametrize("h, w, kw", [
    (1, 1, {}), (23, 37, {}), (256, 200, {"compress_level": 0}), (96, 128, {"compress_level": 1}),
    (64, 64, {"compress_level": 9}), (80, 120, {"optimize": True}),
], ids=["1px", "odd", "stored", "level1", "level9", "optimize"])
def test_rgb8_png_decodes_to_exactly_pils_pixels(tmp_path, h, w, kw):
    arr = _pixels(np.random.default_rng(h * w), h, w)
    path = _save(tmp_path / "a.png", arr, **kw)
    fast = decode.png_rgb8(path)
    assert fast is not None and fast.dtype == np.uint8 and fast.shape == (h, w, 3)
    with Image.open(path) as im:
        assert np.array_equal(fast, np.asarray(im.convert("RGB")))
    assert np.array_equal(fast, arr)
    # Through a lazily opened PIL image (what the score stage hands over) and the two callers.
    assert np.array_equal(decode.png_rgb8(Image.open(path)), arr)
    assert np.array_equal(np.asarray(as_rgb(Image.open(path))), arr)
    img, converted = load_rgb(path)
    assert converted is None and img.mode == "RGB" and np.array_equal(np.asarray(img), arr)
    assert decode.decoder_name() == "libspng"


def test_ancillary_chunks_and_colour_key_keep_the_pixels(tmp_path):
    arr = _pixels(np.random.default_rng(5), 40, 30)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model: secret-model, steps 30")
    path = _save(tmp_path / "a.png", arr, pnginfo=info, transparency=(0, 0, 0), dpi=(300, 300))
    with Image.open(path) as im:
        assert im.mode == "RGB" and "transparency" in im.info
        assert np.array_equal(decode.png_rgb8(path), np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "I;16", "1"])
def test_other_png_kinds_go_through_pil(tmp_path, mode):
    im = Image.fromarray(_pixels(np.random.default_rng(1), 20, 20)).convert(mode)
    im.save(tmp_path / "a.png")
    assert decode.png_rgb8(tmp_path / "a.png") is None
    assert as_rgb(tmp_path / "a.png").mode == "RGB"
    with Image.open(tmp_path / "a.png") as stored:  # the conversion is reported with the file's mode
        assert load_rgb(tmp_path / "a.png")[1] == stored.mode != "RGB"


def test_16_bit_and_interlaced_rgb_go_through_pil(tmp_path):
    imagecodecs = pytest.importorskip("imagecodecs")
    deep = (np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000)
    (tmp_path / "deep.png").write_bytes(imagecodecs.png_encode(deep))
    assert decode.png_rgb8(tmp_path / "deep.png") is None
    # A 1x1 Adam7 image has its one pixel in pass 1: filter byte 0, then R, G, B.
    (tmp_path / "adam7.png").write_bytes(_png_by_hand(1, 1, b"\x00\x0a\x14\x1e", interlace=1))
    assert decode.png_rgb8(tmp_path / "adam7.png") is None
    assert as_rgb(tmp_path / "adam7.png").getpixel((0, 0)) == (10, 20, 30)


def test_not_a_file_or_already_decoded_goes_through_pil(tmp_path):
    arr = _pixels(np.random.default_rng(2), 16, 16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    assert decode.png_rgb8(Image.open(io.BytesIO(buf.getvalue()))) is None  # in memory
    assert decode.png_rgb8(Image.fromarray(arr)) is None  # not from a file
    path = _save(tmp_path / "a.png", arr)
    loaded = Image.open(path)
    loaded.load()
    assert decode.png_rgb8(loaded) is None  # pixels already there: used as they are
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    assert decode.png_rgb8(tmp_path / "a.jpg") is None
    assert decode.png_rgb8(tmp_path / "missing.png") is None


def test_truncated_or_corrupt_png_is_still_named(tmp_path):
    arr = _pixels(np.random.default_rng(3), 64, 64)
    data = (_save(tmp_path / "ok.png", arr)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    bad = bytearray(data)
    bad[60:80] = b"\xff" * 20  # inside the IDAT stream: bad CRC and bad deflate data
    (tmp_path / "bad.png").write_bytes(bytes(bad))
    for name in ("cut.png", "bad.png"):
        assert decode.png_rgb8(tmp_path / name) is None
        with pytest.raises(FeatureError, match=f"image k-{name} can't be decoded"):
            load_rgb(tmp_path / name, f"k-{name}")
        with pytest.raises(Exception):  # noqa: B017 - PIL's own error type, on the caller's thread
            as_rgb(Image.open(tmp_path / name))


def test_environment_switch_turns_the_fast_path_off(tmp_path, monkeypatch):
    path = _save(tmp_path / "a.png", _pixels(np.random.default_rng(4), 8, 8))
    monkeypatch.setenv("HARNESS_PNG_DECODER", "pil")
    assert decode.decoder_name() == "PIL" and decode.png_rgb8(path) is None
    assert as_rgb(path).size == (8, 8)


# -- decoding ahead of the model ----------------------------------------------------------------

def test_prefetch_map_keeps_order_and_stays_a_bounded_number_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        return i * i

    seen = []
    for k, r in enumerate(prefetch_map(work, range(50), workers=4, ahead=6)):
        with lock:
            assert len(started) <= k + 1 + 6  # never more than `ahead` past the consumer
        seen.append(r)
    assert seen == [i * i for i in range(50)]
    assert list(prefetch_map(work, range(5), workers=0, ahead=3)) == [0, 1, 4, 9, 16]
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]


def test_prefetch_map_raises_at_the_failing_items_turn():
    def work(i):
        if i == 3:
            raise ValueError("image 3 is bad")
        return i

    got = []
    with pytest.raises(ValueError, match="image 3 is bad"):
        for r in prefetch_map(work, range(10), workers=2, ahead=4):
            got.append(r)
    assert got == [0, 1, 2]


def test_workers_setting():
    assert resolve_workers("auto") == resolve_workers(None) == cpu_count() >= 1
    assert resolve_workers(0) == 0 and resolve_workers(5) == 5
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ConfigError, match="metrics.x.settings.workers: must be an integer >= 0 or auto"):
            resolve_workers(bad, name="metrics.x.settings.workers")


# -- CPU streams in feature extraction ---------------------------------------------------------

class _Probe(FeatureExtractor):
    """Mean colour per image; records which thread ran each batch, and how many torch threads."""

    name = "probe"
    input_size = 8
    dim = 3
    batch_size = 2

    def __init__(self):
        super().__init__(device="cpu")
        self._weights_id = "probe"
        self.seen: list[tuple[str, int, int]] = []

    def _load(self):
        return object()

    def _forward(self, batch):
        import torch

        self.seen.append((threading.current_thread().name, torch.get_num_threads(), len(batch)))
        return batch.reshape(len(batch), -1, 3).mean(1)


def _files(tmp_path, n):
    paths = []
    for i in range(n):
        p = tmp_path / f"{i:02d}.png"
        Image.new("RGB", (8, 8), (i * 10, 255 - i * 10, 7)).save(p)
        paths.append(p)
    return paths


def test_streams_keep_the_order_and_restore_torch_threads(tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    ex = _Probe()
    ex.streams = 3
    paths = _files(tmp_path, 9)
    feats = ex.extract_all(paths)
    assert np.allclose(feats[:, 0], [i * 10 for i in range(9)])  # image order kept
    assert ex.calls == 5 and sum(n for _, _, n in ex.seen) == 9  # 4 batches of 2 and one of 1
    assert all(name.startswith("features") for name, _, _ in ex.seen)
    assert {t for _, t, _ in ex.seen} == {max(1, threads // 3)}
    assert torch.get_num_threads() == threads
    sequential = _Probe()
    assert np.array_equal(sequential.extract_all(paths, workers=0), feats)
    assert {name for name, _, _ in sequential.seen} == {threading.current_thread().name}


def test_a_corrupt_image_in_a_stream_is_named_and_threads_restored(tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    paths = _files(tmp_path, 6)
    paths[4].write_bytes(paths[4].read_bytes()[:30])
    ex = _Probe()
    ex.streams = 2
    with pytest.raises(FeatureError, match="image key-4 can't be decoded"):
        ex.extract_all(paths, names=[f"key-{i}" for i in range(6)])
    assert torch.get_num_threads() == threads


def test_one_stream_decodes_ahead_on_worker_threads(tmp_path):
    ex = _Probe()
    ex.streams = 1  # the GPU path: the model in this thread, decoding on the pool
    paths = _files(tmp_path, 7)
    feats = ex.extract_all(paths, workers=3)
    assert np.allclose(feats[:, 0], [i * 10 for i in range(7)])
    assert [n for _, _, n in ex.seen] == [2, 2, 2, 1]
    assert {name for name, _, _ in ex.seen} == {threading.current_thread().name}


def test_streams_only_on_the_cpu():
    ex = _Probe()
    assert ex.cpu_streams() >= 1
    ex.device = "cuda:0"
    assert ex.cpu_streams() == 1


def test_cpu_streams_take_small_batches_and_one_small_batch_runs_on_all_threads(tmp_path):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    ex = _Probe()
    ex.batch_size, ex.stream_batch, ex.streams = 32, 3, 2
    paths = _files(tmp_path, 7)
    feats = ex.extract_all(paths)
    assert np.allclose(feats[:, 0], [i * 10 for i in range(7)])
    assert sorted(n for _, _, n in ex.seen) == [1, 3, 3]  # stream batches, not one of 7
    ex.seen.clear()
    ex.extract_all(paths[:3])  # a single stream batch: no streams, every torch thread
    assert ex.seen == [(threading.current_thread().name, threads, 3)]
