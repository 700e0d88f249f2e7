"""Edit preservation against independent references (scikit-image's PSNR and SSIM)."""

import numpy as np
import pytest
from PIL import Image

from harness.metrics.base import ScoreInput
from harness.metrics.preservation import EditPreservation, edit_source, masked_scores


def _pair(seed=0, size=48):
    rng = np.random.default_rng(seed)
    src = rng.random((size, size, 3))
    edited = np.clip(src + rng.normal(0, 0.05, src.shape), 0, 1)
    return src, edited


def test_whole_image_matches_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    src, edited = _pair()
    got = masked_scores(edited, src, None)
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(src, edited, data_range=1.0), abs=1e-5)
    ref = structural_similarity(src, edited, data_range=1.0, channel_axis=2, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=False)
    # torchmetrics pads the borders where scikit-image crops them: equal to ~1e-2.
    assert got["ssim"] == pytest.approx(ref, abs=0.02)


def test_only_pixels_outside_the_region_count():
    from skimage.metrics import peak_signal_noise_ratio

    src, _ = _pair(1)
    edited = src.copy()
    keep = np.ones(src.shape[:2], bool)
    keep[10:30, 10:30] = False  # the edit region
    edited[10:30, 10:30] = 1 - edited[10:30, 10:30]  # a big change inside it
    edited[~keep] += 0  # nothing outside
    got = masked_scores(edited, src, keep)
    assert got["psnr"] == 100.0  # outside untouched: capped
    assert got["changed"] == pytest.approx(np.abs(edited - src)[~keep].mean())
    # A small change outside the region lowers PSNR exactly as on the kept pixels alone.
    edited[0:5, :, :] = np.clip(edited[0:5] + 0.1, 0, 1)
    got = masked_scores(edited, src, keep)
    ref = peak_signal_noise_ratio(src[keep], edited[keep], data_range=1.0)
    assert got["psnr"] == pytest.approx(ref, abs=1e-5)
    with pytest.raises(ValueError, match="covers the whole image"):
        masked_scores(edited, src, np.zeros(src.shape[:2], bool))


def test_metric_reads_source_and_region_from_the_stored_prompt(tmp_path):
    src, edited = _pair(2, 32)
    Image.fromarray((src * 255).astype("uint8")).save(tmp_path / "src.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(tmp_path / "region.png")
    prompt = {"id": "p", "text": "make it red", "meta": {"edit_region": "region.png"},
              "controls": [{"kind": "edit_image", "path": str(tmp_path / "src.png"),
                            "sha256": "x", "params": {}}]}
    assert edit_source(prompt) == (tmp_path / "src.png", tmp_path / "region.png")
    img = Image.fromarray((edited * 255).round().astype("uint8"))
    m = EditPreservation(name="edit_preservation")
    (values, extra), (skipped, why) = m.score_images([
        ScoreInput(key="k", model="m", image=img, prompt=prompt),
        ScoreInput(key="k2", model="m", image=img, prompt={"id": "q", "text": "a cat"})])
    src8 = np.asarray(Image.open(tmp_path / "src.png")) / 255.0
    want = masked_scores(np.asarray(img) / 255.0, src8, mask < 128)
    assert values == pytest.approx(want) and extra["region"] == "region.png"
    assert skipped == {"psnr": None, "ssim": None, "changed": None} and "no edit_image" in why["skipped"]
    # The untouched source preserves perfectly and changes nothing.
    (same, _), = m.score_images([ScoreInput(key="k3", model="m", image=Image.open(tmp_path / "src.png"),
                                            prompt=prompt)])
    assert same["psnr"] == 100.0 and same["ssim"] == pytest.approx(1.0) and same["changed"] == 0.0
