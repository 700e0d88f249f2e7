"""benchmarks/api_throughput.py can say FAIL: its self-test's broken adapters (one pays twice, one
drops images) are caught on every path, and a tiny normal run checks every image against the
fake server's own record. Run as the benchmark is run: a subprocess starting its own
``harness fake-providers``."""

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "api_throughput.py"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          timeout=120, cwd=BENCH.parents[1])


def test_self_test_catches_an_adapter_that_pays_twice_and_one_that_drops_images():
    p = bench("--self-test", "--images", "24")
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    for path in ("openai", "gemini", "bfl"):
        twice = re.search(rf"^self-test {path} pays_twice: (\w+) \((.*)\)$", out, re.M)
        drops = re.search(rf"^self-test {path} drops_images: (\w+) \((.*)\)$", out, re.M)
        assert twice and twice[1] == "FAIL" and "48 paid submits for 24 images" in twice[2], out
        assert drops and drops[1] == "FAIL" and "of 24 results not ok" in drops[2], out
        assert "18 of 24 returned images match" in drops[2], out  # 3 dropped, 3 altered
    assert out.rstrip().splitlines()[-1] == \
        "api_throughput self-test: 6 of 6 broken adapters caught ok"


def test_a_tiny_run_checks_every_image_at_the_server():
    p = bench("--images", "24")
    out = p.stdout
    assert p.returncode in (0, 1), out + p.stderr
    for path in ("openai", "gemini", "bfl"):
        assert re.search(rf"^{path} \(", out, re.M), out
    assert out.count("integrity: 24 paid submits (0 duplicates), 24 images sent, 24 ok results, "
                     "24 matching the server's bytes") == 3, out
    assert "24 of 24 stored matching ok" in out, out  # bfl, through its submit journal
    last = out.rstrip().splitlines()[-1]
    m = re.fullmatch(r"api_throughput: (\d+\.\d\d) \(target >= 0\.90\) (ok|FAIL)", last)
    assert m, last
    assert (m[2] == "ok") == (p.returncode == 0) == (float(m[1]) >= 0.9)
