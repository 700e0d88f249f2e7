"""The rating app in a real Chromium: 'harness rate' serving a small real run of the tiny toy
models; sign in, ten votes by keyboard and mouse with a reload half-way, and no model identity
anywhere in the page or its image URLs."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from harness.store import Store

pytestmark = pytest.mark.browser

ADMIN = "browser-admin-token"
KEYS = {"left": "1", "right": "2", "tie": "3", "both_bad": "4"}
LABELS = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory, model_cache):
    """A real run: the two tiny toy models on 5 prompts x 2 samples (10 pairs), 2 denoising steps."""
    from harness import cli

    root = tmp_path_factory.mktemp("rate-store")
    cli.dispatch(cli.compose(["command=generate", "experiment=untrained", "progress=false", "suite.limit=5",
                              "samples=2",
                              "run.name=rate", f"store.root={root}", "models.toy_unet.params.steps=2",
                              "models.toy_dit.params.steps=2"]))
    return Store(root)


@pytest.fixture(scope="module")
def server(toy_store, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("rate-log") / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "rate", f"store.root={toy_store.root}", "run.name=rate",
         "--port", str(port), "--admin-token", ADMIN, "--repeat-every", "4", "--gold-every", "0",
         "--seed", "11"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                with open(log.name) as f:
                    pytest.fail(f"'harness rate' did not start: {f.read()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # the CLI and the Streamlit server it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def identity_words(store: Store) -> list[str]:
    """Every string that would tell a rater which model made an image."""
    words = set()
    for name, info in store.run_models("rate").items():
        words |= {name, info["label"], info["model_id"], info["model_id"].split("/")[-1]}
    words |= {r.key for r in store.records("rate")}
    words |= {r.image_sha256 for r in store.records("rate")}
    return sorted(w.lower() for w in words if w)


def counts(store):
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("votes", "rating_assignments")}


def open_page(chromium, url):
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.get_by_label("Invitation token").wait_for(timeout=30_000)
    return page, requests


def sign_in(page, token):
    page.get_by_label("Invitation token").fill(token)
    page.keyboard.press("Enter")


def test_wrong_or_missing_token_is_refused_and_writes_nothing(chromium, server, toy_store):
    before = counts(toy_store)
    page, _ = open_page(chromium, server)
    page.get_by_role("button", name="Start rating").click()
    page.get_by_text("Enter the invitation token").wait_for(timeout=15_000)
    sign_in(page, "not-a-real-token")
    page.get_by_text("This token is not valid").wait_for(timeout=15_000)
    assert page.locator("img").count() == 0
    assert counts(toy_store) == before
    page.close()


def wait_progress(page, n):
    page.get_by_text(f"· {n} rated ·").wait_for(timeout=30_000)


def wait_shows(page, assignment):
    """Wait until the buttons of this assignment are on the page (their key carries its id)."""
    page.locator(f".st-key-both_bad-{assignment.assignment_id}").wait_for(timeout=30_000)
    page.wait_for_function("() => { const im = [...document.images]; "
                           "return im.length === 2 && im.every(i => i.complete && i.naturalWidth > 0); }",
                           timeout=30_000)


def check_blind(page, words):
    html = page.content().lower()
    leaks = [w for w in words if w in html]
    assert not leaks, f"the page names {leaks}"
    srcs = page.eval_on_selector_all("img", "els => els.map(e => e.src + ' ' + (e.alt || ''))")
    assert len(srcs) == 2
    for src in srcs:
        assert not [w for w in words if w in src.lower()], src
    sizes = page.eval_on_selector_all("img", "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert sizes[0] == sizes[1] and sizes[0][0] == sizes[0][1] > 0  # one square canvas for both


def test_ten_votes_by_keyboard_and_mouse_with_a_reload(chromium, server, toy_store):
    token = toy_store.add_rater("ana")
    rater_id = toy_store.rater_for_token(token).rater_id
    words = identity_words(toy_store)
    page, requests = open_page(chromium, server)
    sign_in(page, token)
    choices = ["left", "right", "tie", "both_bad", "right", "left", "tie", "left", "both_bad", "right"]
    shown = []
    for i, choice in enumerate(choices):
        wait_progress(page, i)
        current = toy_store.open_assignment("rate", rater_id)
        wait_shows(page, current)  # the page shows the database's open pair
        check_blind(page, words)
        shown.append(current)
        if i == 5:
            page.reload()  # mid-way: a fresh browser session resumes from the database
            page.get_by_label("Invitation token").wait_for(timeout=30_000)
            sign_in(page, token)
            wait_progress(page, 5)
            wait_shows(page, current)
            assert toy_store.open_assignment("rate", rater_id).assignment_id == current.assignment_id
        if i == 2:
            # digits typed into the reason are text, not shortcuts
            page.get_by_label("Reason (optional)").click()
            page.keyboard.type("2 shapes, not 3")
            page.get_by_label("Reason (optional)").press("Tab")  # commit the text before voting
            page.wait_for_timeout(500)
            assert len(toy_store.rater_votes("rate", rater_id)) == i
        if i % 2 == 0:
            page.get_by_text("Prompt:").click()  # focus on the page, not an input
            page.keyboard.press(KEYS[choice])
        else:
            page.get_by_role("button", name=LABELS[choice]).click()
    wait_progress(page, 10)
    votes = toy_store.rater_votes("rate", rater_id)
    assert [v.choice for v in votes] == choices
    assert [v.vote_id for v in votes] == [a.assignment_id for a in shown]
    assert [(v.left_key, v.right_key) for v in votes] == [(a.left_key, a.right_key)
                                                                for a in shown]
    assert votes[2].reason == "2 shapes, not 3"
    assert sum(v.is_repeat for v in votes) >= 1  # --repeat-every 4
    assert all(v.seconds is not None and v.seconds >= 0 for v in votes)
    assert len(toy_store.votes("rate")) == 10
    # both sides were used for both models (sides are random per vote)
    assert len({v.left_model for v in votes}) == 2
    for url in requests:
        assert not [w for w in words if w in url.lower()], url
    page.close()
