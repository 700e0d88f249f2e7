"""Every model config states the facts reports show beside the scores (provider, open weights,
licence, release date, parameters): a value from the maker, or null where none is published."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import harness
from harness.leaderboard.table import MODEL_FACTS

MODELS = Path(harness.__file__).parent / "conf" / "models"
CONFIGS = sorted(p.stem for p in MODELS.glob("*.yaml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_model_config_declares_its_facts(name):
    cfg = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
    missing = [k for k in MODEL_FACTS if k not in cfg]
    assert not missing, f"conf/models/{name}.yaml lacks {missing} (null where the maker publishes none)"
    if name == "imported":  # a folder of someone's images: nothing is known
        return
    assert cfg["provider"] and cfg["open_weights"] in (True, False, None)
    assert cfg["licence"] is None or str(cfg["licence"]).strip()  # null: not read from the maker
    assert cfg["release_date"] is None or re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", str(cfg["release_date"]))
    assert cfg["parameters"] is None or re.match(r"\d+(\.\d+)?[MB]\b", str(cfg["parameters"]))


def test_family_facts_as_their_makers_state_them():
    def facts(name):
        cfg = yaml.safe_load((MODELS / f"{name}.yaml").read_text())
        return tuple(cfg[k] for k in ("licence", "release_date", "parameters"))

    assert facts("flux2_dev") == ("FLUX.2-dev Non-Commercial License", "2025-11-25", "32B")
    assert facts("flux2_klein_4b") == ("Apache-2.0", "2026-01-15", "4B")
    assert facts("qwen_image_edit") == ("Apache-2.0", "2025-08-18", "20B")
    assert facts("flux_kontext_dev")[2] == "12B" and facts("flux_kontext_dev")[1] is None  # date not read
