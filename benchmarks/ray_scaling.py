"""Ray executor scaling and overhead, on a local Ray instance.

1. Scaling: a generator that sleeps 100 ms per image, 8 model actors on fractional CPUs; the
   steady throughput (first and last 10% of images left out: actor start-up and the tail) must
   reach 0.8 x the ideal 8 / 0.1 s = 80 images/s. Every image still goes through the driver's
   store writes, so this also measures the single writer.
2. Overhead: the untrained toy models on a small suite, executor=local vs executor=ray (one
   actor), printed as a ratio, with and without the Ray instance's start-up.

Usage: python benchmarks/ray_scaling.py [--images N] [--workers W]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from datetime import datetime
from pathlib import Path

import ray

from harness.assemble import compose
from harness.cli import dispatch
from harness.generators.base import Generator
from harness.runner.plan import plan_units
from harness.runner.ray_executor import RayExecutor
from harness.store import Store
from harness.types import GenResult, Prompt, Suite

SECONDS_PER_IMAGE = 0.1
CPUS = 2
"""CPUs of the local Ray instance (CI's runners have 2): the actors share them."""


class Sleeper(Generator):
    """Sleeps a fixed time per image; the image is a 4x4 PNG coloured by the seed."""

    kind = "sleeper"

    def _generate(self, requests):
        from PIL import Image

        time.sleep(SECONDS_PER_IMAGE * len(requests))
        out = []
        for r in requests:
            buf = io.BytesIO()
            Image.new("RGB", (4, 4), (r.seed % 256, r.seed // 256 % 256, r.seed // 65536 % 256)).save(
                buf, format="PNG")
            out.append(GenResult(status="ok", image=buf.getvalue(), latency_s=SECONDS_PER_IMAGE))
        return out


def scaling(tmp: Path, images: int, workers: int, batch: int) -> tuple[float, float, float]:
    """(steady images/s, overall images/s, ideal images/s)."""
    gens = {"sleeper": Sleeper(name="sleeper", label="sleeper", model_id="bench/sleeper", batch_size=batch)}
    suite = Suite(name="bench", prompts=tuple(Prompt(id=f"p{i:05d}", text=f"p{i}") for i in range(images)))
    units = plan_units(suite, gens, samples=1, seed=0)
    store = Store(tmp / "scaling")
    ex = RayExecutor({"workers": workers, "cpus_per_worker": CPUS / workers, "log_to_driver": False})
    t0 = time.perf_counter()
    ex.execute(store, gens, units, progress=False)
    overall = images / (time.perf_counter() - t0)
    stamps = sorted(datetime.fromisoformat(r[0]).timestamp()
                    for r in store.db.execute("SELECT created_at FROM records"))
    assert len(stamps) == images, len(stamps)
    lo, hi = images // 10, images - images // 10 - 1
    steady = (hi - lo) / max(stamps[hi] - stamps[lo], 1e-9)
    return steady, overall, workers / SECONDS_PER_IMAGE


def overhead(tmp: Path) -> tuple[float, float]:
    """Seconds of generate for executor=local and executor=ray (cluster up), and Ray's start-up."""
    small = ["command=generate", "progress=false", "experiment=untrained", "suite.limit=8", "samples=2",
             "run.name=o", "+models.toy_unet.options.torch_threads=1",
             "+models.toy_dit.options.torch_threads=1"]
    ray_args = ["executor=ray", "executor.options.workers=1", "executor.options.log_to_driver=false"]
    # Build the tiny models once, outside the timings.
    dispatch(compose([*small, f"store.root={tmp / 'warm'}"]))
    times = {}
    for name, extra in (("local", []), ("ray", ray_args)):
        cfg = compose([*small, f"store.root={tmp / name}", *extra])
        t0 = time.perf_counter()
        dispatch(cfg)
        times[name] = time.perf_counter() - t0
    return times["local"], times["ray"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="images per generate call")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, namespace="harness",
                 object_store_memory=100 * 2**20)
        startup = time.perf_counter() - t0
        try:
            steady, overall, ideal = scaling(tmp, args.images, args.workers, args.batch)
            local_s, ray_s = overhead(tmp)
        finally:
            ray.shutdown()
    ratio = steady / ideal
    print(f"scaling: {args.images} images, {args.workers} workers x {SECONDS_PER_IMAGE * 1000:.0f} ms/image, "
          f"batch {args.batch}: steady {steady:.1f} images/s, overall {overall:.1f} images/s "
          f"(actor start-up included), ideal {ideal:.0f} images/s")
    print(f"overhead: untrained toy suite (32 images): local {local_s:.2f} s, ray {ray_s:.2f} s "
          f"(cluster up) -> ratio {ray_s / local_s:.2f}; "
          f"with the local Ray instance's start-up ({startup:.1f} s): {(ray_s + startup) / local_s:.2f}")
    ok = ratio >= 0.8
    print(f"ray_scaling: {ratio:.3f} (target >= 0.8) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
