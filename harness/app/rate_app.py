"""The blind pairwise rating page (``streamlit run``; started by ``harness rate``).

Settings come from the environment, set by ``harness rate``: HARNESS_RATE_STORE (store
folder), HARNESS_RATE_RUN (run id), HARNESS_RATE_ADMIN_SHA256 (hash of the admin token),
HARNESS_RATE_MODE (balanced | adaptive), HARNESS_RATE_REPEAT_EVERY, HARNESS_RATE_GOLD_EVERY and
HARNESS_RATE_SEED (fixed randomness, for tests).

The page never receives a model name, label or file name: images arrive as blinded PNG bytes,
widget keys carry only the random assignment id, and the admin page (which does show models)
is behind the admin token.
"""

from __future__ import annotations

import os
import re

import streamlit as st

from harness.app.pairs import PairSettings
from harness.app.service import RatingService, SignInError
from harness.store import Store

BUTTONS = (  # choice, label, shortcut
    ("left", "Left is better", "1"),
    ("right", "Right is better", "2"),
    ("tie", "Tie", "3"),
    ("both_bad", "Both bad", "4"),
)


@st.cache_resource(show_spinner=False)
def _service(root: str, run_id: str, admin_sha: str | None, mode: str, repeat_every: int,
             gold_every: int, seed: int | None) -> RatingService:
    settings = PairSettings(mode=mode, repeat_every=repeat_every, gold_every=gold_every)
    return RatingService(Store(root, create=False), run_id, settings=settings,
                         admin_token_sha256=admin_sha, seed=seed)


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def service() -> RatingService:
    root, run_id = os.environ.get("HARNESS_RATE_STORE"), os.environ.get("HARNESS_RATE_RUN")
    if not root or not run_id:
        st.error("Start this app with 'harness rate run.name=RUN' (no store or run was given).")
        st.stop()
    return _service(root, run_id, os.environ.get("HARNESS_RATE_ADMIN_SHA256") or None,
                    os.environ.get("HARNESS_RATE_MODE", "balanced"),
                    _env_int("HARNESS_RATE_REPEAT_EVERY", 8), _env_int("HARNESS_RATE_GOLD_EVERY", 10),
                    _env_int("HARNESS_RATE_SEED", None))


