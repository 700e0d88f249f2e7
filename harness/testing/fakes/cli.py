"""``harness fake-providers``: serve every fake provider on 127.0.0.1 until Ctrl-C (demos, and
the API throughput benchmark, which runs the fake in its own process)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness.testing.fakes import DEMO_MODELS, ENV_VARS, FakeProviders, base_urls


def main(argv: list[str] | None = None) -> int:
    """``harness fake-providers``: serve every provider's fake API until Ctrl-C."""
    ap = argparse.ArgumentParser(
        prog="harness fake-providers",
        description="Serve fake OpenAI, Google, Stability, Black Forest Labs, Replicate and fal "
                    "APIs on 127.0.0.1, for demos and offline runs. Images are small coloured "
                    "squares; nothing leaves this machine.")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one)")
    ap.add_argument("--key", default="fake-key", help="the API key every provider accepts")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds every answer is delayed (default 0)")
    ap.add_argument("--pending-polls", type=int, default=2,
                    help="polls a submitted job answers 'not ready' before its result")
    args = ap.parse_args(argv)
    fake = FakeProviders(api_key=args.key, port=args.port)
    fake.latency_s = args.latency
    fake.pending_polls = args.pending_polls
    fake.start()
    urls = base_urls(fake.url)
    print(f"fake providers on {fake.url} (key {args.key!r})")
    for p, u in urls.items():
        print(f"  {p:<10} {u}")
    print("set the keys:")
    for var in dict.fromkeys(ENV_VARS.values()):
        print(f"  export {var}={args.key}")
    print("and point the models at it, e.g.:")
    overrides = " ".join(f"models.{m}.options.base_url={urls[p]}" for p, m in DEMO_MODELS.items())
    print(f"  harness run 'models=[{','.join(DEMO_MODELS.values())}]' {overrides}")
    print(f"stats: GET {fake.url}/_fake/stats   Ctrl-C to stop", flush=True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    import signal

    signal.signal(signal.SIGTERM, interrupt)  # 'kill PID' stops it as cleanly as Ctrl-C
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:  # started in the background by a shell
        signal.signal(signal.SIGINT, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped")
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
