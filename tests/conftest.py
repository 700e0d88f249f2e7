"""Shared fixtures: an isolated store, report folder and model cache per test session."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_secrets():
    """Keys registered for scrubbing are process-wide (as in a real run); one test's planted key
    must not scrub words out of the next test's messages."""
    yield
    from harness.generators.http import forget_secrets

    forget_secrets()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """Built tiny models are cached once per test session (building costs ~1 s each)."""
    d = tmp_path_factory.mktemp("model-cache")
    os.environ["HARNESS_MODEL_CACHE"] = str(d)
    return d


@pytest.fixture
def workdir(tmp_path, monkeypatch, model_cache) -> Path:
    """A clean working directory with its own store/ and reports/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    return tmp_path


def _chromium_path() -> str | None:
    import shutil

    return os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def chromium():
    """A real headless Chromium (Debian's) driven by Playwright, one per test module.

    Module scope, not session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, which would break later tests that call ``asyncio.run``.

    Without one the browser tests skip, unless HARNESS_REQUIRE_BROWSER=1 (CI), where they fail."""
    path = _chromium_path()
    required = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if required:
            pytest.fail("playwright is not installed: pip install -e '.[app]'")
        pytest.skip("playwright is not installed (pip install -e '.[app]')")
    if path is None:
        if required:
            pytest.fail("no Chromium found: apt-get install chromium (or set HARNESS_CHROMIUM)")
        pytest.skip("no Chromium found (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()