def oidc_configured() -> bool:
    """Single sign-on only when the app's secrets have an [auth] section."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all raises, which means "not configured"
        return False


def _escape_md(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$])", r"\\\1", text)


# -- rating -------------------------------------------------------------------------------------


def sign_in(svc: RatingService) -> None:
    st.title("Which image is better?")
    st.write("You will see a prompt and two images made for it. Pick the one that answers the "
             "prompt better, or say they are equally good or both bad.")
    if oidc_configured():
        user = st.user
        if getattr(user, "is_logged_in", False):
            try:
                st.session_state.rater = svc.sign_in_email(getattr(user, "email", None))
                st.rerun()
            except SignInError as e:
                st.error(str(e))
                st.button("Sign out", on_click=st.logout)
                return
        st.button("Sign in with your account", on_click=st.login, type="primary")
        st.caption("Or use an invitation token:")
    with st.form("sign-in", clear_on_submit=False):
        token = st.text_input("Invitation token", type="password", key="token")
        if st.form_submit_button("Start rating", type="primary"):
            try:
                st.session_state.rater = svc.sign_in(token)
            except SignInError as e:
                st.error(str(e))
                return
            st.rerun()


def _answer(svc: RatingService, rater_id: str, assignment_id: str, choice: str) -> None:
    reason = st.session_state.get(f"reason-{assignment_id}")
    svc.submit(rater_id, assignment_id, choice, reason)


def rate(svc: RatingService) -> None:
    rater = st.session_state.rater
    assignment = svc.current(rater.rater_id)
    done, left = svc.progress(rater.rater_id)
    st.caption(f"Signed in as {rater.name} · {done} rated · {left} pairs to go")
    if assignment is None:
        st.success(f"You have rated every pair ({done} votes). Thank you!")
        return
    shown = svc.shown(assignment)
    aid = shown.assignment_id
    st.markdown(f"**Prompt:** {_escape_md(shown.prompt)}")
    cols = st.columns(2)
    cols[0].image(shown.left_png, width="stretch", output_format="PNG", alt="Left image")
    cols[0].markdown("**Left** (key 1)")
    cols[1].image(shown.right_png, width="stretch", output_format="PNG", alt="Right image")
    cols[1].markdown("**Right** (key 2)")
    buttons = st.columns(4)
    for col, (choice, label, key) in zip(buttons, BUTTONS, strict=True):
        col.button(label, key=f"{choice}-{aid}", shortcut=key, width="stretch",
                   type="primary" if choice in ("left", "right") else "secondary",
                   on_click=_answer, args=(svc, rater.rater_id, aid, choice))
    st.text_input("Reason (optional)", key=f"reason-{aid}", max_chars=500,
                  placeholder="What made the difference? Type it before choosing.")
    st.caption("Keys: 1 left · 2 right · 3 tie · 4 both bad. Your progress is saved after every vote.")


# -- admin --------------------------------------------------------------------------------------


def admin(svc: RatingService) -> None:
    st.title("Rating admin")
    if not st.session_state.get("admin"):
        with st.form("admin-sign-in"):
            token = st.text_input("Admin token", type="password", key="admin_token")
            if st.form_submit_button("Open"):
                if svc.is_admin(token):
                    st.session_state.admin = True
                    st.rerun()
                st.error("This is not the admin token. 'harness rate' prints it when it starts.")
        return
    views = ["Quality control"]
    board = _leaderboard_page()
    if board is not None:
        views.append("Leaderboard")
    view = st.radio("View", views, horizontal=True, key="admin_view", label_visibility="collapsed")
    if view == "Leaderboard":
        board.show(svc.store, svc.run_id)
    else:
        quality_control(svc)


def _leaderboard_page():
    """The leaderboard page module, when this installation has it."""
    try:
        from harness.app import leaderboard_page
    except ImportError:
        return None
    return leaderboard_page


def quality_control(svc: RatingService) -> None:
    import pandas as pd

    store, run_id = svc.store, svc.run_id
    votes = store.votes(run_id, include_excluded=True)
    st.write(f"Run **{_escape_md(run_id)}** · {len(votes)} votes · {len(store.raters())} raters · "
             f"{len(svc.candidates)} pairs · {len(store.gold_pairs(run_id))} gold pairs")

    st.subheader("Raters")
    st.caption("Agreement: with the majority of the other raters on the same pair. Consistency: repeats "
               "(sides swapped) answered as the first time. Left share: decisive votes for the left "
               "side, with a binomial p-value against 0.5.")
    report = pd.DataFrame(svc.rater_report())
    st.dataframe(report, hide_index=True, width="stretch")
    names = list(report["rater"]) if len(report) else []
    current = [n for n, x in zip(names, report["excluded"] if len(report) else [], strict=True) if x]
    with st.form("exclusions"):
        chosen = st.multiselect("Excluded from the leaderboard", names, default=current)
        if st.form_submit_button("Save exclusions"):
            for n in names:
                if (n in chosen) != (n in current):
                    svc.set_excluded(n, n in chosen)
            st.rerun()

    st.subheader("Outputs that cannot be rated")
    st.caption("Refused or filtered outputs are never shown; they count in the refusal rate.")
    st.dataframe(pd.DataFrame([{"model": m, **c} for m, c in svc.refusals.items()]), hide_index=True)

    st.subheader("Votes per model pair")
    counts: dict[tuple[str, str], int] = {}
    for v in votes:
        k = tuple(sorted((v.left_model, v.right_model)))
        counts[k] = counts.get(k, 0) + 1
    rows = [{"model_a": a, "model_b": b, "votes": n} for (a, b), n in sorted(counts.items())]
    st.dataframe(pd.DataFrame(rows, columns=["model_a", "model_b", "votes"]), hide_index=True)


def main() -> None:
    st.set_page_config(page_title="Rate images", layout="wide")
    svc = service()
    page = st.sidebar.radio("Page", ("Rate", "Admin"), key="page", label_visibility="collapsed")
    if page == "Admin":
        admin(svc)
        return
    if "rater" not in st.session_state:
        sign_in(svc)
        return
    if st.sidebar.button("Sign out"):
        del st.session_state["rater"]
        if oidc_configured() and getattr(st.user, "is_logged_in", False):
            st.logout()
        st.rerun()
    rate(svc)


main()
