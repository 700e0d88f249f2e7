"""The rating app under load: 50 raters voting at once on a store that already holds 100,000 votes.

A synthetic run (10 models x 500 prompts, one image each: 22,500 pairs) is stored with 50
invited raters and 100,000 votes among them (fresh votes on distinct pairs per rater, one
quality-control repeat per 8, Bradley-Terry choices), written straight to SQLite. A second store
holds the same run with 1,000 votes. Then 50 simulated raters vote through the app's service
layer (:class:`harness.app.service.RatingService`, the object the Streamlit page calls), one
thread each, sharing one service as the page's threads do:

- open loop: each rater votes every 3 s (about 17 votes/s), alternating 1,000- and 100,000-vote
  rounds so a busy machine slows both alike; server time per vote = submit the answer, make
  the next pair, the progress line and the blinded images ready (what one click costs);
- closed loop: every rater votes as soon as the next pair is ready, on the 100,000-vote store;
- every tenth answer or so is sent twice (a double click), which must not store a second row;
- then (``--browsers N``, default 3 unless ``--quick``) N real Chromium raters vote 10 times
  each through the real page ('harness rate' on the 100,000-vote store) while the simulated
  raters go on voting: key press to the next pair on screen, reported, not targeted.

Afterwards the database is checked: each answer the service said it saved is stored exactly once
(lost = saved but not stored; duplicated = stored more than once, stored without being saved,
or a pair rated twice as fresh by one rater). Headline: p95 server time at 100,000 votes, its
ratio to 1,000, closed-loop votes/s, lost and duplicated (targets p95 <= 50 ms, ratio <= 1.5,
>= 200 votes/s, 0 and 0).

``--quick`` runs a small version in seconds (for the default tests); ``--self-test`` runs the
quick version against services with an injected fault (one drops every 25th vote, one stores
every 25th vote twice, one scans all votes per pick) and must print FAIL for each.

Usage: python benchmarks/rating_load.py [--quick] [--self-test [--faults A,B]] [--browsers N]
       [--mode balanced|adaptive] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import bisect
import io
import math
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness.app.pairs import PairSettings, candidate_pairs, pair_key, usable_items
from harness.app.service import RatingService, Submitted
from harness.store import Store
from harness.types import GenRequest, GenResult, Prompt, sha256_hex

RUN = "load"
TARGET_P95_MS = 50.0
TARGET_RATIO = 1.5
TARGET_VPS = 200.0


@dataclass(frozen=True)
class Size:
    """How big a benchmark run is."""

    votes: int
    base_votes: int
    models: int
    prompts: int
    raters: int
    period_s: float
    """Open loop: each rater votes once per this many seconds."""
    open_rounds: int
    round_s: float
    closed_s: float


FULL = Size(votes=100_000, base_votes=1_000, models=10, prompts=500, raters=50, period_s=3.0,
            open_rounds=8, round_s=6.0, closed_s=15.0)
QUICK = Size(votes=10_000, base_votes=500, models=5, prompts=100, raters=10, period_s=0.5,
             open_rounds=1, round_s=2.5, closed_s=1.5)


# -- the stores ---------------------------------------------------------------------------------


def _png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buf, format="PNG")
    return buf.getvalue()


def build_store(root: Path, size: Size, n_votes: int, seed: int = 0) -> tuple[Store, dict[str, str]]:
    """A store with the synthetic run, ``size.raters`` raters and ``n_votes`` votes; returns
    the store and each rater's token by rater id."""
    s = Store(root)
    models = [f"model_{i:02d}" for i in range(size.models)]
    prompts = [f"p{i:04d}" for i in range(size.prompts)]
    images = {m: _png((25 * i % 256, 90, 200 - 15 * i % 200)) for i, m in enumerate(models)}
    units = []
    for m in models:
        for p in prompts:
            r = GenRequest(model=m, generator="synthetic", model_id=f"{m}-id", revision=None, weights=None,
                           prompt_id=p, prompt=f"text of {p}", negative_prompt=None, sample=0, seed=0,
                           width=32, height=32)
            s.put_result(r, r.key(), GenResult("ok", image=images[m]))
            units.append((r.key(), m, p, 0))
    s.save_run(RUN, "load-suite", {}, [Prompt(id=p, text=f"text of {p}") for p in prompts], "h",
               {m: {"label": m} for m in models}, units)
    tokens = {}
    for i in range(size.raters):
        token = s.add_rater(f"rater_{i:02d}")
        tokens[s.rater_for_token(token).rater_id] = token
    _prefill_votes(s, list(tokens), n_votes, random.Random(seed))
    return s, tokens


