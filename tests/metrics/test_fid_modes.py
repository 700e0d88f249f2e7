"""FID modes (clean-fid's clean / legacy_pytorch / legacy_tensorflow): each mode's resize against
the reference implementation's resize re-written here independently, the mode stored and
printed with every value, and the Fréchet distance on fixed features against clean-fid's
formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput, reading_notes
from harness.metrics.features import EfficientNetLite0, FeatureExtractor, InceptionV3FID
from harness.metrics.fid import FID, feature_stats, frechet_distance
from harness.metrics.resize import (
    RESIZE_MODES,
    resize_for_mode,
    resize_legacy_pytorch,
    resize_legacy_tensorflow,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

SHAPES = [(64, 48, 299), (512, 512, 299), (37, 53, 299), (299, 299, 299), (300, 200, 224), (20, 30, 64)]


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- legacy_pytorch: pytorch-fid's F.interpolate(bilinear, align_corners=False) --------------------


def _bilinear_half_pixel(a: np.ndarray, size: int) -> np.ndarray:
    """torch's bilinear with align_corners=False written out pixel by pixel: source coordinate
    (j + 0.5) * in / out - 0.5, clamped below at 0; neighbours clamped at the last pixel."""
    h, w = a.shape[:2]
    out = np.zeros((size, size, a.shape[2]), np.float64)

    def axis(n_in, j):
        s = max((j + 0.5) * n_in / size - 0.5, 0.0)
        i0 = min(int(math.floor(s)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, s - i0

    for y in range(size):
        y0, y1, fy = axis(h, y)
        for x in range(size):
            x0, x1, fx = axis(w, x)
            out[y, x] = ((1 - fy) * ((1 - fx) * a[y0, x0] + fx * a[y0, x1])
                         + fy * ((1 - fx) * a[y1, x0] + fx * a[y1, x1]))
    return out


@pytest.mark.parametrize("h,w,size", [(64, 48, 61), (512, 300, 47), (37, 53, 64), (50, 50, 50), (20, 30, 64)])
def test_legacy_pytorch_resize_matches_half_pixel_bilinear(h, w, size):
    a = _img(h, w, seed=h + w)
    got = resize_legacy_pytorch(a, size)
    assert got.dtype == np.float32 and got.shape == (size, size, 3)
    # torch computes the source coordinates in float32: ~1e-5 px, so ~1e-2 levels on noise.
    np.testing.assert_allclose(got, _bilinear_half_pixel(a.astype(np.float64), size), atol=1e-2)


@pytest.mark.slow
def test_legacy_pytorch_resize_matches_pytorch_fid_inside_the_network():
    # pytorch-fid scales to [0, 1] first and resizes inside InceptionV3.forward; linear, so the
    # same up to float rounding. Its module is used here when installed, as a second reference.
    pf = pytest.importorskip("pytorch_fid.inception")
    import inspect

    assert "F.interpolate(x," in inspect.getsource(pf.InceptionV3.forward)
    assert "mode='bilinear'" in inspect.getsource(pf.InceptionV3.forward)
    a = _img(100, 80, seed=5)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    want = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    np.testing.assert_allclose(resize_legacy_pytorch(a, 299) / 255, want.numpy(), atol=1e-6)


def test_legacy_pytorch_matches_clean_fid_resizer():
    resize = pytest.importorskip("cleanfid.resize")
    a = _img(120, 90, seed=9)
    want = resize.make_resizer("PyTorch", False, "bilinear", (299, 299))(a)
    np.testing.assert_allclose(resize_legacy_pytorch(a, 299), want, atol=1e-3)


# -- legacy_tensorflow: TF1 resize_bilinear as the TF FID graph (and NVIDIA's port) does ---------------


def _tf1_by_grid_sample(a: np.ndarray, size: int) -> np.ndarray:
    """How the TorchScript port of the TF FID Inception (clean-fid's legacy_tensorflow) emulates
    TF1's resize: an affine grid shifted by 1/in - 1/out, grid_sample bilinear, border padding."""
    h, w = a.shape[:2]
    x = torch.from_numpy(a).permute(2, 0, 1)[None].to(torch.float32)
    theta = torch.eye(2, 3)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    grid = F.affine_grid(theta[None], [1, 3, size, size], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return y[0].permute(1, 2, 0).numpy()


def _tf1_by_definition(a: np.ndarray, size: int) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False) by its definition, pixel by pixel."""
    h, w = a.shape[:2]
    out = np.zeros((size, size, 3))
    for y in range(size):
        sy = y * h / size
        y0 = int(sy)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for x in range(size):
            sx = x * w / size
            x0 = int(sx)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = a[y0, x0] + (a[y0, x1] - a[y0, x0]) * fx
            bottom = a[y1, x0] + (a[y1, x1] - a[y1, x0]) * fx
            out[y, x] = top + (bottom - top) * fy
    return out


@pytest.mark.parametrize("h,w,size", SHAPES)
def test_legacy_tensorflow_resize_matches_the_torchscript_port(h, w, size):
    a = _img(h, w, seed=h * w)
    got = resize_legacy_tensorflow(a, size)
    assert got.dtype == np.float32 and got.shape == (size, size, 3)
    np.testing.assert_allclose(got, _tf1_by_grid_sample(a, size), atol=1e-2)


@pytest.mark.parametrize("h,w,size", [(37, 53, 64), (20, 30, 64), (64, 64, 40), (400, 300, 33)])
def test_legacy_tensorflow_resize_matches_tf1_definition(h, w, size):
    a = _img(h, w, seed=1).astype(np.float64)
    np.testing.assert_allclose(resize_legacy_tensorflow(a.astype(np.uint8), size),
                               _tf1_by_definition(a, size), atol=1e-3)


def test_modes_differ_and_clean_is_pil_bicubic():
    a = _img(512, 384, seed=3)
    outs = {m: resize_for_mode(a, 299, m).astype(np.float64) for m in RESIZE_MODES}
    want = np.asarray(Image.fromarray(a).resize((299, 299), Image.BICUBIC))
    assert np.array_equal(outs["clean"], want)
    # Downscaling noise: the antialiased bicubic smooths, the two bilinears alias, differently.
    for m1, m2 in [("clean", "legacy_pytorch"), ("clean", "legacy_tensorflow"),
                   ("legacy_pytorch", "legacy_tensorflow")]:
        assert np.abs(outs[m1] - outs[m2]).mean() > 5, (m1, m2)
    with pytest.raises(ValueError, match="unknown resize mode"):
        resize_for_mode(a, 299, "tf")


def test_clean_is_clean_fids_pil_bicubic_up_to_uint8_rounding():
    # clean-fid's clean mode resizes each channel as float32 ('F' mode); ours rounds to uint8 (as
    # the stored images are uint8 and the device resize reproduces it bit for bit) after each of
    # its two passes: the two differ by those roundings, about one level at most, on images
    # whose bicubic overshoot stays inside 0..255 (PIL's uint8 path also clips between its two
    # passes, which on pure noise moves pixels much further).
    resize = pytest.importorskip("cleanfid.resize")
    yy, xx = np.mgrid[0:200, 0:150]
    a = np.stack([128 + 90 * np.sin(xx / 7.0 + c) * np.cos(yy / 11.0 - c) for c in range(3)], -1)
    a = np.round(a).astype(np.uint8)
    want = resize.make_resizer("PIL", False, "bicubic", (299, 299))(a)
    got = resize_for_mode(a, 299, "clean").astype(np.float64)
    assert np.abs(got - want).max() <= 1.2 and np.abs(got - want).mean() < 0.4


# -- the modes in the extractor and the metric ----------------------------------------------------------


@pytest.mark.slow
def test_extractor_features_follow_the_mode():
    ex = EfficientNetLite0(device="cpu")
    imgs = [Image.fromarray(_img(90, 120, seed=s)) for s in range(2)]
    feats = {}
    for mode in RESIZE_MODES:
        ex.resize_mode = mode
        want = ex.forward_uint8(np.stack([resize_for_mode(np.asarray(i), 224, mode) for i in imgs]))
        # the batch path and the threaded path resize the same way
        feats[mode] = ex.extract_all(imgs, workers=0 if mode == "clean" else 1)
        np.testing.assert_allclose(feats[mode], want, rtol=1e-4, atol=1e-4)
    assert np.abs(feats["clean"] - feats["legacy_pytorch"]).max() > 1e-3
    assert np.abs(feats["legacy_pytorch"] - feats["legacy_tensorflow"]).max() > 1e-3


def test_inception_input_scaling_per_mode():
    # The TF graph scales (x - 128) / 128; pytorch-fid and the clean mode 2x/255 - 1. An identity
    # network shows what reaches the first convolution.
    ex = InceptionV3FID(device="cpu")
    ex.model = torch.nn.Identity()
    batch = np.stack([resize_legacy_tensorflow(_img(10, 10), 8)])
    ex.resize_mode = "legacy_tensorflow"
    got = ex._forward(batch)
    np.testing.assert_allclose(got, (batch.transpose(0, 3, 1, 2) - 128) / 128, atol=1e-5)
    ex.resize_mode = "legacy_pytorch"
    np.testing.assert_allclose(ex._forward(batch), batch.transpose(0, 3, 1, 2) / 127.5 - 1, atol=1e-5)


def test_mode_is_stored_and_printed_and_checked(tmp_path):
    base = FID(name="fid").describe()
    assert base["mode"] == "clean" and base["resize"] == "bicubic"
    assert "resize_mode" not in base["extractor"]  # the clean mode's feature cache key is unchanged
    legacy = FID(name="fid", settings={"mode": "legacy_tensorflow"})
    d = legacy.describe()
    assert d["mode"] == "legacy_tensorflow" and "TF1 resize_bilinear" in d["resize"]
    assert d["extractor"]["resize_mode"] == "legacy_tensorflow"
    assert legacy.settings_hash() != FID(name="fid").settings_hash()
    # values stored before modes existed (no "mode" in their settings) are the clean mode's and
    # keep their hash: the clean mode's hash is that of its identity without the mode
    from harness.types import canonical_json, sha256_hex

    clean = FID(name="fid")
    old_identity = {k: v for k, v in clean.identity().items() if k != "mode"}
    assert clean.settings_hash() == sha256_hex(canonical_json(old_identity))[:16]
    note = reading_notes(d).table_note
    assert "mode `legacy_tensorflow`" in note and "TF FID" in note
    assert "mode `clean`" in reading_notes(base).table_note
    with pytest.raises(ConfigError, match=r"metrics.fid.settings.mode: unknown FID mode 'legacy_torch'"
                       r".*Did you mean 'legacy_pytorch'"):
        FID(name="fid", settings={"mode": "legacy_torch"})


class _PixelMeans(FeatureExtractor):
    """Mean of each pixel row and channel of a 12 px input: 36-d, no model, sensitive to the resize."""

    name = "pixel_means"
    label = "test features"
    input_size = 12
    dim = 36

    def __init__(self):
        super().__init__(weights=None)
        self._weights_id = "test"
        self.batches = []

    def _load(self):
        return object()

    def _forward(self, batch):
        self.batches.append(np.asarray(batch))
        return np.asarray(batch, dtype=np.float64).mean(axis=2).reshape(len(batch), -1)


def test_fid_value_records_its_mode_and_uses_its_resize(tmp_path):
    rng = np.random.default_rng(0)
    ref = tmp_path / "ref"
    ref.mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(ref / f"{i}.png")
    gen = [rng.integers(0, 256, (40, 30, 3), dtype=np.uint8) for _ in range(3)]
    values = {}
    for mode in RESIZE_MODES:
        m = FID(name="fid", settings={"reference": str(ref), "mode": mode, "kid_subsets": 2})
        m.extractor = _PixelMeans()
        m.extractor.resize_mode = mode
        items = [ScoreInput(key=f"k{i}", model="m", image=Image.fromarray(a), prompt={"id": f"p{i}"})
                 for i, a in enumerate(gen)]
        value, extra = m.score_set(items)
        assert extra["mode"] == mode
        seen = np.concatenate(m.extractor.batches)[-3:]  # the generated images, after the reference
        want = np.stack([resize_for_mode(a, 12, mode) for a in gen])
        np.testing.assert_allclose(seen, want, atol=1e-4)
        values[mode] = value["fid"]
    assert len({round(v, 6) for v in values.values()}) == 3


# -- Fréchet distance on fixed features against clean-fid's formula -------------------------------------


@pytest.mark.parametrize("n,d", [(300, 32), (50, 64), (1000, 128)])
def test_frechet_matches_clean_fid_formula(n, d):
    cf = pytest.importorskip("cleanfid.fid")
    rng = np.random.default_rng(n + d)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)
    y = rng.standard_normal((n + 7, d)) * 1.1 + 0.3
    mu1, s1 = feature_stats(x)
    mu2, s2 = feature_stats(y)
    want = cf.frechet_distance(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6, abs=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2, feats1=x) == pytest.approx(want, rel=1e-6, abs=1e-8)
