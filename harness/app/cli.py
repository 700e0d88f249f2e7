"""``harness rate`` (start the rating app on a run) and ``harness raters`` (invite and manage raters).

Both take the usual ``key=value`` overrides for the store (``store.root=PATH``) and, for
``rate``, the run: ``run.name=RUN``, or ``suite=... models=[...] samples=N`` as given to
``harness run`` (the newest stored run of that suite with those models and samples).
The ``harness`` command composes the overrides and calls ``main(options, cfg)``: this package
sits below the command line and never composes configs or builds models itself.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness.errors import UserError

APP = Path(__file__).resolve().parent / "rate_app.py"

RATE_EPILOG = """\
examples:
  harness raters add ana                       # prints ana's invitation token
  harness rate run.name=toy-shapes-1a2b3c4d5e  # http://127.0.0.1:8501
  harness rate suite=toy-shapes 'models=[toy_unet,toy_dit]' --port 8600 --mode adaptive

The admin page (per-rater quality figures, exclusions) opens with the admin token, printed at
start unless given with --admin-token, or with the token of a rater added with --admin.
Single sign-on: put an [auth] section in .streamlit/secrets.toml (Streamlit's st.login) and
invite raters with 'harness raters add NAME --email ADDRESS'.

The app speaks plain HTTP: to serve raters beyond this machine keep the default 127.0.0.1 and put
a reverse proxy with TLS in front (README, "Serving the rating app to a team").
"""

RATERS_EPILOG = """\
examples:
  harness raters add ana --expires-days 14     # a token that stops working in two weeks
  harness raters revoke ana                    # ana's token and open sessions stop at once
  harness raters rotate ana                    # a new token for ana; the old one is dead
"""

PLAIN_HTTP_WARNING = """\
warning: --address {address} serves the rating app over plain HTTP beyond this machine: invitation
and admin tokens would cross the network readable by anyone on the way. Keep --address 127.0.0.1
and put a reverse proxy with TLS in front (Caddy: 'caddy reverse-proxy --from rate.example.org
--to 127.0.0.1:{port}'; nginx: see README, "Serving the rating app to a team")."""


def is_loopback(address: str) -> bool:
    """True for an address only this machine can reach (127.x, ::1, localhost)."""
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_port_free(address: str, port: int) -> None:
    """:class:`UserError` when ``address:port`` cannot be listened on (in use, or not an address
    of this machine), so that no token is printed for a server that will not start."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As the server will bind: a port held by a listener fails, one in TIME_WAIT does not.
        if os.name != "nt":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            why = "is in use" if e.errno in (98, 48, 10048) else f"cannot be listened on ({e.strerror})"
            raise UserError(f"port {port} on {address} {why}: pick another with --port N, or stop what "
                            f"holds it (e.g. an earlier 'harness rate').") from None


def expiry(days: float | None) -> str | None:
    """The expiry time ``days`` from now (UTC, as the store writes times), or None."""
    if days is None:
        return None
    if days <= 0:
        raise UserError(f"--expires-days must be > 0, got {days:g}")
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat(timespec="milliseconds")


def _store(cfg, *, create: bool = False):
    """The store of the composed config (``store.root``)."""
    from harness.store import Store, StoreError

    try:
        return Store(cfg.store.root, create=create)
    except StoreError as e:
        raise UserError(str(e)) from None


def resolve_run(store, cfg) -> str:
    """The run to rate: run.name, else the newest stored run of the selected suite whose models
    are the selected ones, with as many samples and the same seed (what 'harness run' stored).

    Read from the store alone: no model is built (that could hash weight folders or build
    models) and the suite file is not read.
    """
    from harness.config import validate
    from harness.errors import ConfigError
    from harness.store import StoreError

    try:
        if cfg.run.name:
            return store.run(cfg.run.name).run_id
        try:
            cfg = validate(cfg)
        except ConfigError as e:
            raise UserError(str(e)) from None
        suite, models = cfg.suite.name, sorted(cfg.models or {})
        runs = store.runs(suite)
        for r in reversed(runs):  # newest first
            if (sorted(store.run_models(r.run_id)) == models and r.manifest.get("samples") == cfg.samples
                    and r.manifest.get("seed", cfg.seed) == cfg.seed):
                return r.run_id
        known = [r.run_id for r in runs]
        hint = (f" Runs of suite {suite!r} in the store: {', '.join(known)}; pick one with run.name=RUN."
                if known else f" The store has no run of suite {suite!r}; make one with "
                f"'harness run suite={suite}'.")
        raise UserError(f"no run of suite {suite!r} with models {', '.join(models) or 'none'} and "
                        f"samples={cfg.samples} in the store {store.root}.{hint}")
    except StoreError as e:
        raise UserError(str(e)) from None


def streamlit_command(port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", address, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--global.developmentMode", "false", "--client.toolbarMode", "minimal",
            # Full error details could print a model name or file path into the page.
            "--client.showErrorDetails", "none"]


def app_env(store_root: Path, run_id: str, admin_token: str, *, mode: str = "balanced",
            repeat_every: int = 8, gold_every: int = 10, seed: int | None = None,
            admin_timeout_min: float = 30.0) -> dict[str, str]:
    """Environment variables the app reads (only the admin token's hash is passed on)."""
    from harness.types import sha256_hex

    env = {"HARNESS_RATE_STORE": str(store_root), "HARNESS_RATE_RUN": run_id,
           "HARNESS_RATE_ADMIN_SHA256": sha256_hex(admin_token), "HARNESS_RATE_MODE": mode,
           "HARNESS_RATE_REPEAT_EVERY": str(repeat_every), "HARNESS_RATE_GOLD_EVERY": str(gold_every),
           "HARNESS_RATE_ADMIN_TIMEOUT": f"{admin_timeout_min:g}"}
    if seed is not None:
        env["HARNESS_RATE_SEED"] = str(seed)
    return env


def main(argv: list[str], cfg) -> int:
    """``harness rate``: check the run can be rated, then serve the app until Ctrl-C.

    ``argv`` holds the options; ``cfg`` is the config composed from the ``key=value`` arguments.
    """
    parser = argparse.ArgumentParser(
        prog="harness rate", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RATE_EPILOG,
        usage="harness rate [run.name=RUN | suite=S models=[A,B]] [store.root=PATH] [options]",
        description="Serve the blind pairwise rating app (Streamlit) on a run from the store.")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve a network)")
    parser.add_argument("--admin-token", help="token that opens the admin page (default: a fresh one, "
                        "printed)")
    parser.add_argument("--mode", choices=("balanced", "adaptive"), default="balanced",
                        help="balanced pairs, or adaptive: favour pairs whose order is least certain")
    parser.add_argument("--repeat-every", type=int, default=8, metavar="N",
                        help="a quality-control repeat (sides swapped) after every N votes; 0: none")
    parser.add_argument("--gold-every", type=int, default=10, metavar="N",
                        help="a gold pair (see 'harness raters gold') after every N votes; 0: none")
    parser.add_argument("--admin-timeout", type=float, default=30.0, metavar="MIN",
                        help="minutes without a click after which the admin page asks for the token "
                             "again (default 30)")
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)  # fixed picks, for tests
    args = parser.parse_args(argv)
    if not 0 <= args.port < 65536:
        raise UserError(f"--port {args.port} is not a port number (0-65535)")
    if args.admin_timeout <= 0:
        raise UserError(f"--admin-timeout must be > 0 minutes, got {args.admin_timeout:g}")
    if args.repeat_every < 0 or args.gold_every < 0:
        raise UserError("--repeat-every and --gold-every must be >= 0")
    try:
        import streamlit  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("the rating app needs Streamlit: pip install 'harness[app]'") from None
    store = _store(cfg)
    run_id = resolve_run(store, cfg)
    from harness.app import pairs

    records = store.records(run_id)
    items = pairs.usable_items(records)
    models = sorted({it.model for it in items})
    candidates = pairs.candidate_pairs(items)
    if not candidates:
        raise UserError(f"run {run_id!r} has nothing to compare: it needs images of the same prompt "
                        f"from at least two models (models with images: {', '.join(models) or 'none'}).")
    check_port_free(args.address, args.port)  # before a token is minted and printed
    if not is_loopback(args.address):
        print(PLAIN_HTTP_WARNING.format(address=args.address, port=args.port), file=sys.stderr)
    token = args.admin_token or secrets.token_urlsafe(16)
    env = {**os.environ, **app_env(store.root, run_id, token, mode=args.mode,
                                   repeat_every=args.repeat_every, gold_every=args.gold_every,
                                   seed=args.seed, admin_timeout_min=args.admin_timeout)}
    refused = sum(c["refused"] for c in pairs.refusal_rates(records).values())
    print(f"rating run {run_id}: {len(models)} models, {len(items)} images, {len(candidates)} pairs"
          + (f" ({refused} refused or filtered outputs left out)" if refused else ""))
    print(f"raters open http://{args.address}:{args.port} and sign in with their token "
          f"('harness raters add NAME' makes one)")
    if not args.admin_token:
        print(f"admin token (admin page): {token}")
    sys.stdout.flush()
    proc = subprocess.Popen(streamlit_command(args.port, args.address), env=env)
    if threading.current_thread() is threading.main_thread():
        # A service manager stops us with SIGTERM: take the server down too, as Ctrl-C does.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def raters_main(argv: list[str], cfg) -> int:
    """``harness raters add NAME | list | exclude NAME | include NAME | revoke NAME | rotate NAME |
    gold ...``; ``cfg`` is the config composed from the ``key=value`` arguments (``store.root``,
    ``run.name``)."""
    parser = argparse.ArgumentParser(
        prog="harness raters", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="harness raters {add,list,exclude,include,revoke,rotate,gold} ... [store.root=PATH]",
        description="Invite raters for the rating app and manage them.", epilog=RATERS_EPILOG)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("add", help="invite a rater; prints their token (only its hash is stored)")
    p.add_argument("name")
    p.add_argument("--admin", action="store_true", help="the token also opens the admin page")
    p.add_argument("--email", help="let the rater sign in with this address through single sign-on")
    p.add_argument("--expires-days", type=float, metavar="DAYS", help="the token stops working after DAYS")
    sub.add_parser("list", help="raters, their votes and whether they are excluded, revoked or expired")
    p = sub.add_parser("revoke", help="withdraw a rater's access: their token and open sessions stop "
                                      "at once (their votes stay)")
    p.add_argument("name")
    p = sub.add_parser("rotate", help="a new token for a rater (printed); the old one stops at once; "
                                      "also gives a revoked rater access again")
    p.add_argument("name")
    p.add_argument("--expires-days", type=float, metavar="DAYS",
                   help="the new token stops working after DAYS")
    p = sub.add_parser("exclude", help="leave a rater's votes out of the leaderboard")
    p.add_argument("name")
    p = sub.add_parser("include", help="take an excluded rater back in")
    p.add_argument("name")
    p = sub.add_parser("gold", help="add a gold pair (a known answer) to a run: needs run.name=RUN")
    p.add_argument("prompt_id")
    p.add_argument("better", help="model whose image should win")
    p.add_argument("worse", help="model whose image should lose")
    p.add_argument("--sample", type=int, default=0, help="sample index of both images (default 0)")
    p.add_argument("--note", help="why this answer is known")
    args = parser.parse_args(argv)
    from harness.store import StoreError

    store = _store(cfg, create=args.action == "add")
    try:
        if args.action == "add":
            token = store.add_rater(args.name, admin=args.admin, email=args.email,
                                    expires_at=expiry(args.expires_days))
            print(f"rater {args.name!r} added. Their token (shown only now, keep it private):")
            print(token)
        elif args.action == "revoke":
            store.revoke_rater(args.name)
            print(f"rater {args.name!r} revoked: their token no longer signs in and open sessions are "
                  f"refused at the next click. Their votes stay ('harness raters exclude {args.name}' "
                  f"leaves them out of the leaderboard; 'harness raters rotate {args.name}' lets them "
                  f"back in with a new token).")
        elif args.action == "rotate":
            token = store.rotate_token(args.name, expires_at=expiry(args.expires_days))
            print(f"rater {args.name!r} has a new token; the old one no longer works. New token (shown "
                  f"only now, keep it private):")
            print(token)
        elif args.action == "list":
            counts: dict[str, int] = {}
            for (rater_id,) in store.db.execute("SELECT rater_id FROM votes"):
                counts[rater_id] = counts.get(rater_id, 0) + 1
            rows = store.raters()
            if not rows:
                print("no raters yet: 'harness raters add NAME'")
            from harness.store.db import utcnow

            now = utcnow()
            for r in rows:
                expired = bool(r.token_expires_at and r.token_expires_at <= now)
                flags = [f for f, on in (("excluded", r.excluded), ("admin", r.is_admin),
                                         ("revoked", bool(r.revoked_at)), ("expired", expired)) if on]
                if r.token_expires_at and not expired:
                    flags.append(f"expires {r.token_expires_at[:16].replace('T', ' ')} UTC")
                print(f"{r.name:<24} {counts.get(r.rater_id, 0):>6} votes  added {r.created_at[:10]}"
                      + (f"  {r.email}" if r.email else "") + (f"  [{', '.join(flags)}]" if flags
                                                                          else ""))
        elif args.action in ("exclude", "include"):
            store.exclude_rater(args.name, args.action == "exclude")
            print(f"rater {args.name!r} is {'now left out of' if args.action == 'exclude' else 'back in'} "
                  f"the leaderboard")
        elif args.action == "gold":
            if not cfg.run.name:
                raise UserError("say which run the gold pair belongs to: run.name=RUN")
            run_id = store.run(cfg.run.name).run_id
            keys = {}
            for model in (args.better, args.worse):
                match = [r for r in store.records(run_id, status="ok") if r.model == model
                         and r.prompt_id == args.prompt_id and r.sample == args.sample]
                if not match:
                    raise UserError(f"run {run_id!r} has no image of model {model!r} for prompt "
                                    f"{args.prompt_id!r}, sample {args.sample}")
                keys[model] = match[0].key
            store.add_gold_pair(run_id, keys[args.better], keys[args.worse], args.note)
            print(f"gold pair added: on {args.prompt_id!r}, {args.better} should beat {args.worse}")
    except StoreError as e:
        raise UserError(str(e)) from None
    return 0
