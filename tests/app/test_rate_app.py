"""The Streamlit page through Streamlit's AppTest: sign-in, voting, resume, admin, blindness."""

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
    return {b.label: b for b in at.button
            if b.key and b.key.split("-")[0] in ("left", "right", "tie", "both_bad")}


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
    assert "1 rated" in at.caption[0].value
    for label in ("Right is better", "Tie", "Both bad", "Left is better"):
        vote_buttons(at)[label].click().run()
    assert len(app_store.votes("syn")) == 5
    rid = app_store.rater_by_name("ana").rater_id
    open_before = app_store.open_assignment("syn", rid)
    # a new browser session (reload): sign in again and carry on from the database
    again = sign_in(new_session(), token)
    assert "5 rated" in again.caption[0].value
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
    at = new_session()
    at.sidebar.radio[0].set_value("Admin").run()
    at.text_input(key="admin_token").input("wrong")
    at.button[0].click().run()
    assert "not the admin token" in at.error[0].value
    assert not at.dataframe
    at.text_input(key="admin_token").input(ADMIN)
    at.button[0].click().run()
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
    at = new_session()
    at.sidebar.radio[0].set_value("Admin").run()
    at.text_input(key="admin_token").input(ADMIN)
    at.button[0].click().run()
    at.radio(key="admin_view").set_value("Leaderboard").run()
    assert not at.exception
    assert "alpha" in page_text(at)  # the admin sees the models; raters never do


def test_admin_rater_token_also_opens_the_admin_page(app_store):
    token = app_store.add_rater("boss", admin=True)
    at = new_session()
    at.sidebar.radio[0].set_value("Admin").run()
    at.text_input(key="admin_token").input(token)
    at.button[0].click().run()
    assert not at.error and at.dataframe


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
