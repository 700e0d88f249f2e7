"""The rating logic over a real store: sign-in, resume from the database, QC, exclusions, and the
'harness rate' / 'harness raters' commands."""

import pytest

from harness import cli
from harness.app import blind
from harness.app.pairs import PairSettings
from harness.app.service import RatingService, SignInError
from harness.store import Store, StoreError


def counts(store):
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            for t in ("votes", "rating_assignments", "raters")}


def test_wrong_or_missing_token_is_refused_and_writes_nothing(syn_store):
    svc = RatingService(syn_store, "syn", seed=0)
    syn_store.add_rater("ana")
    before = counts(syn_store)
    with pytest.raises(SignInError, match="Enter the invitation token"):
        svc.sign_in("  ")
    with pytest.raises(SignInError, match="not valid"):
        svc.sign_in("not-a-token")
    with pytest.raises(SignInError, match="not invited"):
        svc.sign_in_email("eve@example.com")
    assert counts(syn_store) == before
    assert not svc.is_admin("not-a-token") and not svc.is_admin(None)


def test_refused_outputs_never_shown_and_counted(syn_store):
    svc = RatingService(syn_store, "syn", seed=0, settings=PairSettings(repeat_every=0, gold_every=0))
    gamma = svc.refusals["gamma"]
    assert gamma["refused"] == 2 and gamma["refusal_rate"] == pytest.approx(1 / 3)
    rid = syn_store.rater_for_token(syn_store.add_rater("ana")).rater_id
    shown_keys = set()
    while (a := svc.current(rid)) is not None:
        shown_keys |= {a.left_key, a.right_key}
        assert svc.submit(rid, a.assignment_id, "tie")
    refused = {r.key for r in syn_store.records("syn", status="refused")}
    assert refused and not (shown_keys & refused)
    # 3 prompts x 2 samples x 3 model pairs, less gamma's p1 pairs (2 model pairs x 2 samples)
    assert svc.progress(rid) == (18 - 4, 0, 0)  # rated, left, quality checks


def test_state_lives_in_the_database_so_a_new_session_resumes(syn_store):
    token = syn_store.add_rater("ana")
    svc = RatingService(syn_store, "syn", seed=1)
    rid = svc.sign_in(token).rater_id
    first = svc.current(rid)
    assert svc.current(rid) == first  # a reload shows the same pair, same sides
    assert svc.submit(rid, first.assignment_id, "left", reason="  sharper ")
    assert not svc.submit(rid, first.assignment_id, "right")  # a double submit counts once
    second = svc.current(rid)
    # another process (a restarted app) with its own service and connection picks up the same pair
    other = RatingService(Store(syn_store.root, create=False), "syn", seed=2)
    assert other.current(rid).assignment_id == second.assignment_id
    assert other.progress(rid)[0] == 1
    (vote,) = syn_store.votes("syn")
    assert vote.choice == "left" and vote.reason == "sharper" and vote.seconds >= 0
    assert (vote.left_key, vote.right_key) == (first.left_key, first.right_key)
    with pytest.raises(StoreError, match="not shown to you"):
        bo = syn_store.rater_for_token(syn_store.add_rater("bo")).rater_id
        svc.submit(bo, second.assignment_id, "left")
    with pytest.raises(ValueError, match="choice"):
        svc.submit(rid, second.assignment_id, "middle")


def test_shown_images_are_blinded(syn_store):
    svc = RatingService(syn_store, "syn", seed=0)
    rid = syn_store.rater_for_token(syn_store.add_rater("ana")).rater_id
    shown = svc.shown(svc.current(rid))
    raw = syn_store.read_image(syn_store.records("syn", status="ok")[0].image_sha256)
    assert b"alpha" in raw  # the stored file names its model ...
    for png in (shown.left_png, shown.right_png):  # ... what is sent does not
        assert not any(m.encode() in png for m in ("alpha", "beta", "gamma"))
        assert set(blind.png_chunks(png)) == {"IHDR", "IDAT", "IEND"}
    assert shown.prompt.startswith("text of p")


