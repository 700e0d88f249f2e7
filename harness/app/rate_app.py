"""The blind pairwise rating page (``streamlit run``; started by ``harness rate``).

Settings come from the environment, set by ``harness rate``: HARNESS_RATE_STORE (store
folder), HARNESS_RATE_RUN (run id), HARNESS_RATE_ADMIN_SHA256 (hash of the admin token),
HARNESS_RATE_MODE (balanced | adaptive), HARNESS_RATE_REPEAT_EVERY, HARNESS_RATE_GOLD_EVERY,
HARNESS_RATE_ADMIN_TIMEOUT (minutes without a click before the admin page closes) and
HARNESS_RATE_SEED (fixed randomness, for tests).

The page never receives a model name, label or file name: images arrive as blinded PNG bytes,
widget keys carry only the random assignment id, and the admin page (which does show models)
opens only for the admin token or an admin rater's token, typed into the same sign-in form.
Every click re-checks the rater's access, so a revoked or rotated token stops at the next one.
"""

from __future__ import annotations

import os
import re
import time

import streamlit as st

from harness.app.pairs import PairSettings
from harness.app.service import AccessError, RatingService, SignInError
from harness.store import Store

BUTTONS = (  # choice, label, shortcut
    ("left", "Left is better", "1"),
    ("right", "Right is better", "2"),
    ("tie", "Tie", "3"),
    ("both_bad", "Both bad", "4"),
)

CONFLICT = ("This pair was already rated in another tab, with a different answer; the choice you "
            "made here was not saved.")

# Side-by-side images on any width (a phone shows both with the buttons under them, no scroll),
# images no taller than the screen leaves room for, and no highlight that survives a vote.
STYLE = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.75rem; padding-bottom: 1rem; }
.st-key-pair [data-testid="stHorizontalBlock"], .st-key-more [data-testid="stHorizontalBlock"] {
  flex-wrap: nowrap !important; gap: 0.5rem; }
.st-key-pair [data-testid="stColumn"], .st-key-more [data-testid="stColumn"] {
  min-width: 0 !important; width: auto !important; flex: 1 1 0 !important; }
.st-key-pair img { max-height: calc(100vh - 20rem); object-fit: contain; }
@media (max-width: 640px) { .st-key-pair img { max-height: calc(100vh - 22rem); } }
@media (hover: none) { .st-key-pair button:hover, .st-key-more button:hover { filter: none; } }
.st-key-pair button:focus:not(:focus-visible), .st-key-more button:focus:not(:focus-visible) {
  box-shadow: none; outline: none; }
