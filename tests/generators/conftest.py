"""Fixtures shared by the generator tests (the closed-API adapters against the fake providers)."""

import pytest

from harness.store import Store
from harness.testing.fakes import FakeProviders


@pytest.fixture
def fake(request, monkeypatch):
    """The fake providers on 127.0.0.1, accepting the test module's ``KEY``; where the module
    names ``KEY_ENV``, that environment variable holds the key (the adapter reads it there)."""
    key = request.module.KEY
    env = getattr(request.module, "KEY_ENV", None)
    if env:
        monkeypatch.setenv(env, key)
    with FakeProviders(api_key=key) as f:
        yield f


@pytest.fixture
def store(tmp_path):
    """A real store in ``tmp_path``, closed after the test."""
    s = Store(tmp_path / "store")
    yield s
    s.close()
