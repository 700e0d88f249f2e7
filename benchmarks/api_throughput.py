"""API throughput: how full the adapters keep the provider's concurrency limit, and what the
harness costs in CPU per call.

The fake provider server runs in its own process (``harness fake-providers --latency 0.2``), so
only the harness's own CPU is counted here. The Gemini adapter (one POST per image, a base64
PNG in a JSON answer) generates ``--images`` images in one batch with ``concurrency=24``.
The headline is the time-weighted mean of requests sent and not yet answered, measured by the
harness's HTTP client from the first request to the last answer; the fake's own count of
requests being served is printed beside it (lower on a loaded machine: a request waits in the
server's accept queue before it is served). Targets: mean in flight >= 0.9 x 24 = 21.6, and
harness CPU per call <= 1% of the call latency (2 ms at 200 ms).

With ``--bfl`` it also runs BFL's submit-poll-download adapter (three requests per image) with
a store and its submit journal, for information.

Usage: python benchmarks/api_throughput.py [--images N] [--latency S] [--concurrency N] [--bfl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

from harness.types import GenRequest

KEY = "bench-fake-key"


def start_fake(latency: float) -> tuple[subprocess.Popen, str]:
    p = subprocess.Popen([sys.executable, "-m", "harness.cli", "fake-providers", "--key", KEY,
                          "--latency", str(latency), "--pending-polls", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("fake providers on "):
            return p, line.split()[3]
    raise RuntimeError(f"the fake did not start: {p.stderr.read() if p.stderr else ''}")


def control(url: str, path: str, method: str = "GET") -> dict:
    req = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def requests_for(gen, n: int, tag: str) -> list[GenRequest]:
    return [GenRequest(model=gen.name, generator=gen.kind, model_id=gen.model_id, revision=None,
                       weights=None, prompt_id=f"{tag}{i}", prompt=f"{tag} prompt {i}",
                       negative_prompt=None, sample=0, seed=i, width=1024, height=1024,
                       params=gen.request_params()) for i in range(n)]


def measure(gen, url: str, n: int, latency: float, tag: str) -> dict:
    gen.generate(requests_for(gen, min(n, 48), f"warm{tag}"))  # imports, pool, first PNGs
    control(url, "/_fake/reset", "POST")
    gen._http.reset_stats()
    reqs = requests_for(gen, n, tag)
    cpu0, t0 = time.process_time(), time.perf_counter()
    out = gen.generate(reqs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    bad = [r.error for r in out if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} calls failed, e.g. {bad[0]}")
    stats = control(url, "/_fake/stats")
    calls = sum(v for k, v in stats["calls"].items() if not k.startswith("/"))  # route names
    return {"in_flight": gen._http.in_flight_mean(), "server": stats["in_flight"]["mean"],
            "max": stats["in_flight"]["max"],
            "images_s": n / wall, "wall": wall, "calls": calls,
            "cpu_ms_call": 1000 * cpu / calls, "cpu_pct": 100 * cpu / calls / latency}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--bfl", action="store_true", help="also run the BFL submit-and-poll adapter")
    args = ap.parse_args(argv)
    os.environ["GEMINI_API_KEY"] = os.environ["BFL_API_KEY"] = KEY
    fake, url = start_fake(args.latency)
    try:
        from harness.generators.google import GoogleImages

        g = GoogleImages(name="gemini_image", label="Gemini 3.1 Flash Image",
                         model_id="gemini-3.1-flash-image",
                         params={"width": 1024, "height": 1024}, batch_size=args.images,
                         options={"base_url": url + "/v1beta", "concurrency": args.concurrency})
        m = measure(g, url, args.images, args.latency, "g")
        g.close()
        print(f"gemini (google :generateContent), {args.images} images, "
              f"latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}:")
        print(f"  mean requests in flight: {m['in_flight']:.2f} sent and not yet answered (harness); "
              f"{m['server']:.2f} being served (fake server; max {m['max']})")
        print(f"  images/s: {m['images_s']:.1f} (ideal {args.concurrency / args.latency:.1f}); "
              f"wall {m['wall']:.2f} s")
        print(f"  harness CPU per call: {m['cpu_ms_call']:.2f} ms = {m['cpu_pct']:.2f}% of the "
              f"call latency (target <= 1%)")
        if args.bfl:
            from harness.generators.bfl import BFLImages
            from harness.store import Store
            from harness.store.journal import StoreJournal

            with tempfile.TemporaryDirectory() as tmp:
                store = Store(tmp)
                b = BFLImages(name="flux_pro", label="FLUX1.1 pro", model_id="flux-pro-1.1",
                              params={"width": 1024, "height": 1024}, batch_size=args.images,
                              options={"base_url": url, "concurrency": args.concurrency,
                                       "poll_interval_s": 0.05})
                b.attach_journal(StoreJournal(store))
                mb = measure(b, url, args.images, args.latency, "b")
                store.close()
            print(f"bfl (submit, poll, download; journaled), {args.images} images:")
            print(f"  mean requests in flight: {mb['in_flight']:.2f} (harness), {mb['server']:.2f} "
                  f"(server); images/s: {mb['images_s']:.1f}; "
                  f"{mb['calls'] / args.images:.1f} requests/image; harness CPU per call "
                  f"{mb['cpu_ms_call']:.2f} ms = {mb['cpu_pct']:.2f}%")
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    target = 0.9 * args.concurrency
    ok = m["in_flight"] >= target and m["cpu_pct"] <= 1.0
    print(f"api_throughput: {m['in_flight']:.2f} (target >= {target:.1f}) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
