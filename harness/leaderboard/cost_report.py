"""`harness cost`: the cost model applied to what a run measured (reads only the store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.leaderboard.cost import GpuPrice, cost_table, plot_cost
from harness.store import Store, StoreError

REFERENCE_APIS = (  # compared with when the run itself has no API model (current, priced)
    ("openai", "gpt-image-1-mini", "medium", "1024x1024"),
)


def measured(store: Store, run_id: str) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """(self-hosted model -> median seconds per image, API model -> mean USD per image,
    self-hosted model -> device it was measured on), from the run's ok records."""
    infos = store.run_models(run_id)
    local: dict[str, float] = {}
    apis: dict[str, float] = {}
    devices: dict[str, str] = {}
    ok = store.records(run_id, status="ok")
    for model, info in infos.items():
        recs = [r for r in ok if r.model == model]
        costs = [r.cost_usd for r in recs if r.cost_usd is not None]
        if costs or info.get("price_per_image") is not None:
            apis[info.get("label", model)] = float(np.mean(costs)) if costs else float(
                info["price_per_image"])
            continue
        lat = [r.latency_s for r in recs if r.latency_s]
        if lat:
            label = info.get("label", model)
            local[label] = float(np.median(lat))
            devices[label] = ",".join(sorted({str(r.device) for r in recs if r.device}))
    return local, apis, devices


def write_cost_report(store: Store, run_id: str, cfg: Any, out_dir: str) -> Path:
    run = store.run(run_id)
    local, apis, devices = measured(store, run_id)
    if not local:
        raise StoreError(f"run {run_id!r} has no self-hosted images with measured latency: nothing "
                         "to cost. Run a local model first (harness run models=[...]).")
    apis.update({str(k): float(v) for k, v in (cfg.api_prices or {}).items()})
    sources = []
    if not apis:
        from harness.prices import price_per_image

        for provider, model, quality, size in REFERENCE_APIS:
            found = price_per_image(provider, model, size, quality)
            if found:
                apis[f"{model} {quality} {size}"] = found[0]
                sources.append(f"{model} as of {found[1]['as_of']}, {found[1]['source']}")
    reference_note = f" (list prices: {'; '.join(sources)})" if sources else ""
    if cfg.gpu_usd_per_hour is None:
        raise ConfigError("harness cost needs a GPU price: set cost.gpu_usd_per_hour (USD per GPU hour, "
                         "e.g. cost.gpu_usd_per_hour=2.5)")
    gpu = GpuPrice(float(cfg.gpu_usd_per_hour), float(cfg.utilisation), int(cfg.min_gpus),
                   str(cfg.gpu_name))
    table = cost_table(local, apis, gpu)
    folder = Path(out_dir) / run.suite / run_id
    folder.mkdir(parents=True, exist_ok=True)
    plot_cost(local, apis, gpu, folder / "cost.png")
    table.to_csv(folder / "cost.csv", index=False, float_format="%.6g")
    lines = [
        f"# Cost: {run.suite} / {run_id}", "",
        f"Self-hosted on {gpu.name} at ${gpu.usd_per_hour:g}/h, {gpu.utilisation:.0%} utilisation, "
        f"at least {gpu.min_gpus} GPU(s) running 24 h; API prices{reference_note}.", "",
        "| self-hosted | s/image (measured on) | $/1000 self-hosted | API | $/1000 API "
        "| crossover (images/day) |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        x = r["crossover_images_per_day"]
        lines.append(
            f"| {r['self_hosted']} | {r['seconds_per_image']:.3g} ({devices.get(r['self_hosted'], '?')}) "
            f"| {r['self_hosted_usd_per_1000']:.3g} | {r['api']} | {r['api_usd_per_1000']:.3g} | "
            f"{'never (API cheaper per image)' if math.isnan(x) else f'{x:,.0f}'} |")
    if any(d and "cuda" not in d for d in devices.values()):
        lines += ["", "> Seconds per image were measured on a CPU here: the GPU price only means "
                      "something with seconds measured on that GPU (run the models on it)."]
    lines += ["", "![cost against daily volume](cost.png)", ""]
    (folder / "cost.md").write_text("\n".join(lines), encoding="utf-8")
    return folder / "cost.md"
