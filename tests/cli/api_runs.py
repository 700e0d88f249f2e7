"""Helpers for tests that run real ``harness`` subprocesses against the in-process fake
providers (kill, resume, count at the server). Not a test module: pytest puts this folder on
``sys.path``, so the test modules ``from api_runs import ...``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from harness.testing.fakes import ENV_VARS, base_urls

PROVIDER_MODEL = {"openai": "openai_gpt_image_mini", "google": "gemini_image",
                  "stability": "stability_core", "bfl": "flux_pro",
                  "replicate": "replicate_flux_schnell", "fal": "fal_flux_dev"}
"""One model config per provider, driven through the provider's adapter."""
JOB_PROVIDERS = ("bfl", "replicate", "fal")
"""Submit-and-poll providers (their options take ``poll_interval_s``)."""
SUBMIT = {"openai": "/v1/images/generations", "google": "google.generateContent",
          "stability": "stability.generate", "bfl": "bfl.submit",
          "replicate": "replicate.create", "fal": "fal.submit"}
"""The route (name or literal path) of each provider's paid submit on the fake."""
POLL = {"bfl": "bfl.poll", "replicate": "replicate.get", "fal": "fal.status"}


def harness_cmd(fake: Any, tmp_path: Path, models: tuple[str, ...], *, command: str = "run",
                limit: int = 3, samples: int = 2, run_name: str = "api",
                options: dict[str, Any] | None = None) -> list[str]:
    """argv of ``python -m harness.cli <command>`` on ``models``, each pointed at the fake,
    with fast polls and backoff, colorfulness as the only metric, store and reports under
    ``tmp_path``. ``options``: more ``models.<m>.options.<k>=<v>`` for every model."""
    urls = base_urls(fake.url)
    provider_of = {m: p for p, m in PROVIDER_MODEL.items()}
    args = [command, f"models=[{','.join(models)}]", f"suite.limit={limit}",
            f"samples={samples}", f"run.name={run_name}", "progress=false",
            "metrics=[colorfulness]", f"store.root={tmp_path / 'store'}",
            f"report.dir={tmp_path / 'reports'}"]
    for m in models:
        p = provider_of[m]
        args += [f"models.{m}.options.base_url={urls[p]}", f"models.{m}.options.backoff_s=0.01"]
        if p in JOB_PROVIDERS:
            args.append(f"models.{m}.options.poll_interval_s=0.02")
        args += [f"models.{m}.options.{k}={v}" for k, v in (options or {}).items()]
    return [sys.executable, "-m", "harness.cli", *args]


def start(cmd: list[str], key: str, cwd: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start a harness subprocess with ``key`` in every provider's key variable."""
    env = {**os.environ, **dict.fromkeys(ENV_VARS.values(), key)}
    env.pop("HARNESS_STORE", None)
    return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def wait_pending(fake: Any, provider: str, n: int, proc: subprocess.Popen[bytes],
                 timeout: float = 120) -> None:
    """Until ``n`` of the provider's jobs were submitted and each was polled (so its id is in
    the journal: the poll comes after the journal write)."""
    end = time.time() + timeout
    jobs: list[Any] = []
    while time.time() < end:
        jobs = [j for j in list(fake.jobs.values()) if j.provider == provider]
        if len(jobs) >= n and all(j.polls >= 1 for j in jobs):
            return
        assert proc.poll() is None, f"run ended early ({proc.returncode})"
        time.sleep(0.05)
    raise AssertionError(f"{provider}: {len(jobs)} jobs after {timeout}s")


def provider_requests(fake: Any, provider: str) -> int:
    """Requests the fake received on the provider's routes so far (faulted ones included)."""
    names = {r.name for r in fake.routes if r.provider == provider}
    return sum(n for k, n in list(fake.calls.items()) if k in names)
