"""``harness rate`` served in a subprocess for the browser tests (and a free port)."""

import contextlib

import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def rate_server(store_root, log_dir, run_name: str, admin_token: str, *options: str):
    """``harness rate`` on a free port in its own process group, its base URL once Streamlit
    answers its health check; stopped (SIGINT, then SIGKILL) afterwards. ``options``: more
    ``harness rate`` arguments."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    log = (log_dir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "rate", f"store.root={store_root}", f"run.name={run_name}", "--port", str(port),
         "--admin-token", admin_token, *options],
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