def _prefill_votes(s: Store, raters: list[str], n_votes: int, rng: random.Random) -> None:
    """``n_votes`` votes spread over the raters: distinct fresh pairs per rater, a repeat (sides
    swapped) after every 8 fresh ones, choices from Bradley-Terry strengths."""
    cands = candidate_pairs(usable_items(s.records(RUN)))
    strength = {m: 1.5 - 3.0 * i / 9 for i, m in enumerate(sorted({c.a.model for c in cands} |
                                                                   {c.b.model for c in cands}))}
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    per = [n_votes // len(raters) + (1 if i < n_votes % len(raters) else 0) for i in range(len(raters))]
    per_rater, k = [], 0
    for rid, n in zip(raters, per, strict=True):
        order = rng.sample(range(len(cands)), min(n, len(cands)))
        mine: list[tuple] = []
        unrepeated: list[int] = []  # positions of fresh votes not repeated yet
        fresh_i = 0
        while len(mine) < n and fresh_i < len(order):
            # The app's schedule: one repeat (sides swapped) after every 8 fresh votes, of a fresh
            # vote at least 3 votes back that was not repeated yet.
            eligible = bisect.bisect_left(unrepeated, len(mine) - 3)  # ascending: a prefix
            if len(mine) % 9 == 8 and eligible:
                orig = mine[unrepeated.pop(rng.randrange(eligible))]
                choice = {"left": "right", "right": "left"}.get(orig[8], orig[8])
                mine.append((f"pre{k}", RUN, rid, orig[3], orig[5], orig[4], orig[7], orig[6], choice,
                             2.0, 1, 0, None, orig[0]))
                k += 1
                continue
            c = cands[order[fresh_i]]
            fresh_i += 1
            a, b = (c.a, c.b) if rng.random() < 0.5 else (c.b, c.a)
            p_left = 1 / (1 + math.exp(strength[b.model] - strength[a.model]))
            u = rng.random()
            choice = "tie" if u < 0.08 else "both_bad" if u < 0.1 else (
                "left" if rng.random() < p_left else "right")
            unrepeated.append(len(mine))
            mine.append((f"pre{k}", RUN, rid, c.prompt_id, a.key, b.key, a.model, b.model, choice,
                         2.0, 0, 0, None, None))
            k += 1
        per_rater.append(mine)
    # raters take turns (each keeps their own order, so a repeat comes after its original)
    rows = [m[i] for i in range(max(map(len, per_rater), default=0)) for m in per_rater if i < len(m)]
    with s.tx() as db:
        db.executemany(
            "INSERT INTO votes (vote_id, run_id, rater_id, prompt_id, left_key, right_key, left_model, "
            "right_model, choice, seconds, is_repeat, is_gold, app_version, repeat_of, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*r, (t0 + timedelta(milliseconds=i)).isoformat(timespec="milliseconds"))
             for i, r in enumerate(rows)])


# -- faults for the self-test -------------------------------------------------------------------


class DropsVotes(RatingService):
    """Says every 25th vote was saved without storing it."""

    n = 0

    def submit(self, *a, **k):
        self.n += 1
        if self.n % 25 == 0:
            return Submitted("saved")
        return super().submit(*a, **k)