def test_repeats_and_gold_feed_the_admin_report(syn_store):
    gold_better, gold_worse = [r.key for r in syn_store.records("syn", status="ok")
                               if r.prompt_id == "p2" and r.sample == 0][:2]
    syn_store.add_gold_pair("syn", gold_better, gold_worse, note="obvious")
    svc = RatingService(syn_store, "syn", seed=3, settings=PairSettings(repeat_every=3, repeat_gap=1,
                                                                        gold_every=4))
    rid = syn_store.rater_for_token(syn_store.add_rater("ana")).rater_id
    kinds = []
    for _ in range(10):
        a = svc.current(rid)
        kinds.append(a.kind)
        # answer by content: always prefer the image whose key sorts first
        choice = "left" if a.left_key < a.right_key else "right"
        svc.submit(rid, a.assignment_id, choice)
    assert "repeat" in kinds and "gold" in kinds
    (row,) = [r for r in svc.rater_report() if r["rater"] == "ana"]
    assert row["consistency"] == 1.0 and row["consistency_n"] == kinds.count("repeat")
    assert row["gold_n"] == 1 and row["median_seconds"] >= 0
    svc.set_excluded("ana", True)
    assert syn_store.votes("syn") == [] and len(syn_store.votes("syn", include_excluded=True)) == 10
    with pytest.raises(StoreError, match="a gold pair needs two different"):
        syn_store.add_gold_pair("syn", gold_better, gold_better)


def test_two_tabs_share_one_open_pair(syn_store):
    rid = syn_store.rater_for_token(syn_store.add_rater("ana")).rater_id
    a = RatingService(syn_store, "syn", seed=4)
    b = RatingService(Store(syn_store.root), "syn", seed=5)
    first = a.current(rid)
    assert b.current(rid).assignment_id == first.assignment_id
    assert counts(syn_store)["rating_assignments"] == 1


# -- the commands -------------------------------------------------------------------------------


