"""API throughput, counted at the server: how full the closed-API adapters keep the provider's
concurrency limit, how many images per second they get, and whether every image the server
sent (and only once paid) is the image the harness returned and stored.

The fake provider server runs in its own process (``harness fake-providers --latency 0.2``: every
answer, polls and downloads included, is delayed 200 ms), so the harness's CPU is its own. Three
paths, each as its shipped config (model id and params from ``harness/conf/models``) with
``concurrency=24`` and one batch of ``--images`` requests (after a warm-up):

* ``openai``: ``OpenAIImages`` (``openai_gpt_image``), one POST per image, base64 PNG in JSON;
* ``gemini``: ``GoogleImages`` (``gemini_image``), one ``:generateContent`` POST per image;
* ``bfl``: ``BFLImages`` (``flux_pro``): submit, poll, download (three requests per image),
  with its submit journal (``StoreJournal``) in a temporary store, as ``harness run`` does.

Counted by the fake server (``GET /_fake/stats``, ``/_fake/paid``, ``/_fake/images``):

* requests being served: the time-weighted mean from the first request's arrival to the last
  answer; target >= 0.9 x concurrency (21.6 of 24);
* images sent per second of the batch's wall time; target >= 0.9 x the ideal, which is
  concurrency / (latency x requests per image): 120/s for the one-call APIs, 40/s for BFL
  (three 200 ms requests per image; the issue's 120/s is not reachable on that path by
  construction, so BFL's target is 0.9 x 40 = 36, the same 90% of its ideal);
* paid submits: exactly one per requested image (no duplicates), and every returned image's
  sha256, and for BFL every image in the store's journal, equals an image the server sent for
  that provider, all of them distinct (none dropped, none altered).

Headline: the worst fraction of ideal over the paths and the two throughput figures (target
>= 0.90); FAIL also when any integrity check fails. The harness-side mean in flight and the
harness CPU per call are printed for information.

``--self-test`` runs each path with two deliberately broken adapters, one that pays twice (sends
every request twice, keeping the second answer) and one that drops images (an error result for
every 8th, altered bytes for the next): each must be reported FAIL; exit 0 only if all are.

Usage: python benchmarks/api_throughput.py [--images N] [--latency S] [--concurrency N]
       [--paths openai,gemini,bfl] [--self-test]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.types import GenRequest, GenResult

KEY = "bench-fake-key"
MODELS = Path(__file__).resolve().parents[1] / "harness" / "conf" / "models"
PATHS = ("openai", "gemini", "bfl")
CONFIG = {"openai": "openai_gpt_image", "gemini": "gemini_image", "bfl": "flux_pro"}
PROVIDER = {"openai": "openai", "gemini": "google", "bfl": "bfl"}
"""The fake's provider name for each path (the key of its counters)."""
REQUESTS_PER_IMAGE = {"openai": 1, "gemini": 1, "bfl": 3}
TARGET = 0.9


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


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control(url: str, path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


# -- the adapters, and two broken ones ---------------------------------------------------------

def adapter_class(path: str) -> type:
    if path == "openai":
        from harness.generators.openai_images import OpenAIImages
        return OpenAIImages
    if path == "gemini":
        from harness.generators.google import GoogleImages
        return GoogleImages
    from harness.generators.bfl import BFLImages
    return BFLImages


def broken(cls: type, defect: str) -> type:
    """``cls`` with a defect: ``pays_twice`` sends every request twice (keeping the second
    answer); ``drops_images`` turns every 8th image into an error and alters the next one's
    bytes (a pixel changed, still a valid PNG)."""

    class PaysTwice(cls):  # type: ignore[misc,valid-type]
        async def _one(self, http: Any, r: GenRequest) -> GenResult:
            await super()._one(http, r)  # paid, then thrown away
            return await super()._one(http, r)

    class DropsImages(cls):  # type: ignore[misc,valid-type]
        async def _one(self, http: Any, r: GenRequest) -> GenResult:
            res = await super()._one(http, r)
            if res.status == "ok" and r.seed % 8 == 0:
                return GenResult(status="error", error="dropped", latency_s=res.latency_s)
            if res.status == "ok" and r.seed % 8 == 1 and res.image:
                res.image = _altered(res.image)
            return res

    return {"pays_twice": PaysTwice, "drops_images": DropsImages}[defect]


def _altered(png: bytes) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        im = im.convert("RGB")
        px = im.getpixel((0, 0))
        im.putpixel((0, 0), tuple((c + 1) % 256 for c in px))  # type: ignore[arg-type]
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def build(path: str, url: str, concurrency: int, batch: int, defect: str | None = None) -> Any:
    import yaml

    cfg = yaml.safe_load((MODELS / f"{CONFIG[path]}.yaml").read_text())
    params = {k: cfg["params"][k] for k in ("width", "height")}
    params["extra"] = dict(cfg["params"].get("extra") or {})
    base = {"openai": url + "/v1", "gemini": url + "/v1beta", "bfl": url}[path]
    options: dict[str, Any] = {"base_url": base, "concurrency": concurrency}
    if path == "bfl":
        options["poll_interval_s"] = 0.05
    cls = adapter_class(path)
    if defect:
        cls = broken(cls, defect)
    return cls(name=CONFIG[path], label=cfg["label"], model_id=cfg["model_id"], params=params,
               batch_size=batch, options=options)


def requests_for(gen: Any, n: int, tag: str) -> list[GenRequest]:
    return [GenRequest(model=gen.name, generator=gen.kind, model_id=gen.model_id, revision=None,
                       weights=None, prompt_id=f"{tag}{i}", prompt=f"{tag} prompt {i}",
                       negative_prompt=None, sample=0, seed=i, width=gen.params["width"],
                       height=gen.params["height"], params=gen.request_params())
                for i in range(n)]


# -- one measurement ---------------------------------------------------------------------------

@dataclass
class Result:
    path: str
    n: int
    server_in_flight: float = 0.0
    server_max: int = 0
    harness_in_flight: float = 0.0
    images_s: float = 0.0
    ideal_images_s: float = 0.0
    wall: float = 0.0
    calls: int = 0
    cpu_ms_call: float = 0.0
    server_cpu_ms_call: float | None = None
    paid: int = 0
    duplicates: int = 0
    sent: int = 0
    ok: int = 0
    matched: int = 0
    stored: int | None = None
    stored_matched: int | None = None
    problems: list[str] = field(default_factory=list)

    def fractions(self, concurrency: int) -> tuple[float, float]:
        return self.server_in_flight / concurrency, self.images_s / self.ideal_images_s


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def measure(path: str, url: str, n: int, latency: float, concurrency: int,
            defect: str | None = None, warm: bool = True, server_pid: int | None = None) -> Result:
    """One batch of ``n`` images on ``path``, checked against the server's own counts."""
    from harness.store import Store
    from harness.store.journal import StoreJournal

    gen = build(path, url, concurrency, n, defect)
    tag = f"{path[0]}{defect or ''}{time.monotonic_ns()}-"
    with tempfile.TemporaryDirectory() as tmp:
        store = journal = None
        if path == "bfl":
            store = Store(tmp)
            journal = StoreJournal(store)
            gen.attach_journal(journal)
        try:
            if warm:
                gen.generate(requests_for(gen, min(n, 48), "warm" + tag))  # imports, pool
            gen.load()
            control(url, "/_fake/reset", "POST")
            gen._http.reset_stats()
            reqs = requests_for(gen, n, tag)
            s_cpu0 = process_cpu_s(server_pid) if server_pid else None
            cpu0, t0 = time.process_time(), time.perf_counter()
            out = gen.generate(reqs)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            s_cpu1 = process_cpu_s(server_pid) if server_pid else None
            res = Result(path, n, wall=wall, harness_in_flight=gen._http.in_flight_mean())
            stats = control(url, "/_fake/stats")
            paid = control(url, "/_fake/paid").get(PROVIDER[path], {})
            sent = [s for p, _, s in control(url, "/_fake/images")["images"]
                    if p == PROVIDER[path]]
            stored = None
            if journal is not None:
                stored = []
                for r in reqs:
                    e = journal.find(r.key())
                    img = journal.image(e) if e is not None and e.image_sha256 else None
                    stored.append(sha(img) if img else None)
        finally:
            gen.close()
            if store is not None:
                store.close()
    res.calls = sum(v for k, v in stats["calls"].items() if k.startswith("/"))  # literal paths
    res.cpu_ms_call = 1000 * cpu / max(res.calls, 1)
    if s_cpu0 is not None and s_cpu1 is not None:
        res.server_cpu_ms_call = 1000 * (s_cpu1 - s_cpu0) / max(res.calls, 1)
    res.server_in_flight = stats["in_flight"]["mean"]
    res.server_max = stats["in_flight"]["max"]
    res.paid, res.duplicates = paid.get("paid", 0), paid.get("duplicates", 0)
    res.sent = len(sent)
    res.images_s = res.sent / wall
    res.ideal_images_s = concurrency / (latency * REQUESTS_PER_IMAGE[path])
    sent_set = set(sent)
    got = [sha(r.image) for r in out if r.status == "ok" and r.image]
    res.ok = len(got)
    res.matched = len({g for g in got if g in sent_set})
    p = res.problems
    if res.paid != n or res.duplicates:
        p.append(f"server counted {res.paid} paid submits for {n} images "
                 f"({res.duplicates} duplicates)")
    if res.sent != n or len(sent_set) != n:
        p.append(f"server sent {res.sent} images ({len(sent_set)} distinct) for {n} requested")
    if res.ok != n:
        errs = [r.error for r in out if r.status != "ok"]
        p.append(f"{n - res.ok} of {n} results not ok" + (f", e.g. {errs[0]}" if errs else ""))
    if res.matched != n:
        p.append(f"{res.matched} of {n} returned images match an image the server sent")
    if stored is not None:
        res.stored = sum(s is not None for s in stored)
        res.stored_matched = len({s for s in stored if s in sent_set})
        if res.stored_matched != n:
            p.append(f"{res.stored_matched} of {n} images in the store's journal match an image "
                     "the server sent")
    return res


def report(r: Result, latency: float, concurrency: int) -> None:
    f_if, f_rate = r.fractions(concurrency)
    print(f"{r.path} ({CONFIG[r.path]}, {REQUESTS_PER_IMAGE[r.path]} request(s)/image"
          f"{', journaled' if r.path == 'bfl' else ''}), {r.n} images, latency "
          f"{latency * 1000:.0f} ms, concurrency {concurrency}:")
    print(f"  at the server: {r.server_in_flight:.2f} requests being served on average (max "
          f"{r.server_max}; {f_if:.3f} of {concurrency}); {r.images_s:.1f} images/s "
          f"({f_rate:.3f} of the ideal {r.ideal_images_s:.0f}); wall {r.wall:.2f} s")
    print(f"  integrity: {r.paid} paid submits ({r.duplicates} duplicates), {r.sent} images "
          f"sent, {r.ok} ok results, {r.matched} matching the server's bytes"
          + (f", {r.stored_matched} of {r.stored} stored matching" if r.stored is not None
             else "") + (" ok" if not r.problems else " FAIL"))
    for prob in r.problems:
        print(f"    FAIL: {prob}")
    print(f"  harness side (information): {r.harness_in_flight:.2f} sent and not yet answered; "
          f"CPU {r.cpu_ms_call:.2f} ms per call = {100 * r.cpu_ms_call / 1000 / latency:.2f}% "
          "of the latency" + (f"; fake server CPU {r.server_cpu_ms_call:.2f} ms per call"
                              if r.server_cpu_ms_call is not None else ""))


def self_test(url: str, n: int, latency: float, concurrency: int, paths: list[str]) -> int:
    caught = []
    for path in paths:
        for defect in ("pays_twice", "drops_images"):
            r = measure(path, url, n, latency, concurrency, defect, warm=False)
            verdict = "FAIL" if r.problems else "ok"
            print(f"self-test {path} {defect}: {verdict}"
                  + (f" ({'; '.join(r.problems)})" if r.problems else " (NOT caught)"))
            caught.append(bool(r.problems))
    good = all(caught)
    print(f"api_throughput self-test: {sum(caught)} of {len(caught)} broken adapters caught "
          f"{'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=480)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=24)
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated: openai,gemini,bfl")
    ap.add_argument("--self-test", action="store_true",
                    help="run deliberately broken adapters; each must be reported FAIL")
    args = ap.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        ap.error(f"--paths: unknown {sorted(unknown)}; choose from {','.join(PATHS)}")
    for var in ("OPENAI_API_KEY", "GEMINI_API_KEY", "BFL_API_KEY"):
        os.environ[var] = KEY
    fake, url = start_fake(args.latency)
    try:
        if args.self_test:
            return self_test(url, args.images, args.latency, args.concurrency, paths)
        results = [measure(p, url, args.images, args.latency, args.concurrency,
                           server_pid=fake.pid) for p in paths]
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    for r in results:
        report(r, args.latency, args.concurrency)
    worst, where = min((f, f"{r.path} {what}") for r in results
                       for f, what in zip(r.fractions(args.concurrency),
                                          ("in flight at the server", "images/s"), strict=True))
    bad = [r.path for r in results if r.problems]
    print(f"worst: {where} at {worst:.3f} of ideal"
          + (f"; integrity FAIL on {', '.join(bad)}" if bad else "; integrity ok on every path"))
    ok = worst >= TARGET and not bad
    shown = math.floor(worst * 100) / 100  # rounded down: never 0.90 for 0.897
    print(f"api_throughput: {shown:.2f} (target >= {TARGET:.2f}) {'ok' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
