"""Shared fixtures: an isolated store, report folder and model cache per test session."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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
