"""PIL's bicubic resize as two exact float64 matrix products (run on a GPU next to the model):
every pixel equal to the installed PIL, down- and upscaling, odd and extreme shapes; a shape
that does not match falls back to PIL."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
from PIL import Image

from harness.metrics import resize
from harness.metrics.features import FeatureExtractor

torch = pytest.importorskip("torch")


def _pil(a: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC))


@pytest.mark.parametrize("size", [50, 224])
def test_equals_pil_pixel_for_pixel(size):
    rng = np.random.default_rng(size)
    sides = [1, 3, 37, 63, 90, 130, 512]
    for h, w in itertools.product(sides, repeat=2):
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # worst case for rounding
        smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
                            .resize((w, h), Image.BICUBIC))
        batch = torch.from_numpy(np.stack([noise, smooth]))
        got = resize.resize_bicubic(batch, size).numpy()
        assert got.dtype == np.uint8 and got.shape == (2, size, size, 3)
        for k, a in enumerate((noise, smooth)):
            assert np.array_equal(got[k], _pil(a, size)), (h, w, size, k)


def test_the_pass_order_follows_pillow():
    # Height shrinking by more than twice the width's shrink: Pillow 13 starts vertically.
    assert resize.horizontal_first(512, 512, 224) and resize.horizontal_first(37, 53, 224)
    assert not resize.horizontal_first(90, 20, 50) and not resize.horizontal_first(130, 63, 50)
    a = np.random.default_rng(0).integers(0, 256, (90, 20, 3), dtype=np.uint8)
    assert resize.verify(a, 50)


def test_fixed_point_weights_are_pils():
    m = resize.pil_bicubic_matrix(512, 224)
    assert np.array_equal(m, np.round(m))  # integers
    # Each column sums to 2^22 up to the rounding of its taps (PIL's normalised weights).
    cols = m.sum(axis=0)
    assert np.all(np.abs(cols - (1 << resize.PRECISION_BITS)) <= 8)
    assert (m != 0).sum(axis=0).max() <= int(np.ceil(2 * 512 / 224)) * 2 + 1


class _Means(FeatureExtractor):
    """Mean colour of the resized image, through torch (it takes device tensors)."""

    name = "means"
    torch_input = True
    input_size = 32
    dim = 3

    def __init__(self):
        super().__init__(device="cpu")
        self._weights_id = "means"

    def _load(self):
        return object()

    def _forward(self, batch):
        x = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
        return x.double().mean(dim=(1, 2)).numpy()


def _files(tmp_path, shapes):
    rng = np.random.default_rng(5)
    paths = []
    for i, (h, w) in enumerate(shapes):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_device_resize_gives_the_pil_path_features(tmp_path):
    paths = _files(tmp_path, [(64, 48), (90, 20), (32, 32), (64, 48), (200, 300)] * 2)
    ex = _Means()
    ex.streams, ex.batch_size = 1, 3
    want = ex.extract_all(paths, workers=2)
    ex.resize_on_device = True
    got = ex.extract_all(paths, workers=2)
    assert np.array_equal(got, want)
    assert ex._resize_checked == {(64, 48, 3): True, (90, 20, 3): True, (200, 300, 3): True,
                                  (32, 32, 3): True}


def test_a_shape_another_pillow_resizes_differently_goes_through_pil(tmp_path, monkeypatch, caplog):
    paths = _files(tmp_path, [(90, 20), (64, 48), (90, 20)])
    ex = _Means()
    ex.streams = 1
    want = ex.extract_all(paths)
    monkeypatch.setattr(resize, "horizontal_first", lambda h, w, size: True)  # an older rule
    ex.resize_on_device = True
    with caplog.at_level(logging.WARNING, logger="harness.metrics.features"):
        got = ex.extract_all(paths)
    assert np.array_equal(got, want)
    assert ex._resize_checked[(90, 20, 3)] is False and ex._resize_checked[(64, 48, 3)] is True
    assert "resizing those with PIL" in caplog.text