</style>"""

# Numpad digits vote like the digits above the letters; Esc leaves the reason box; a vote
# button gives up the focus once clicked (the next pair's button would inherit it). Registered
# once per page, in the capture phase, so a numpad key is handled here and only here.
KEYS_JS = """<script>
(() => {
  const w = window.parent && window.parent.document ? window.parent : window;
  if (w.__harnessRateKeys) return;
  w.__harnessRateKeys = true;
  const doc = w.document;
  const choices = {Numpad1: "left", Numpad2: "right", Numpad3: "tie", Numpad4: "both_bad"};
  w.addEventListener("keydown", (e) => {
    const el = doc.activeElement;
    const typing = el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA");
    if (e.key === "Escape" && typing) { el.blur(); e.preventDefault(); return; }
    const choice = choices[e.code];
    if (!choice || typing || e.ctrlKey || e.metaKey || e.altKey) return;
    const btn = doc.querySelector(`[class*="st-key-${choice}-"] button`);
    if (btn) { e.preventDefault(); e.stopImmediatePropagation(); btn.click(); }
  }, true);
  w.addEventListener("click", (e) => {
    const btn = e.target.closest && e.target.closest(".st-key-pair button, .st-key-more button");
    if (btn) setTimeout(() => btn.blur(), 0);
  }, true);
})();
</script>"""


@st.cache_resource(show_spinner=False)
def _service(root: str, run_id: str, admin_sha: str | None, mode: str, repeat_every: int,
             gold_every: int, seed: int | None) -> RatingService:
    settings = PairSettings(mode=mode, repeat_every=repeat_every, gold_every=gold_every)
    return RatingService(Store(root, create=False), run_id, settings=settings,
                         admin_token_sha256=admin_sha, seed=seed)


def _env_int(name: str, default: int | None) -> int | None:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def admin_timeout_s() -> float:
    """Seconds without a click after which the admin page asks for the token again."""
    raw = os.environ.get("HARNESS_RATE_ADMIN_TIMEOUT")
    return 60.0 * float(raw) if raw not in (None, "") else 30 * 60.0


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
                rater = svc.sign_in_email(getattr(user, "email", None))
                st.session_state.rater = rater
                # Checked at every click like a token's: a revoke or rotate stops this session too.
                st.session_state.token_sha256 = rater.token_sha256
                st.rerun()
            except SignInError as e:
                st.error(str(e))
                st.button("Sign out", on_click=st.logout)
                return
        st.button("Sign in with your account", on_click=st.login, type="primary")
        st.caption("Or use an invitation token:")
    notice = st.session_state.pop("notice", None)
    if notice:
        st.warning(notice)
    with st.form("sign-in", clear_on_submit=False):
        token = st.text_input("Invitation token", type="password", key="token")
        if st.form_submit_button("Start rating", type="primary"):
            if svc.is_app_admin(token):
                _open_admin()
                st.rerun()
            try:
                rater = svc.sign_in(token)
            except SignInError as e:
                st.error(str(e))
                return
            st.session_state.rater = rater
            st.session_state.token_sha256 = rater.token_sha256
            st.rerun()


def _sign_out(notice: str | None = None) -> None:
    """Forget who is signed in (rater and admin alike), keeping only a notice to show."""
    for k in ("rater", "token_sha256", "admin", "admin_seen", "flash"):
        st.session_state.pop(k, None)
    if notice:
        st.session_state.notice = notice


def _answer(svc: RatingService, rater_id: str, assignment_id: str, choice: str) -> None:
    reason = st.session_state.get(f"reason-{assignment_id}")
    try:
        done = svc.submit(rater_id, assignment_id, choice, reason,
                          token_sha256=st.session_state.get("token_sha256"))
    except AccessError as e:
        _sign_out(str(e))
        return
    if done.status == "conflict":
        st.session_state.flash = ("conflict", CONFLICT)
    else:  # saved now, or the same answer saved before (a double click): either way it is stored
        st.session_state.flash = ("saved", "Vote saved")


def _button(svc: RatingService, rater_id: str, aid: str, choice: str, where=st) -> None:
    label, key = next((lab, k) for c, lab, k in BUTTONS if c == choice)
    where.button(label, key=f"{choice}-{aid}", shortcut=key, width="stretch",  # shows its key
                 type="primary" if choice in ("left", "right") else "secondary",
                 on_click=_answer, args=(svc, rater_id, aid, choice))


def rate(svc: RatingService) -> None:
    rater = st.session_state.rater
    try:
        assignment = svc.current(rater.rater_id, token_sha256=st.session_state.get("token_sha256"))
    except AccessError as e:
        _sign_out(str(e))
        st.rerun()
    rated, left, checks = svc.progress(rater.rater_id)
    flash = st.session_state.pop("flash", None)
    if flash and flash[0] == "conflict":
        st.warning(flash[1])
    # The confirmation sits in the status line: nothing moves and nothing covers the prompt.
    saved = "✓ Vote saved · " if flash and flash[0] == "saved" else ""
    extra = f" · {checks} quality check{'s' if checks != 1 else ''}" if checks else ""
    st.caption(f"{saved}Signed in as {rater.name} · {rated} rated · {left} to go (of {rated + left}){extra}")
    if assignment is None:
        st.success(f"You have rated every pair ({rated} pairs{extra}). Thank you!")
        return
    shown = svc.shown(assignment)
    aid = shown.assignment_id
    if shown.source_png is not None:
        # An instruction edit: the source both models edited, then the instruction.
        with st.container(key="source"):
            st.image(shown.source_png, width=320, output_format="PNG", alt="Source image",
                     caption="Source image")
        st.markdown(f"**Instruction:** {_escape_md(shown.prompt)} — which edit follows it "
                    "better while keeping the rest of the source?")
    else:
        st.markdown(f"**Prompt:** {_escape_md(shown.prompt)}")
    # Each side's button sits under its own image, so "Right is better" is under the right one.
    with st.container(key="pair"):
        cols = st.columns(2, gap="small")
        cols[0].image(shown.left_png, width="stretch", output_format="PNG", alt="Left image")
        _button(svc, rater.rater_id, aid, "left", cols[0])
        cols[1].image(shown.right_png, width="stretch", output_format="PNG", alt="Right image")
        _button(svc, rater.rater_id, aid, "right", cols[1])
    with st.container(key="more"):
        cols = st.columns(2, gap="small")
        _button(svc, rater.rater_id, aid, "tie", cols[0])
        _button(svc, rater.rater_id, aid, "both_bad", cols[1])
    with st.container(key="reason"):
        st.text_input("Reason (optional)", key=f"reason-{aid}", max_chars=500,
                      placeholder="What made the difference? Type it before choosing.")
    st.caption("Keys: 1 left · 2 right · 3 tie · 4 both bad (numpad too; Esc leaves the reason "
               "box). Every vote is saved at once.")


# -- admin --------------------------------------------------------------------------------------


def _open_admin() -> None:
    st.session_state.admin = True
    st.session_state.admin_seen = time.monotonic()


def admin_allowed(svc: RatingService) -> bool:
    """True while this session may see the admin page; closes it after the idle time-out, or
    when the admin rater it came from lost their access."""
    if not st.session_state.get("admin"):
        return False
    idle = time.monotonic() - st.session_state.get("admin_seen", 0.0)
    if idle > admin_timeout_s():
        _sign_out(f"The admin page closed after {admin_timeout_s() / 60:g} minutes without activity. "
                  "Sign in again with the admin token.")
        return False
    rater = st.session_state.get("rater")
    if rater is not None and not svc.is_admin_rater(rater.rater_id, st.session_state.get("token_sha256")):
        _sign_out("This token no longer opens the admin page.")
        return False
    st.session_state.admin_seen = time.monotonic()
    return True


def admin(svc: RatingService) -> None:
    st.title("Rating admin")
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


def _sign_out_clicked() -> None:
    _sign_out()
    if oidc_configured() and getattr(st.user, "is_logged_in", False):
        st.logout()


def main() -> None:
    st.set_page_config(page_title="Rate images", layout="wide", initial_sidebar_state="auto")
    svc = service()
    st.html(STYLE)
    st.html(KEYS_JS, unsafe_allow_javascript=True)
    rater = st.session_state.get("rater")
    is_admin = admin_allowed(svc)
    if rater is None and not is_admin:
        sign_in(svc)
        return
    st.sidebar.button("Sign out", key="sign_out", on_click=_sign_out_clicked)
    # Only an admin rater sees the way to the admin page (and back).
    wants_admin = rater is not None and rater.is_admin and st.sidebar.toggle("Admin", key="admin_view_on")
    if wants_admin and not is_admin:
        _open_admin()
        is_admin = True
    if is_admin and (rater is None or st.session_state.get("admin_view_on")):
        admin(svc)
        return
    rate(svc)


main()
