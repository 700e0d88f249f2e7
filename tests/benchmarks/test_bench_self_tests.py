"""Every benchmark can say FAIL: its --self-test injects known faults (a wrong Elo scale, dropped
"both bad" votes, half the work, skipped images, images from the wrong seed, a resume that finds
nothing or everything) and must see each print FAIL, while the clean run's checks pass. Run as
the benchmarks are run: a subprocess per script. The cheap ones run by default; the ones that load
models or start Ray are marked slow (all of them: ``make bench-selftest``)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
HEADLINE = re.compile(r"^(\w+): (-?[\d.]+(?:/\d+)?) \(target (<=|>=) [\d./]+\) (ok|FAIL)$")


def self_test(script: str, timeout: int = 600) -> str:
    p = subprocess.run([sys.executable, str(BENCH / script), "--self-test"], capture_output=True,
                       text=True, timeout=timeout, cwd=BENCH.parent)
    out = p.stdout
    assert p.returncode == 0, out[-4000:] + p.stderr[-4000:]
    assert re.search(r"self-test: (\d+) of \1 faults caught.* ok$", out.rstrip().splitlines()[-1]), out
    return out


def faults(out: str) -> dict[str, str]:
    """fault name -> the headline the benchmark printed under it (the line before its verdict)."""
    lines = out.splitlines()
    found = {}
    for i, line in enumerate(lines):
        m = re.match(r"^self-test (\w+): (FAIL \(caught\)|ok \(NOT caught\))", line)
        if m:
            head = next(ln for ln in reversed(lines[:i]) if HEADLINE.match(ln))
            found[m[1]] = head
    return found


def test_preference_speed_catches_wrong_elo_scale_dropped_both_bad_and_half_the_resamples():
    out = self_test("preference_speed.py", 120)
    seen = faults(out)
    assert set(seen) == {"elo_scale_ln2", "both_bad_dropped", "half_the_resamples"}
    assert all(h.endswith(" FAIL") for h in seen.values()), seen
    assert "a 1398.0-point gap is not the fitted odds" in out  # ln 2 scale: 400/ln2 per unit
    assert "19591 of 20000 votes counted in the fit" in out  # the 2% both-bad votes left out
    clean = out.split("== fault")[0]
    assert "preference_bootstrap_seconds:" in clean and clean.rstrip().endswith(" ok")


def test_fid_speed_catches_a_distance_that_ignores_correlations():
    out = self_test("fid_speed.py", 180)
    assert faults(out)["diagonal_only"].startswith("frechet_eig_time_ratio: ")
    assert re.search(r"check failed: distance [\d.]+ is [\d.e+-]+ \(relative\) from sqrtm", out)


@pytest.mark.slow
def test_resume_catches_a_lookup_that_finds_nothing_or_everything():
    out = self_test("resume.py")
    assert "check failed: the second run called the generators" in out
    assert "check failed: 0 ok records for 4 planned units" in out


@pytest.mark.slow
def test_local_overhead_catches_half_the_steps_and_one_image_for_the_batch():
    out = self_test("local_overhead.py")
    assert "forward passes through the harness, 4 bare" in out
    assert set(faults(out)) == {"half_steps", "one_image_for_all"}


@pytest.mark.slow
def test_metrics_throughput_catches_skipped_images_half_the_features_and_triple_work():
    out = self_test("metrics_throughput.py")
    assert "clip_score: 8 of 8 images have no value from the metric" in out
    assert "self-test features_three_times: FAIL (caught)" in out


@pytest.mark.slow
def test_ray_scaling_catches_dropped_and_wrong_images_in_the_store():
    out = self_test("ray_scaling.py")
    assert set(faults(out)) == {"errors", "wrong_seed"}


@pytest.mark.slow
def test_zoo_quality_fails_and_exits_nonzero_when_bars_fail():
    out = self_test("zoo_quality.py", 1500)
    assert "self-test one_step: FAIL (caught); exit 1" in out


def test_every_benchmark_offers_a_self_test_and_make_runs_them():
    scripts = sorted(p.name for p in BENCH.glob("*.py"))
    lacking = [s for s in scripts if "--self-test" not in (BENCH / s).read_text(encoding="utf-8")]
    assert not lacking, f"benchmarks without --self-test: {lacking}"
    make = (BENCH.parent / "Makefile").read_text(encoding="utf-8")
    assert "bench-selftest:" in make and "--self-test" in make


@pytest.mark.slow
def test_vlm_quality_catches_crossed_answers_wrong_images_and_a_yes_bias():
    out = self_test("vlm_quality.py")
    for fault in ("yes_no_crossed", "wrong_image", "yes_bias"):
        assert f"self-test {fault}: FAIL (caught)" in out
    assert "3 of 3 faults caught, clean checks ok ok" in out
