"""The Streamlit page through Streamlit's AppTest: sign-in, voting, resume, admin, blindness,
revoked and rotated tokens, two tabs, the admin time-out."""

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from harness.app.cli import app_env

APP = Path(__file__).resolve().parents[2] / "harness" / "app" / "rate_app.py"
SECRET_WORDS = ("alpha", "beta", "gamma", "-id")  # model names and model ids of the synthetic store
ADMIN = "admin-token-for-tests"


@pytest.fixture
def app_store(syn_store, monkeypatch):
    for k, v in app_env(syn_store.root, "syn", ADMIN, repeat_every=4, gold_every=0, seed=7).items():
        monkeypatch.setenv(k, v)
    return syn_store


def new_session() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=60).run()


def sign_in(at: AppTest, token: str) -> AppTest:
    at.text_input(key="token").input(token)
    at.button[0].click().run()
    return at


def n_rows(store, table):
    return store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def vote_buttons(at):
    """The vote buttons by label."""
    return {b.label: b for b in at.button
            if b.key and b.key.split("-")[0] in ("left", "right", "tie", "both_bad")}


def admin_session(token: str = ADMIN) -> AppTest:
    """A session signed in with the admin token through the one sign-in form."""
    return sign_in(new_session(), token)


def page_text(at) -> str:
    """Every element's protobuf as text: labels, keys, markdown and image URLs alike."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def test_missing_or_wrong_token_is_refused_and_writes_nothing(app_store):
    app_store.add_rater("ana")
    at = new_session()
    assert not at.exception
    sign_in(at, "")
    assert "Enter the invitation token" in at.error[0].value
    sign_in(at, "guessed-token")
    assert "not valid" in at.error[0].value
    assert not vote_buttons(at) and not at.get("image")
    assert n_rows(app_store, "votes") == 0 and n_rows(app_store, "rating_assignments") == 0


def test_vote_resume_and_blindness(app_store):
    token = app_store.add_rater("ana")
    at = sign_in(new_session(), token)
    assert not at.exception
    assert "0 rated" in at.caption[0].value
    assert len(at.get("image")) == 2
    urls = [img.url for el in at.get("image") for img in el.proto.imgs]
    assert len(urls) == 2 and all("/media/" in u and u.endswith(".png") for u in urls)
    text = page_text(at)
    assert "text of p" in text
    for word in SECRET_WORDS:
        assert word not in text.lower()
    # vote with a reason
    at.text_input[0].input("left is crisper")
    vote_buttons(at)["Left is better"].click().run()
    (vote,) = app_store.votes("syn")
    assert vote.choice == "left" and vote.reason == "left is crisper"
    assert "1 rated · 13 to go (of 14)" in at.caption[0].value
    assert at.caption[0].value.startswith("✓ Vote saved · Signed in as ana")
    for label in ("Right is better", "Tie", "Both bad", "Left is better"):
        vote_buttons(at)[label].click().run()
    assert len(app_store.votes("syn")) == 5
    rid = app_store.rater_by_name("ana").rater_id
    open_before = app_store.open_assignment("syn", rid)
    # the 5th vote was a quality-control repeat (repeat_every=4): counts still add up to 14
    checks = sum(v.is_repeat for v in app_store.votes("syn"))
    assert checks == 1 and f"{5 - checks} rated · {9 + checks} to go (of 14) · 1 quality check" \
        in at.caption[0].value
    # a new browser session (reload): sign in again and carry on from the database
    again = sign_in(new_session(), token)
    assert "4 rated" in again.caption[0].value
    assert next(iter(vote_buttons(again).values())).key.endswith(open_before.assignment_id)
    assert any(v.is_repeat for v in app_store.votes("syn"))  # repeat_every=4
    # rate to the end: every pair once, then a thank-you
    for _ in range(40):
        buttons = vote_buttons(again)
        if not buttons:
            break
        buttons["Tie"].click().run()
    assert "rated every pair" in again.success[0].value
    votes = app_store.votes("syn")
    fresh = [v for v in votes if not v.is_repeat]
    assert len({tuple(sorted((v.left_key, v.right_key))) for v in fresh}) == len(fresh) == 14
    assert not again.exception


def test_admin_page_needs_the_token_and_can_exclude(app_store):
    app_store.add_rater("ana")
    at = admin_session("wrong")
    assert "not valid" in at.error[0].value
    assert not at.dataframe
    at = admin_session()
    assert not at.exception
    assert len(at.dataframe) >= 3  # raters, refusals, votes per model pair
    refusals = at.dataframe[1].value
    assert refusals.set_index("model").loc["gamma", "refused"] == 2
    at.multiselect[0].set_value(["ana"])
    next(b for b in at.button if b.label == "Save exclusions").click().run()
    assert app_store.rater_by_name("ana").excluded is True


def test_admin_page_mounts_the_leaderboard_when_installed(app_store):
    pytest.importorskip("harness.app.leaderboard_page")
    token = app_store.add_rater("ana")
    voter = sign_in(new_session(), token)
    for _ in range(3):
        vote_buttons(voter)["Left is better"].click().run()
    at = admin_session()
    at.radio(key="admin_view").set_value("Leaderboard").run()
    assert not at.exception
    assert "alpha" in page_text(at)  # the admin sees the models; raters never do


def test_admin_rater_token_also_opens_the_admin_page(app_store):
    token = app_store.add_rater("boss", admin=True)
    at = sign_in(new_session(), token)
    assert vote_buttons(at) and not at.dataframe  # an admin rater rates like anyone ...
    at.sidebar.toggle(key="admin_view_on").set_value(True).run()  # ... and has the way in
    assert not at.error and at.dataframe
    at.sidebar.toggle(key="admin_view_on").set_value(False).run()
    assert vote_buttons(at) and not at.dataframe


def test_admin_entry_only_for_admin_tokens_and_admin_sign_out(app_store):
    token = app_store.add_rater("ana")
    at = sign_in(new_session(), token)
    assert vote_buttons(at) and not at.sidebar.toggle  # no Admin entry for a plain rater
    at = admin_session()
    assert at.dataframe
    at.sidebar.button(key="sign_out").click().run()
    assert not at.dataframe and at.text_input(key="token")  # back at the sign-in form
    at.run()
    assert not at.dataframe


def test_admin_session_times_out(app_store, monkeypatch):
    monkeypatch.setenv("HARNESS_RATE_ADMIN_TIMEOUT", "0.005")  # minutes: 0.3 s
    at = admin_session()
    assert at.dataframe
    time.sleep(0.5)
    at.run()
    assert not at.dataframe and "without activity" in at.warning[0].value


def test_revoked_or_rotated_token_stops_at_the_next_click_and_writes_nothing(app_store):
    token = app_store.add_rater("ana")
    at = sign_in(new_session(), token)
    vote_buttons(at)["Left is better"].click().run()
    assert n_rows(app_store, "votes") == 1
    app_store.revoke_rater("ana")
    vote_buttons(at)["Tie"].click().run()
    assert n_rows(app_store, "votes") == 1 and not vote_buttons(at)
    assert "withdrawn" in at.warning[0].value
    assert "withdrawn" in sign_in(new_session(), token).error[0].value  # and at sign-in
    # rotating gives a new token (and access again); sessions on the old one stop at once
    new = app_store.rotate_token("ana")
    at = sign_in(new_session(), new)
    old_tab = sign_in(new_session(), new)
    assert "not valid" in sign_in(new_session(), token).error[0].value
    app_store.rotate_token("ana")
    vote_buttons(old_tab)["Tie"].click().run()
    assert "replaced" in old_tab.warning[0].value and n_rows(app_store, "votes") == 1


def test_expired_or_excluded_raters_are_told_at_sign_in(app_store):
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
    token = app_store.add_rater("old", expires_at=past)
    assert "expired" in sign_in(new_session(), token).error[0].value
    token = app_store.add_rater("bo")
    app_store.exclude_rater("bo")
    at = sign_in(new_session(), token)
    assert "stopped collecting your ratings" in at.error[0].value and not vote_buttons(at)
    assert n_rows(app_store, "rating_assignments") == 0


def test_second_tab_conflicting_vote_is_refused_with_a_notice(app_store):
    token = app_store.add_rater("ana")
    tab1, tab2 = sign_in(new_session(), token), sign_in(new_session(), token)
    (k1,) = {b.key for b in vote_buttons(tab1).values() if b.key.startswith("tie-")}
    (k2,) = {b.key for b in vote_buttons(tab2).values() if b.key.startswith("tie-")}
    assert k1 == k2  # both tabs show the one open pair
    vote_buttons(tab1)["Left is better"].click().run()
    vote_buttons(tab2)["Right is better"].click().run()  # the same pair, another answer
    (vote,) = app_store.votes("syn")
    assert vote.choice == "left"
    assert "already rated in another tab" in tab2.warning[0].value
    assert "Vote saved" in tab1.caption[0].value and "Vote saved" not in tab2.caption[0].value
    # the same answer from the other tab is not a conflict: it was saved once
    tab3 = sign_in(new_session(), token)
    vote_buttons(tab1)["Tie"].click().run()
    vote_buttons(tab3)["Tie"].click().run()
    assert len(app_store.votes("syn")) == 2 and not tab3.warning


def test_without_a_store_the_page_says_how_to_start(monkeypatch):
    monkeypatch.delenv("HARNESS_RATE_STORE", raising=False)
    at = new_session()
    assert "harness rate" in at.error[0].value


def oidc_session(user: dict) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x",
                          "client_id": "c", "client_secret": "s",
                          "server_metadata_url": "https://idp.example/.well-known/openid-configuration"}
    at.user = user
    return at.run()


def test_single_sign_on_when_configured(app_store):
    app_store.add_rater("eve", email="eve@example.com")
    # not signed in yet: the sign-on button is offered next to the token form
    at = oidc_session({"is_logged_in": False})
    assert "Sign in with your account" in [b.label for b in at.button]
    assert at.text_input(key="token")
    # signed in through the identity provider and invited: straight to rating
    at = oidc_session({"is_logged_in": True, "email": "Eve@example.com"})
    assert not at.exception and "Signed in as eve" in at.caption[0].value and vote_buttons(at)
    # signed in but not invited: refused, nothing written
    before = n_rows(app_store, "rating_assignments")
    at = oidc_session({"is_logged_in": True, "email": "mallory@example.com"})
    assert "not invited" in at.error[0].value and not vote_buttons(at)
    assert n_rows(app_store, "rating_assignments") == before


def test_without_auth_secrets_there_is_no_sign_on_button(app_store):
    at = new_session()
    assert [b.label for b in at.button] == ["Start rating"]


def test_single_sign_on_session_stops_when_the_rater_is_revoked(app_store):
    app_store.add_rater("eve", email="eve@example.com")
    at = oidc_session({"is_logged_in": True, "email": "eve@example.com"})
    vote_buttons(at)["Left is better"].click().run()
    assert n_rows(app_store, "votes") == 1
    app_store.revoke_rater("eve")
    vote_buttons(at)["Tie"].click().run()
    assert n_rows(app_store, "votes") == 1 and not vote_buttons(at)
    assert any("withdrawn" in e.value for e in [*at.warning, *at.error])
