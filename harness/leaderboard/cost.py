"""Cost model: self-hosted cost per image from measured GPU seconds, against API list prices,
and the daily volume at which self-hosting becomes cheaper (the crossover).

Self-hosting rents whole GPUs by the hour: at V images a day a model needing s seconds per image
at utilisation u needs ceil(V s / (86400 u)) GPUs (at least ``min_gpus``), billed 24 h a day. An
API bills V x price. The crossover is the smallest V at which the GPUs cost no more than the API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class GpuPrice:
    usd_per_hour: float
    """Rental price of one GPU."""
    utilisation: float = 0.6
    """Share of paid GPU time spent generating (queueing, idle hours and restarts eat the rest)."""
    min_gpus: int = 1
    """GPUs kept running even at low volume."""
    name: str = "GPU"

    def __post_init__(self) -> None:
        if self.usd_per_hour <= 0 or not 0 < self.utilisation <= 1 or self.min_gpus < 1:
            raise ValueError("cost: gpu_usd_per_hour must be > 0, utilisation in (0, 1] and "
                             f"min_gpus >= 1 (got {self})")


def self_hosted_per_image(seconds_per_image: float, gpu: GpuPrice) -> float:
    """Marginal USD per image on busy GPUs: s x price / 3600 / utilisation."""
    return seconds_per_image * gpu.usd_per_hour / 3600 / gpu.utilisation


def gpus_needed(images_per_day: float, seconds_per_image: float, gpu: GpuPrice) -> int:
    capacity = SECONDS_PER_DAY * gpu.utilisation / seconds_per_image
    return max(gpu.min_gpus, math.ceil(images_per_day / capacity - 1e-12))


def self_hosted_per_day(images_per_day: float, seconds_per_image: float, gpu: GpuPrice) -> float:
    return gpus_needed(images_per_day, seconds_per_image, gpu) * gpu.usd_per_hour * 24


def crossover(seconds_per_image: float, gpu: GpuPrice, api_price: float) -> float | None:
    """Smallest images/day at which self-hosting costs no more than the API; None when it never
    does (the GPU's marginal cost per image is at or above the API price)."""
    if api_price <= 0 or self_hosted_per_image(seconds_per_image, gpu) >= api_price:
        return None
    capacity = SECONDS_PER_DAY * gpu.utilisation / seconds_per_image
    k = gpu.min_gpus
    while True:  # terminates: per-image cost below the API price means k GPUs pay off at full load
        volume = k * gpu.usd_per_hour * 24 / api_price
        if volume <= k * capacity + 1e-9:
            return volume
        k += 1


def cost_table(local: dict[str, float], apis: dict[str, float], gpu: GpuPrice) -> pd.DataFrame:
    """One row per (self-hosted model, API model): per-image costs and the crossover."""
    rows = []
    for model, secs in local.items():
        for api, price in apis.items():
            x = crossover(secs, gpu, price)
            rows.append({
                "self_hosted": model, "seconds_per_image": secs,
                "self_hosted_usd_per_image": self_hosted_per_image(secs, gpu),
                "self_hosted_usd_per_1000": 1000 * self_hosted_per_image(secs, gpu),
                "api": api, "api_usd_per_image": price, "api_usd_per_1000": 1000 * price,
                "crossover_images_per_day": x if x is not None else math.nan,
                "gpus_at_crossover": gpus_needed(x, secs, gpu) if x is not None else math.nan,
            })
    return pd.DataFrame(rows)


def plot_cost(local: dict[str, float], apis: dict[str, float], gpu: GpuPrice, path,
              volumes: np.ndarray | None = None) -> None:
    """Daily cost against daily volume (log-log), one line per model, crossovers marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v = volumes if volumes is not None else np.logspace(1, 7, 400)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for model, secs in local.items():
        ax.step(v, [self_hosted_per_day(x, secs, gpu) for x in v], where="post",
                label=f"{model} self-hosted ({secs:.3g} s/img, {gpu.name} ${gpu.usd_per_hour:g}/h)")
    for api, price in apis.items():
        ax.plot(v, v * price, linestyle="--", label=f"{api} (${price:g}/img)")
    for secs in local.values():
        for price in apis.values():
            x = crossover(secs, gpu, price)
            if x is not None and v[0] <= x <= v[-1]:
                ax.plot([x], [x * price], "ko", ms=4)
                ax.annotate(f"{x:,.0f}/day", (x, x * price), textcoords="offset points",
                            xytext=(5, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("images per day")
    ax.set_ylabel("USD per day")
    ax.set_title(f"Self-hosted vs API cost (utilisation {gpu.utilisation:.0%})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
