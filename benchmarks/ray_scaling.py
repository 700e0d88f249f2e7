"""Ray executor scaling and overhead, on a local Ray instance.

1. Scaling: a generator that sleeps 100 ms per image, 8 model actors on fractional CPUs; the
   steady throughput (first and last 10% of images left out: actor start-up and the tail) must
   reach 0.8 x the ideal 8 / 0.1 s = 80 images/s. Every image still goes through the driver's
   store writes, so this also measures the single writer.
2. Overhead: the untrained toy models on a small suite, executor=local vs executor=ray (one
   actor), printed as a ratio, with and without the Ray instance's start-up.

The scaling run is checked at the far side, the store: one ok record per image, and every stored
image byte-equal to the PNG the generator makes for that request's seed (made again here, bare).
Headline: steady throughput over the ideal, FAIL also when a check fails.
``--self-test`` runs 80 images on 4 actors (no overhead part) with known faults in the generator
(every 8th image an error, every 4th image another seed's) and exits 0 only if each prints FAIL
and the clean run's checks pass.

Usage: python benchmarks/ray_scaling.py [--images N] [--workers W] [--self-test]
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


def seed_png(seed: int) -> bytes:
    """The Sleeper's image for a seed: a 4x4 PNG of one colour."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (seed % 256, seed // 256 % 256, seed // 65536 % 256)).save(buf, format="PNG")
    return buf.getvalue()


class Sleeper(Generator):
    """Sleeps a fixed time per image; the image is a 4x4 PNG coloured by the seed."""

    kind = "sleeper"
    fault = ""
    """Self-test only: "errors" (every 8th image an error) or "wrong_seed" (every 4th image
    another seed's)."""

    def _generate(self, requests):
        time.sleep(SECONDS_PER_IMAGE * len(requests))
        out = []
        for r in requests:
            if self.fault == "errors" and r.seed % 8 == 0:
                out.append(GenResult(status="error", error="injected fault"))
                continue
            seed = r.seed + 1 if self.fault == "wrong_seed" and r.seed % 4 == 0 else r.seed
            out.append(GenResult(status="ok", image=seed_png(seed), latency_s=SECONDS_PER_IMAGE))
        return out


def check_store(store: Store, units, images: int) -> list[str]:
    """What the store lacks or holds wrong for the scaling run (empty: nothing)."""
    problems = []
    recs = {r.key: r for r in store.records_for_keys([u.key for u in units])}
    ok = [r for r in recs.values() if r.status == "ok"]
    if len(ok) != images:
        problems.append(f"{len(ok)} ok records in the store for {images} images")
    wrong = sum(store.read_image(r.image_sha256) != seed_png(r.seed) for r in ok)
    if wrong:
        problems.append(f"{wrong} stored images differ from the generator's image for their seed")
    return problems


def scaling(tmp: Path, images: int, workers: int, batch: int,
            fault: str = "") -> tuple[float, float, float, list[str]]:
    """(steady images/s, overall images/s, ideal images/s, what the store check found)."""
    gen = Sleeper(name="sleeper", label="sleeper", model_id="bench/sleeper", batch_size=batch)
    gen.fault = fault
    gens = {"sleeper": gen}
    suite = Suite(name="bench", prompts=tuple(Prompt(id=f"p{i:05d}", text=f"p{i}") for i in range(images)))
    units = plan_units(suite, gens, samples=1, seed=0)
    store = Store(tmp / "scaling")
    ex = RayExecutor({"workers": workers, "cpus_per_worker": CPUS / workers, "log_to_driver": False})
    t0 = time.perf_counter()
    ex.execute(store, gens, units, progress=False)
    overall = images / (time.perf_counter() - t0)
    problems = check_store(store, units, images)
    stamps = sorted(datetime.fromisoformat(r[0]).timestamp()
                    for r in store.db.execute("SELECT created_at FROM records"))
    lo, hi = images // 10, min(images - images // 10, len(stamps)) - 1
    steady = (hi - lo) / max(stamps[hi] - stamps[lo], 1e-9)
    return steady, overall, workers / SECONDS_PER_IMAGE, problems


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


def headline(ratio: float, problems: list[str]) -> bool:
    for line in problems:
        print(f"check failed: {line}")
    ok = ratio >= 0.8 and not problems
    print(f"ray_scaling: {ratio:.3f} (target >= 0.8) {'ok' if ok else 'FAIL'}")
    return ok


def self_test(tmp: Path) -> int:
    """80 images on 4 actors: clean (checks must pass), then each generator fault must FAIL."""
    verdicts, clean = {}, []
    for fault in ("", "errors", "wrong_seed"):
        print(f"== {fault or 'clean'}")
        steady, _, ideal, problems = scaling(tmp / (fault or "clean"), 80, 4, 4, fault)
        verdicts[fault] = headline(steady / ideal, problems)
        if not fault:
            clean = problems
        else:
            print(f"self-test {fault}: {'ok (NOT caught)' if verdicts[fault] else 'FAIL (caught)'}")
    caught = [not v for f, v in verdicts.items() if f]
    good = all(caught) and not clean
    print(f"ray_scaling self-test: {sum(caught)} of {len(caught)} faults caught, clean checks "
          f"{'ok' if not clean else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4, help="images per generate call")
    ap.add_argument("--self-test", action="store_true",
                    help="inject known faults into the generator; each must print FAIL")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False, namespace="harness",
                 object_store_memory=100 * 2**20)
        startup = time.perf_counter() - t0
        try:
            if args.self_test:
                return self_test(tmp)
            steady, overall, ideal, problems = scaling(tmp, args.images, args.workers, args.batch)
            local_s, ray_s = overhead(tmp)
        finally:
            ray.shutdown()
    ratio = steady / ideal
    print(f"scaling: {args.images} images, {args.workers} workers x {SECONDS_PER_IMAGE * 1000:.0f} ms/image, "
          f"batch {args.batch}: steady {steady:.1f} images/s, overall {overall:.1f} images/s "
          f"(actor start-up included), ideal {ideal:.0f} images/s; store checked: every image "
          "byte-equal to its seed's")
    print(f"overhead: untrained toy suite (32 images): local {local_s:.2f} s, ray {ray_s:.2f} s "
          f"(cluster up) -> ratio {ray_s / local_s:.2f}; "
          f"with the local Ray instance's start-up ({startup:.1f} s): {(ray_s + startup) / local_s:.2f}")
    return 0 if headline(ratio, problems) else 1


if __name__ == "__main__":
    raise SystemExit(main())