def test_raters_commands(syn_store, capsys):
    root = f"store.root={syn_store.root}"
    assert cli.main(["raters", "add", "ana", root]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert syn_store.rater_for_token(token).name == "ana"
    assert token.encode() not in (syn_store.root / "harness.sqlite").read_bytes()
    assert cli.main(["raters", "add", "ana", root]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli.main(["raters", "add", "eve", "--email", "Eve@Example.com", "--admin", root]) == 0
    assert cli.main(["raters", "exclude", "ana", root]) == 0
    assert cli.main(["raters", "list", root]) == 0
    out = capsys.readouterr().out
    assert "ana" in out and "[excluded]" in out and "eve@example.com" in out and "[admin]" in out
    assert cli.main(["raters", "exclude", "anna", root]) == 2
    assert "did you mean 'ana'" in capsys.readouterr().err.lower()
    assert cli.main(["raters", "include", "ana", root]) == 0
    assert not syn_store.rater_by_name("ana").excluded
    assert cli.main(["raters", "gold", "p2", "alpha", "beta", root, "run.name=syn"]) == 0
    assert len(syn_store.gold_pairs("syn")) == 1
    assert cli.main(["raters", "gold", "p1", "gamma", "beta", root, "run.name=syn"]) == 2
    assert "no image of model 'gamma'" in capsys.readouterr().err


def test_rate_command_checks_the_run_before_starting(syn_store, capsys, tmp_path):
    root = f"store.root={syn_store.root}"
    assert cli.main(["rate", root, "run.name=nope"]) == 2
    assert "run 'nope' is not in the store" in capsys.readouterr().err
    assert cli.main(["rate", f"store.root={tmp_path / 'empty'}", "run.name=x"]) == 2
    assert "no store at" in capsys.readouterr().err
    assert cli.main(["rate", root, "run.name=syn", "--port", "70000"]) == 2
    one = Store(tmp_path / "one")
    one.save_run("solo", "s", {}, [], "h", {}, [])
    assert cli.main(["rate", f"store.root={one.root}", "run.name=solo"]) == 2
    assert "nothing to compare" in capsys.readouterr().err


def test_rate_command_finds_the_run_of_a_suite_and_models(syn_store, capsys):
    root = f"store.root={syn_store.root}"
    assert cli.main(["rate", root, "suite=toy-shapes", "models=[toy_unet,toy_dit]"]) == 2
    err = capsys.readouterr().err
    assert "no run of suite 'toy-shapes'" in err and "harness run suite=toy-shapes" in err


def test_eight_raters_in_threads_through_the_app_logic(syn_store):
    import threading

    svc = RatingService(syn_store, "syn", seed=6, settings=PairSettings(repeat_every=4, gold_every=0))
    raters = [syn_store.rater_for_token(syn_store.add_rater(f"r{i}")).rater_id for i in range(8)]
    answered: dict[str, list[str]] = {r: [] for r in raters}
    errors = []

    def work(rid):
        try:
            while (a := svc.current(rid)) is not None:
                assert svc.submit(rid, a.assignment_id, "left")
                assert not svc.submit(rid, a.assignment_id, "right")  # a double click
                answered[rid].append(a.assignment_id)
        except Exception as e:  # noqa: BLE001 - surfaced by the assert below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    votes = syn_store.votes("syn")
    assert sorted(v.vote_id for v in votes) == sorted(x for ids in answered.values() for x in ids)
    assert all(v.choice == "left" for v in votes)
    for rid in raters:
        mine = [v for v in votes if v.rater_id == rid]
        fresh = {tuple(sorted((v.left_key, v.right_key))) for v in mine if not v.is_repeat}
        assert len(fresh) == 14 and len(mine) == 14 + sum(v.is_repeat for v in mine)


def test_revoke_rotate_and_expiry_commands(syn_store, capsys):
    root = f"store.root={syn_store.root}"
    assert cli.main(["raters", "add", "ana", "--expires-days", "7", root]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    svc = RatingService(syn_store, "syn", seed=0)
    rater = svc.sign_in(token)
    a = svc.current(rater.rater_id, token_sha256=rater.token_sha256)
    assert cli.main(["raters", "list", root]) == 0
    assert "expires 20" in capsys.readouterr().out
    # revoke: sign-in refused, the open session's next vote refused, nothing written
    assert cli.main(["raters", "revoke", "ana", root]) == 0
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SignInError, match="withdrawn"):
        svc.sign_in(token)
    before = counts(syn_store)
    with pytest.raises(SignInError, match="withdrawn"):
        svc.submit(rater.rater_id, a.assignment_id, "left", token_sha256=rater.token_sha256)
    with pytest.raises(SignInError, match="withdrawn"):
        svc.current(rater.rater_id, token_sha256=rater.token_sha256)
    assert counts(syn_store) == before and syn_store.open_assignment("syn", rater.rater_id) is None
    assert cli.main(["raters", "list", root]) == 0
    assert "revoked" in capsys.readouterr().out
    # rotate: a new token works, the old one and sessions made with it do not
    assert cli.main(["raters", "rotate", "ana", root]) == 0
    new = capsys.readouterr().out.strip().splitlines()[-1]
    assert new != token and syn_store.rater_for_token(token) is None
    again = svc.sign_in(new)
    b = svc.current(again.rater_id, token_sha256=again.token_sha256)
    assert svc.submit(again.rater_id, b.assignment_id, "tie", token_sha256=again.token_sha256)
    with pytest.raises(SignInError, match="replaced"):
        svc.current(again.rater_id, token_sha256=rater.token_sha256)
    assert cli.main(["raters", "revoke", "nobody", root]) == 2
    assert cli.main(["raters", "add", "bo", "--expires-days", "0", root]) == 2
    assert "--expires-days must be > 0" in capsys.readouterr().err


def test_expired_token_is_refused(syn_store):
    token = syn_store.add_rater("ana", expires_at="2026-01-01T00:00:00.000+00:00")
    with pytest.raises(SignInError, match="expired on 2026-01-01 00:00 UTC"):
        RatingService(syn_store, "syn").sign_in(token)


def test_rate_checks_the_port_before_printing_a_token(syn_store, capsys):
    import socket

    root = f"store.root={syn_store.root}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["rate", root, "run.name=syn", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert f"port {port} on 127.0.0.1 is in use" in out.err and "--port" in out.err
    assert "admin token" not in out.out


def test_non_loopback_address_warns_about_plain_http():
    from harness.app.cli import PLAIN_HTTP_WARNING, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    text = PLAIN_HTTP_WARNING.format(address="0.0.0.0", port=8501)
    assert "plain HTTP" in text and "reverse proxy with TLS" in text and "127.0.0.1:8501" in text


def test_conflicting_answer_from_a_second_tab_is_refused(syn_store):
    rid = syn_store.rater_for_token(syn_store.add_rater("ana")).rater_id
    svc = RatingService(syn_store, "syn", seed=0)
    a = svc.current(rid)
    first = svc.submit(rid, a.assignment_id, "left")
    assert first and first.status == "saved"
    same = svc.submit(rid, a.assignment_id, "left")
    other = svc.submit(rid, a.assignment_id, "right")
    assert (same.status, bool(same)) == ("duplicate", False)
    assert (other.status, other.stored_choice, bool(other)) == ("conflict", "left", False)
    (vote,) = syn_store.votes("syn")
    assert vote.choice == "left"
