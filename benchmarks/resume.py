"""Resume cost: run the default suite into a fresh store, run it again, compare.

Re-running a finished run must cost <= 2% of its first time and make zero generator calls.
Both runs go through the same entry point as the CLI (compose + dispatch) in this process.

What the second run skipped is checked at the far side, not from the runner's own counters:

- generator calls are counted where they land (``Generator.generate`` on the class);
- the store after the first run holds an ok record for every planned unit, and every image
  file's sha256 is the hash its record names;
- the second run leaves the store as it was: the same records (key, image hash, status, time
  written) and the same score rows.

Headline: ``resume_cost_ratio``, FAIL also when any check fails.
``--self-test`` runs a small suite (the untrained toy models, 2 prompts) with known faults
injected into the store's resume lookup (one that finds nothing, so everything is made again,
and one that finds everything, so nothing is made at all) and exits 0 only if each prints FAIL
and the clean run's checks pass.
Usage: python benchmarks/resume.py [hydra overrides...] [--self-test]
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.assemble import compose
from harness.cli import dispatch
from harness.generators.base import Generator
from harness.store import Store

TARGET = 0.02


@contextlib.contextmanager
def counting_calls() -> Iterator[list[int]]:
    """Count every generator call of the block, on the Generator class itself."""
    box = [0]
    real = Generator.generate

    def generate(self, requests):
        box[0] += 1
        return real(self, requests)

    Generator.generate = generate
    try:
        yield box
    finally:
        Generator.generate = real


def snapshot(store: Store) -> tuple[list, list]:
    """Every record (key, image hash, status, time written) and every score row, in order."""
    records = [tuple(r) for r in store.db.execute(
        "SELECT key, image_sha256, status, created_at FROM records ORDER BY key")]
    scores = [tuple(r) for r in store.db.execute("SELECT * FROM scores ORDER BY 1, 2, 3")]
    return records, scores


def complete(store: Store, run_id: str) -> list[str]:
    """What is missing or wrong in the stored run (empty: every unit ok, every image intact)."""
    problems = []
    counts = store.unit_counts(run_id)
    planned = sum(c.planned for c in counts.values())
    ok = sum(c.ok for c in counts.values())
    if not planned or ok != planned:
        problems.append(f"{ok} ok records for {planned} planned units")
    bad = 0
    for rec in store.records(run_id, status="ok"):
        data = store.read_image(rec.image_sha256)
        bad += hashlib.sha256(data).hexdigest() != rec.image_sha256
    if bad:
        problems.append(f"{bad} image files do not hash to their record's sha256")
    return problems


def bench(overrides: list[str]) -> tuple[bool, list[str]]:
    """Both runs, the checks, the headline; (ok, what the checks found wrong)."""
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"store.root={Path(tmp) / 'store'}", f"report.dir={Path(tmp) / 'reports'}",
                "progress=false", *overrides]

        def once() -> tuple[float, int, dict]:
            cfg = compose(["command=run", *base])
            with counting_calls() as calls:
                t0 = time.perf_counter()
                res = dispatch(cfg)
                seconds = time.perf_counter() - t0
            return seconds, calls[0], res

        first, first_calls, res = once()
        store, run_id = res["store"], res["run_id"]
        problems = complete(store, run_id)
        before = snapshot(store)
        second, second_calls, res2 = once()
        after = snapshot(res2["store"])
    ratio = second / first
    print(f"first run: {first:.2f} s, {first_calls} generator calls; store: {len(before[0])} records, "
          f"{len(before[1])} scores")
    print(f"second run: {second:.3f} s, {second_calls} generator calls (counted at the generator); "
          f"store: {len(after[0])} records, {len(after[1])} scores")
    if second_calls:
        problems.append(f"the second run called the generators {second_calls} times")
    if after[0] != before[0]:
        changed = len(set(after[0]) ^ set(before[0]))
        problems.append(f"the second run changed the stored records ({changed} rows differ)")
    if after[1] != before[1]:
        problems.append("the second run changed the stored scores")
    for line in problems:
        print(f"check failed: {line}")
    ok = ratio <= TARGET and not problems
    print(f"resume_cost_ratio: {ratio:.4f} (target <= {TARGET}) {'ok' if ok else 'FAIL'}")
    return ok, problems


@contextlib.contextmanager
def _finds(which: str) -> Iterator[None]:
    """Fault: the store's resume lookup finds no finished unit ("nothing") or every one ("all")."""
    real = Store.finished_keys
    Store.finished_keys = (lambda self, keys, **kw: set()) if which == "nothing" else \
        (lambda self, keys, **kw: set(keys))
    try:
        yield
    finally:
        Store.finished_keys = real


SMALL = ["experiment=untrained", "suite.limit=2", "samples=1", "metrics=[colorfulness]",
         "+models.toy_unet.options.torch_threads=1", "+models.toy_dit.options.torch_threads=1"]


def self_test() -> int:
    print("== clean (its checks must pass; the ratio of a 4-image run is not judged)")
    _, problems = bench(SMALL)
    caught = []
    for fault in ("nothing", "all"):
        print(f"== fault: the resume lookup finds {fault}")
        with _finds(fault):
            caught.append(not bench(SMALL)[0])
        print(f"self-test finds_{fault}: {'FAIL (caught)' if caught[-1] else 'ok (NOT caught)'}")
    good = all(caught) and not problems
    print(f"resume self-test: {sum(caught)} of {len(caught)} faults caught, clean checks "
          f"{'ok' if not problems else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main(argv: list[str]) -> int:
    if "--self-test" in argv:
        return self_test()
    return 0 if bench(argv)[0] else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
