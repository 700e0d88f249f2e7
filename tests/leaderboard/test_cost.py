"""Cost model against hand computations."""

import math

import pytest

from harness.leaderboard.cost import (
    GpuPrice,
    cost_table,
    crossover,
    gpus_needed,
    plot_cost,
    self_hosted_per_day,
    self_hosted_per_image,
)

H100 = GpuPrice(usd_per_hour=2.4, utilisation=0.5)


def test_per_image_and_per_day_by_hand():
    # 1.8 s/img at $2.40/h and 50% utilisation: 1.8 * 2.4 / 3600 / 0.5 = $0.0024 per image.
    assert self_hosted_per_image(1.8, H100) == pytest.approx(0.0024)
    # One GPU makes 86400 * 0.5 / 1.8 = 24,000 images a day.
    assert gpus_needed(24_000, 1.8, H100) == 1 and gpus_needed(24_001, 1.8, H100) == 2
    assert self_hosted_per_day(10, 1.8, H100) == pytest.approx(57.6)  # a GPU 24 h, even idle


def test_crossover_by_hand():
    # One GPU costs $57.60/day; at $0.04/img the API costs that at 1,440 images/day.
    assert crossover(1.8, H100, 0.04) == pytest.approx(1440)
    # At $0.002/img the marginal GPU cost ($0.0024) is higher: self-hosting never wins.
    assert crossover(1.8, H100, 0.002) is None
    # 36 s/img costs 36 * 2.4 / 3600 / 0.5 = $0.048 per image at full load: above $0.01.
    assert crossover(36, H100, 0.01) is None
    # Two GPUs minimum: the crossover doubles.
    assert crossover(1.8, GpuPrice(2.4, 0.5, min_gpus=2), 0.04) == pytest.approx(2880)


def test_crossover_when_one_gpu_is_not_enough():
    # 10 s/img at 50%: 4,320 images per GPU-day. API $0.02: one GPU ($57.60) pays off at 2,880
    # images (< 4,320): crossover 2,880.
    assert crossover(10, H100, 0.02) == pytest.approx(2880)
    # Marginal cost 10 * 2.4 / 3600 / 0.5 = $0.01333 per image: an API at $0.013 always wins.
    assert crossover(10, H100, 0.013) is None
    # At $0.0135 one GPU pays off at 57.6 / 0.0135 = 4,267 images, within its 4,320 capacity.
    x = crossover(10, H100, 0.0135)
    assert x == pytest.approx(57.6 / 0.0135)


def test_table_and_plot(tmp_path):
    t = cost_table({"sdxl": 1.8}, {"gpt-image-1 medium": 0.042, "cheap": 0.001}, H100)
    assert list(t["api"]) == ["gpt-image-1 medium", "cheap"]
    assert t.loc[0, "crossover_images_per_day"] == pytest.approx(57.6 / 0.042)
    assert math.isnan(t.loc[1, "crossover_images_per_day"])
    plot_cost({"sdxl": 1.8}, {"gpt-image-1 medium": 0.042}, H100, tmp_path / "cost.png")
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_prices_rejected():
    with pytest.raises(ValueError, match="utilisation"):
        GpuPrice(2.0, utilisation=1.5)
