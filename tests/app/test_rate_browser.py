"""The rating app in a real Chromium: 'harness rate' serving a small real run of the tiny toy
models; sign in, ten votes by keyboard and mouse with a reload half-way, and no model identity
anywhere in the page, its image URLs, its websocket frames or its PNG chunks; a token revoked
mid-session, two tabs answering one pair differently, a phone screen, numpad keys."""

import time

import pytest
from rate_server import rate_server

from harness.store import Store

pytestmark = pytest.mark.browser

ADMIN = "browser-admin-token"
KEYS = {"left": "1", "right": "2", "tie": "3", "both_bad": "4"}
LABELS = {"left": "Left is better", "right": "Right is better", "tie": "Tie", "both_bad": "Both bad"}


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
    with rate_server(toy_store.root, tmp_path_factory.mktemp("rate-log"), "rate", ADMIN,
                     "--repeat-every", "4", "--gold-every", "0", "--seed", "11") as url:
        yield url


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


def open_page(chromium, url, context=None):
    """A page signed out at the app; in ``context`` when given (its own viewport, shared cookies)."""
    page = context.new_page() if context is not None else chromium.new_page(
        viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(url)
    page.get_by_label("Invitation token").wait_for(timeout=30_000)
    return page, requests


def next_open(store, rater_id, previous=None, timeout=30.0):
    """The rater's open pair in the database once it is not ``previous`` (the page moved on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = store.open_assignment("rate", rater_id)
        if a is not None and (previous is None or a.assignment_id != previous.assignment_id):
            return a
        time.sleep(0.1)
    raise AssertionError(f"no new pair for the rater after {timeout:.0f} s")


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
    from harness.app import blind

    token = toy_store.add_rater("ana")
    rater_id = toy_store.rater_for_token(token).rater_id
    words = identity_words(toy_store)
    page, requests = open_page(chromium, server)
    frames: list[bytes] = []
    pngs: list[bytes] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda f: frames.append(f if isinstance(f, bytes) else f.encode())))
    page.on("response", lambda r: pngs.append(r.body()) if "/media/" in r.url else None)
    sign_in(page, token)
    choices = ["left", "right", "tie", "both_bad", "right", "left", "tie", "left", "both_bad", "right"]
    shown = []
    current = None
    for i, choice in enumerate(choices):
        current = next_open(toy_store, rater_id, current)
        wait_shows(page, current)  # the page shows the database's open pair
        check_blind(page, words)
        shown.append(current)
        if i == 5:
            page.reload()  # mid-way: a fresh browser session resumes from the database
            page.get_by_label("Invitation token").wait_for(timeout=30_000)
            sign_in(page, token)
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
    wait_shows(page, next_open(toy_store, rater_id, current))
    votes = toy_store.rater_votes("rate", rater_id)
    # the progress line adds up: pairs rated + pairs to go = every pair; repeats counted apart
    rated = len({tuple(sorted((v.left_key, v.right_key))) for v in votes})
    checks = sum(v.is_repeat for v in votes)
    page.get_by_text(f"{rated} rated · {10 - rated} to go (of 10) · {checks} quality check").wait_for(
        timeout=15_000)
    # what reached the browser over the websocket and as images names no model either
    assert frames and pngs
    wire = b"\n".join(frames).decode("latin-1").lower()
    assert not [w for w in words if w in wire]
    for png in pngs:
        assert blind.png_chunks(png) == ["IHDR", "IDAT", "IEND"] or set(blind.png_chunks(png)) == {
            "IHDR", "IDAT", "IEND"}
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


def signed_in(chromium, server, store, name, context=None):
    """A new rater signed in on a fresh page showing their first pair: (page, rater_id, pair)."""
    token = store.add_rater(name)
    rater_id = store.rater_for_token(token).rater_id
    page, _ = open_page(chromium, server, context)
    sign_in(page, token)
    first = next_open(store, rater_id)
    wait_shows(page, first)
    return page, token, rater_id, first


def test_revoked_during_a_session_the_next_click_is_refused(chromium, server, toy_store):
    page, _, rater_id, first = signed_in(chromium, server, toy_store, "rev")
    assert page.get_by_text("Admin", exact=True).count() == 0  # no admin entry for a rater
    page.get_by_role("button", name=LABELS["left"]).click()
    second = next_open(toy_store, rater_id, first)
    wait_shows(page, second)
    toy_store.revoke_rater("rev")
    before = counts(toy_store)
    page.get_by_role("button", name=LABELS["tie"]).click()
    page.get_by_text("Your access to this rating was withdrawn").wait_for(timeout=15_000)
    page.get_by_label("Invitation token").wait_for(timeout=15_000)
    assert page.locator("img").count() == 0
    assert counts(toy_store) == before and len(toy_store.rater_votes("rate", rater_id)) == 1
    assert toy_store.open_assignment("rate", rater_id) is None
    page.close()


def test_second_tab_answering_differently_is_told_and_not_saved(chromium, server, toy_store):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    tab1, token, rater_id, first = signed_in(chromium, server, toy_store, "tabs", context=context)
    tab2, _ = open_page(chromium, server, context=context)
    sign_in(tab2, token)
    wait_shows(tab2, first)  # both tabs show the one open pair
    tab1.get_by_role("button", name=LABELS["left"]).click()
    tab1.get_by_text("Vote saved").wait_for(timeout=15_000)  # the short confirmation
    second = next_open(toy_store, rater_id, first)
    tab2.get_by_role("button", name=LABELS["right"]).click()  # the first pair, still on screen
    tab2.get_by_text("already rated in another tab").wait_for(timeout=15_000)
    wait_shows(tab2, second)
    (vote,) = toy_store.rater_votes("rate", rater_id)
    assert vote.vote_id == first.assignment_id and vote.choice == "left"
    context.close()


def test_phone_votes_without_scrolling_and_buttons_under_their_images(chromium, server, toy_store):
    width, height = 390, 844
    context = chromium.new_context(viewport={"width": width, "height": height}, is_mobile=True,
                                   has_touch=True, device_scale_factor=2)
    page, _, rater_id, first = signed_in(chromium, server, toy_store, "phone", context=context)
    imgs = page.eval_on_selector_all("img", "els => els.map(e => { const r = e.getBoundingClientRect(); "
                                            "return [r.left, r.right, r.top, r.bottom]; })")
    (l_left, l_right, l_top, l_bottom), (r_left, r_right, r_top, r_bottom) = imgs
    assert l_right <= r_left and r_right <= width  # side by side, inside the screen
    assert l_top >= 0 and max(l_bottom, r_bottom) <= height and l_right - l_left >= 120
    boxes = {c: page.get_by_role("button", name=label).bounding_box() for c, label in LABELS.items()}
    for choice, box in boxes.items():
        assert box["y"] >= 0 and box["y"] + box["height"] <= height, (choice, box)
    # each side's button sits under its own image
    centre = {c: b["x"] + b["width"] / 2 for c, b in boxes.items()}
    assert l_left <= centre["left"] <= l_right and r_left <= centre["right"] <= r_right
    assert boxes["left"]["y"] >= l_bottom - 1 and boxes["right"]["y"] >= r_bottom - 1
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing off to the side
    looks = ("() => ['left', 'right', 'tie', 'both_bad'].map(c => { const b = document.querySelector("
             "`[class*=\"st-key-${c}-\"] button`); const s = getComputedStyle(b); return [s.backgroundColor, "
             "s.borderColor, s.color, b === document.activeElement]; })")
    before = page.evaluate(looks)
    page.get_by_role("button", name=LABELS["right"]).tap()
    second = next_open(toy_store, rater_id, first)
    wait_shows(page, second)
    (vote,) = toy_store.rater_votes("rate", rater_id)
    assert vote.choice == "right"
    page.wait_for_timeout(300)
    assert page.evaluate(looks) == before  # the tapped button looks as before: no sticky highlight
    context.close()


def test_numpad_keys_vote_esc_leaves_the_reason_and_no_highlight_sticks(chromium, server, toy_store):
    page, _, rater_id, current = signed_in(chromium, server, toy_store, "numpad")
    assert page.evaluate("() => window.__harnessRateKeys === true")  # the page's key handler runs
    pressed = []
    for key, choice in (("Numpad2", "right"), ("Numpad3", "tie"), ("Numpad1", "left")):
        page.get_by_text("Prompt:").click()
        page.keyboard.press(key)
        pressed.append(choice)
        current = next_open(toy_store, rater_id, current)
        wait_shows(page, current)
        assert [v.choice for v in toy_store.rater_votes("rate", rater_id)] == pressed  # once each
    # typing a reason with digits in it votes nothing; Esc leaves the box, then the numpad votes
    box = page.locator(f".st-key-reason-{current.assignment_id} input")
    box.click()
    page.keyboard.type("4 corners cut")
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.activeElement.tagName !== 'INPUT'", timeout=5_000)
    page.wait_for_timeout(500)  # the reason is sent on leaving the box
    assert len(toy_store.rater_votes("rate", rater_id)) == 3
    page.keyboard.press("Numpad4")
    current = next_open(toy_store, rater_id, current)
    wait_shows(page, current)
    last = toy_store.rater_votes("rate", rater_id)[-1]
    assert (last.choice, last.reason) == ("both_bad", "4 corners cut")
    # a mouse vote leaves no focus (and so no highlight) on the next pair's buttons
    page.get_by_role("button", name=LABELS["tie"]).click()
    current = next_open(toy_store, rater_id, current)
    wait_shows(page, current)
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    assert page.evaluate("() => !document.activeElement.closest('.st-key-pair, .st-key-more')")
    bg = page.eval_on_selector_all(".st-key-more button", "els => els.map(e => getComputedStyle(e)"
                                                          ".backgroundColor)")
    assert len(bg) == 2 and bg[0] == bg[1]  # Tie looks like Both bad again
    page.close()
