"""Resume cost: run the default suite into a fresh store, run it again, compare.

Re-running a finished run must cost <= 2% of its first time and make zero generator calls.
Both runs go through the same entry point as the CLI (compose + dispatch) in this process.
Usage: python benchmarks/resume.py [hydra overrides...]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from harness.assemble import compose
from harness.cli import dispatch


def main(overrides: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        base = [f"store.root={Path(tmp) / 'store'}", f"report.dir={Path(tmp) / 'reports'}",
                "progress=false", *overrides]

        def once() -> tuple[float, int]:
            cfg = compose(["command=run", *base])
            t0 = time.perf_counter()
            res = dispatch(cfg)
            return time.perf_counter() - t0, res["stats"].calls

        first, first_calls = once()
        second, second_calls = once()
    ratio = second / first
    print(f"first run: {first:.2f} s, {first_calls} generator calls")
    print(f"second run: {second:.3f} s, {second_calls} generator calls")
    ok = ratio <= 0.02 and second_calls == 0
    print(f"resume_cost_ratio: {ratio:.4f} (target <= 0.02) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
