"""benchmarks/rating_load.py counts every vote in the database and says FAIL for a service that
drops, doubles or scans: its quick run checks integrity, its self-test injects the faults. Run as
the benchmark is run, in a subprocess."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "rating_load.py"


def bench(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH.parents[1])


def test_quick_run_counts_every_vote_once_in_the_database():
    p = bench("--quick")
    out = p.stdout
    assert p.returncode in (0, 1), out + p.stderr  # timing on a shared machine may miss a target
    for name in ("base", "big"):
        m = re.search(rf"^integrity \({name}\): 0 lost, 0 duplicated; (\d+) votes saved by the service, "
                      rf"(\d+) new rows stored, (\d+) double clicks \(0 stored twice\), 0 pairs rated "
                      rf"twice fresh by one rater$", out, re.M)
        assert m and int(m[1]) == int(m[2]) > 0, out
    assert "10000 and 500 stored votes" in out
    last = out.rstrip().splitlines()[-1]
    assert re.fullmatch(r"rating_load: p95 [\d.]+ ms at 10000 votes, ratio [\d.]+ to 500, \d+ votes/s "
                        r"closed, 0 lost, 0 duplicated \(target p95 <= 50 ms, ratio <= 1.5, >= 200 "
                        r"votes/s, 0 lost, 0 duplicated\) (ok|FAIL)", last), last
    assert last.endswith("ok") == (p.returncode == 0)


def test_self_test_catches_a_service_that_stores_votes_twice():
    p = bench("--self-test", "--faults", "doubles_votes")
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    m = re.search(r"^rating_load: .*? 0 lost, (\d+) duplicated.* FAIL\nself-test doubles_votes: FAIL "
                  r"\(caught\)$", out, re.M)
    assert m and int(m[1]) > 0, out
    assert out.rstrip().splitlines()[-1] == \
        "rating_load self-test: 1 of 1 faults caught (target == 1) ok"


@pytest.mark.slow
def test_self_test_catches_every_fault():
    p = bench("--self-test", timeout=600)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    verdict = r" FAIL\nself-test {}: FAIL \(caught\)$"
    assert re.search(r"^rating_load: .*? [1-9]\d* lost.*" + verdict.format("drops_votes"), out, re.M), out
    assert re.search(r"^rating_load: .*? [1-9]\d* duplicated.*" + verdict.format("doubles_votes"), out,
                     re.M), out
    m = re.search(r"^rating_load: .*? ratio ([\d.]+) to 500.*" + verdict.format("scans_votes"), out, re.M)
    assert m and float(m[1]) > 1.5, out
    assert out.rstrip().splitlines()[-1] == \
        "rating_load self-test: 3 of 3 faults caught (target == 3) ok"