class DoublesVotes(RatingService):
    """Stores every 25th vote a second time under another id."""

    n = 0

    def submit(self, rater_id, assignment_id, choice, reason=None, **k):
        out = super().submit(rater_id, assignment_id, choice, reason, **k)
        self.n += 1
        if out and self.n % 25 == 0:
            v = self.store.vote(assignment_id)
            d = {f: getattr(v, f) for f in ("run_id", "rater_id", "prompt_id", "left_key", "right_key",
                                            "left_model", "right_model", "choice", "reason", "seconds",
                                            "is_repeat", "is_gold", "repeat_of", "app_version")}
            self.store.put_vote({**d, "vote_id": assignment_id + "-again"})
        return out


class ScansVotes(RatingService):
    """Reads every vote of the run for each pick, as picks were made before the index."""

    def current(self, rater_id, **k):
        self.store.votes(self.run_id)
        self.store.rater_votes(self.run_id, rater_id)
        return super().current(rater_id, **k)


FAULTS = {"drops_votes": DropsVotes, "doubles_votes": DoublesVotes, "scans_votes": ScansVotes}


# -- the load -----------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the simulated raters saw."""

    times: list[float] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    doubles: int = 0
    double_stored: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _rater(svc: RatingService, rid: str, token: str, tally: Tally, start: threading.Barrier,
           clock: dict[str, float], period: float | None, rng: random.Random,
           halt: threading.Event | None = None) -> None:
    """One rater: answer, time until the next pair is ready, wait (open loop) or not (closed)."""
    tok = sha256_hex(token)
    try:
        a = svc.current(rid, token_sha256=tok)  # the first pair is shown before the clock starts
        start.wait()
        stop = clock["stop"]
        next_at = time.perf_counter() + (rng.random() * period if period else 0.0)
        while a is not None:
            if period:
                wait = next_at - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                next_at += period
            if time.perf_counter() >= stop or (halt is not None and halt.is_set()):
                return
            choice = rng.choice(("left", "right", "left", "right", "tie", "both_bad"))
            t0 = time.perf_counter()
            res = svc.submit(rid, a.assignment_id, choice, token_sha256=tok)
            aid = a.assignment_id
            a = svc.current(rid, token_sha256=tok)
            svc.progress(rid)
            if a is not None:
                svc.shown(a)
            dt = time.perf_counter() - t0
            again = None
            if rng.random() < 0.1:  # a double click: must come back as a duplicate, not a new row
                again = svc.submit(rid, aid, choice, token_sha256=tok)
            with tally.lock:
                tally.times.append(dt)
                if res:
                    tally.saved.append(aid)
                elif res.status != "duplicate" or res.stored_choice != choice:
                    tally.errors.append(f"{aid}: first submit answered {res.status}")
                if again is not None:
                    tally.doubles += 1
                    tally.double_stored += bool(again)
    except Exception as e:  # noqa: BLE001 - counted and printed: the run fails on any error
        with tally.lock:
            tally.errors.append(f"{type(e).__name__}: {e}")


def load(svc: RatingService, tokens: dict[str, str], seconds: float, period: float | None,
         seed: int, halt: threading.Event | None = None) -> tuple[Tally, float]:
    """All raters at once for ``seconds`` (or until ``halt`` is set); returns the tally and the
    elapsed wall time."""
    tally = Tally()
    rng = random.Random(seed)
    clock: dict[str, float] = {}

    def go() -> None:
        clock["start"] = time.perf_counter()
        clock["stop"] = clock["start"] + seconds

    start = threading.Barrier(len(tokens), action=go)
    threads = [threading.Thread(target=_rater, args=(svc, rid, tok, tally, start, clock, period,
                                                      random.Random(rng.random()), halt))
               for rid, tok in tokens.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tally, time.perf_counter() - clock.get("start", time.perf_counter())


def integrity(store: Store, after_rowid: int, tallies: list[Tally], clicks: dict[str, int] | None = None
              ) -> tuple[int, int, list[str]]:
    """(lost, duplicated, notes) for the votes stored after ``after_rowid`` against what the
    service said it saved, and against the clicks of browser raters (``clicks``: rater id ->
    clicks, each of which must be stored once)."""
    saved = Counter(v for t in tallies for v in t.saved)
    rows = [v for _, v in store.votes_after(RUN, after_rowid)]
    clicks = clicks or {}
    by_browser = Counter(v.rater_id for v in rows if v.rater_id in clicks)
    lost_clicks = sum(max(0, n - by_browser[r]) for r, n in clicks.items())
    extra_clicks = sum(max(0, by_browser[r] - n) for r, n in clicks.items())
    rows = [v for v in rows if v.rater_id not in clicks]
    stored = Counter(v.vote_id for v in rows)
    lost = sum(1 for v in saved if v not in stored) + lost_clicks
    dup = sum(n - 1 for n in stored.values() if n > 1) + sum(n - 1 for n in saved.values() if n > 1)
    dup += extra_clicks
    dup += sum(1 for v in stored if v not in saved)  # stored without being saved (a copy)
    dup += sum(t.double_stored for t in tallies)
    # one rater never rates the same pair twice as a fresh vote, old votes included
    fresh = Counter((v.rater_id, pair_key(v.left_key, v.right_key))
                    for v in store.votes(RUN, include_excluded=True) if not v.is_repeat and not v.is_gold)
    twice = sum(n - 1 for n in fresh.values() if n > 1)
    dup += twice
    notes = [f"{len(saved)} votes saved by the service, {len(rows)} new rows stored, "
             f"{sum(t.doubles for t in tallies)} double clicks ({sum(t.double_stored for t in tallies)} "
             f"stored twice), {twice} pairs rated twice fresh by one rater"]
    if clicks:
        notes.append(f"browser raters: {sum(clicks.values())} key presses, {sum(by_browser.values())} "
                     f"votes stored")
    return lost, dup, notes


def pct(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of xs, in milliseconds."""
    if not xs:
        return math.nan
    ys = sorted(xs)
    return 1000.0 * ys[min(len(ys) - 1, max(0, math.ceil(q / 100 * len(ys)) - 1))]


AID_JS = """() => { const el = document.querySelector('[class*="st-key-tie-"]');
  return el ? [...el.classList].find(c => c.startsWith('st-key-tie-')).slice(11) : null; }"""
NEXT_JS = """(aid) => { const el = document.querySelector('[class*="st-key-tie-"]');
  if (!el || el.className.includes('st-key-tie-' + aid)) return false;
  const im = [...document.images];
  return im.length >= 2 && im.every(i => i.complete && i.naturalWidth > 0); }"""


def browser_sample(root: Path, n: int, votes_each: int, say) -> tuple[list[float], dict[str, int]] | None:
    """``n`` real Chromium raters on the real page ('harness rate' serving ``root``), one click at
    a time each: seconds from the key press to the next pair on screen, and the raters' ids with
    their number of clicks. None (and a line saying why) without Playwright or a Chromium."""
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import urllib.request

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        say("browser sample: skipped (playwright is not installed: pip install -e '.[app]')")
        return None
    exe = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        say("browser sample: skipped (no Chromium: apt-get install chromium, or set HARNESS_CHROMIUM)")
        return None
    store = Store(root, create=False)
    tokens = {f"browser_{i}": store.add_rater(f"browser_{i}") for i in range(n)}
    ids = {store.rater_for_token(t).rater_id: 0 for t in tokens.values()}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", "rate",
         f"store.root={root}", f"run.name={RUN}", "--port", str(port), "--admin-token", "bench-admin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    times: list[float] = []
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 120:
                say("browser sample: skipped ('harness rate' did not start)")
                return None
            time.sleep(0.3)
        rng = random.Random(5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, headless=True,
                                        args=["--no-sandbox", "--disable-dev-shm-usage"])
            try:
                pages = []
                for token in tokens.values():
                    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                    page.goto(url)
                    page.get_by_label("Invitation token").fill(token)
                    page.keyboard.press("Enter")
                    page.wait_for_selector('[class*="st-key-tie-"]', timeout=120_000)
                    page.get_by_text("Prompt:").click()  # keys go to the page, not an input
                    pages.append(page)
                say(f"browser sample: {n} Chromium raters signed in "
                    f"({time.perf_counter() - t0:.1f} s after 'harness rate' started)")
                for _ in range(votes_each):
                    for page in pages:
                        aid = page.evaluate(AID_JS)
                        t1 = time.perf_counter()
                        page.keyboard.press(rng.choice("1234"))
                        page.wait_for_function(NEXT_JS, arg=aid, timeout=60_000)
                        times.append(time.perf_counter() - t1)
            finally:
                browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for rid in ids:
        ids[rid] = votes_each
    return times, ids


def last_rowid(store: Store) -> int:
    return int(store.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM votes").fetchone()[0])


def run(size: Size, *, mode: str = "balanced", fault: type[RatingService] = RatingService,
        workdir: Path | None = None, seed: int = 0, verbose: bool = True, browsers: int = 0,
        browser_votes: int = 10) -> tuple[bool, str]:
    """One benchmark run; returns (ok, headline). ``browsers``: Chromium raters voting through
    the real page while the simulated raters keep voting (open loop), 0 for none."""
    say = print if verbose else (lambda *a, **k: None)
    tmp = Path(tempfile.mkdtemp(prefix="rating-load-", dir=workdir))
    try:
        t0 = time.perf_counter()
        big, big_tokens = build_store(tmp / "big", size, size.votes, seed)
        base, base_tokens = build_store(tmp / "base", size, size.base_votes, seed + 1)
        n_cands = len(candidate_pairs(usable_items(big.records(RUN))))
        say(f"stores: {size.models} models x {size.prompts} prompts ({n_cands} pairs), {size.raters} "
            f"raters; {last_rowid(big)} and {last_rowid(base)} stored votes; built in "
            f"{time.perf_counter() - t0:.1f} s")
        settings = PairSettings(mode=mode)
        t0 = time.perf_counter()
        svc_big = fault(big, RUN, settings=settings, seed=seed)
        start_s = time.perf_counter() - t0
        svc_base = fault(base, RUN, settings=settings, seed=seed + 1)
        say(f"service start (index built from {last_rowid(big)} votes): {start_s:.2f} s")
        marks = {id(big): last_rowid(big), id(base): last_rowid(base)}
        open_t: dict[str, list[float]] = {"big": [], "base": []}
        tallies: dict[str, list[Tally]] = {"big": [], "base": []}
        for r in range(size.open_rounds):  # alternate, so machine load hits both alike
            for name, svc, tokens in (("base", svc_base, base_tokens), ("big", svc_big, big_tokens)):
                tally, _ = load(svc, tokens, size.round_s, size.period_s, seed + 10 * r + (name == "big"))
                open_t[name] += tally.times
                tallies[name].append(tally)
        rate = {k: len(v) / (size.open_rounds * size.round_s) for k, v in open_t.items()}
        for name, n in (("base", last_rowid(base)), ("big", last_rowid(big))):
            xs = open_t[name]
            say(f"open loop at ~{n} votes: {len(xs)} votes ({rate[name]:.1f}/s), server time per vote "
                f"p50 {pct(xs, 50):.1f} / p95 {pct(xs, 95):.1f} / p99 {pct(xs, 99):.1f} / "
                f"max {pct(xs, 100):.1f} ms")
        closed, elapsed = load(svc_big, big_tokens, size.closed_s, None, seed + 99)
        tallies["big"].append(closed)
        vps = len(closed.saved) / elapsed
        say(f"closed loop at ~{last_rowid(big)} votes: {len(closed.saved)} votes in {elapsed:.1f} s = "
            f"{vps:.0f} votes/s; server time p50 {pct(closed.times, 50):.1f} / p95 "
            f"{pct(closed.times, 95):.1f} / p99 {pct(closed.times, 99):.1f} ms")
        clicks: dict[str, int] = {}
        if browsers:
            background: dict[str, Tally] = {}
            halt = threading.Event()

            def keep_voting() -> None:
                background["t"], _ = load(svc_big, big_tokens, 600.0, size.period_s, seed + 7, halt)

            t = threading.Thread(target=keep_voting)
            t.start()
            try:
                sample = browser_sample(tmp / "big", browsers, browser_votes, say)
            finally:
                halt.set()
                t.join()
            tallies["big"].append(background["t"])
            if sample is not None:
                bt, clicks = sample
                say(f"browser sample ({browsers} Chromium raters x {browser_votes} votes, the simulated "
                    f"raters voting meanwhile): key press -> next pair on screen p50 {pct(bt, 50):.0f} "
                    f"/ p95 {pct(bt, 95):.0f} / max {pct(bt, 100):.0f} ms")
        lost = dup = 0
        errors = []
        for name, store in (("base", base), ("big", big)):
            lo, du, notes = integrity(store, marks[id(store)], tallies[name],
                                      clicks if name == "big" else None)
            lost, dup = lost + lo, dup + du
            errors += [e for t in tallies[name] for e in t.errors]
            say(f"integrity ({name}): {lo} lost, {du} duplicated; " + "; ".join(notes))
        for e in errors[:5]:
            say(f"error: {e}")
        p95_big, p95_base = pct(open_t["big"], 95), pct(open_t["base"], 95)
        ratio = p95_big / p95_base if p95_base > 0 else math.inf
        ok = (p95_big <= TARGET_P95_MS and ratio <= TARGET_RATIO and vps >= TARGET_VPS and lost == 0
              and dup == 0 and not errors and len(open_t["big"]) > 0)
        headline = (f"rating_load: p95 {p95_big:.1f} ms at {size.votes} votes, ratio {ratio:.2f} to "
                    f"{size.base_votes}, {vps:.0f} votes/s closed, {lost} lost, {dup} duplicated"
                    + (f", {len(errors)} errors" if errors else "")
                    + f" (target p95 <= {TARGET_P95_MS:g} ms, ratio <= {TARGET_RATIO:g}, >= "
                    f"{TARGET_VPS:g} votes/s, 0 lost, 0 duplicated) {'ok' if ok else 'FAIL'}")
        return ok, headline
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small run in seconds (default tests)")
    ap.add_argument("--self-test", action="store_true",
                    help="inject faults (dropped, doubled votes; a full scan per pick): each must FAIL")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help=f"with --self-test: which faults (default all: {', '.join(FAULTS)})")
    ap.add_argument("--mode", choices=("balanced", "adaptive"), default="balanced")
    ap.add_argument("--browsers", type=int, metavar="N",
                    help="Chromium raters voting through the real page meanwhile (default 3; 0 with "
                         "--quick); skipped without Playwright or a Chromium")
    ap.add_argument("--workdir", type=Path, help="where the temporary stores go (default: system temp)")
    args = ap.parse_args(argv)
    if args.self_test:
        names = [f.strip() for f in args.faults.split(",") if f.strip()]
        unknown = [f for f in names if f not in FAULTS]
        if unknown or not names:
            ap.error(f"--faults: unknown {', '.join(unknown) or '(none given)'}; "
                     f"pick from {', '.join(FAULTS)}")
        caught = 0
        for name in names:
            ok, headline = run(QUICK, mode=args.mode, fault=FAULTS[name], workdir=args.workdir,
                               verbose=False)
            caught += not ok
            print(headline)
            print(f"self-test {name}: {'ok (NOT caught)' if ok else 'FAIL (caught)'}")
        ok = caught == len(names)
        print(f"rating_load self-test: {caught} of {len(names)} faults caught "
              f"(target == {len(names)}) {'ok' if ok else 'FAIL'}")
        return 0 if ok else 1
    size = QUICK if args.quick else FULL
    try:
        import os

        print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"({os.cpu_count()} CPUs)")
    except OSError:
        pass
    browsers = args.browsers if args.browsers is not None else (0 if args.quick else 3)
    ok, headline = run(size, mode=args.mode, workdir=args.workdir, browsers=browsers)
    print(headline)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
