"""The default run's cache keys are pinned: a refactor that changes a key would make every stored
image (and every paid API answer) look new, so a resumed run would generate and pay again."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness import assemble
from harness.config import validate
from harness.runner.local import LocalExecutor
from harness.runner.pipeline import generate, make_plan, save_plan
from harness.store import Store
from harness.suites import load_suite

PINNED = json.loads((Path(__file__).resolve().parents[1] / "data" / "default-run-keys.json").read_text())


def default_plan():
    cfg = validate(assemble.compose(["command=run"]))
    return make_plan(load_suite(cfg.suite), assemble.build_generators(cfg), samples=cfg.samples,
                     seed=cfg.seed, config=OmegaConf.to_container(cfg, resolve=True))


def test_default_run_plans_the_pinned_keys(workdir):
    plan = default_plan()
    planned = sorted((u.request.model, u.request.prompt_id, u.request.sample, u.key) for u in plan.units)
    pinned = sorted((u["model"], u["prompt_id"], u["sample"], u["key"]) for u in PINNED["units"])
    assert len(planned) == 128
    assert planned == pinned
    assert plan.run_id == PINNED["run_id"]


@pytest.mark.slow
def test_default_run_makes_the_pinned_images(workdir):
    """The zoo models' images, bit for bit (on the CPU kind the hashes were recorded on)."""
    plan = default_plan()
    store = Store(workdir / "store")
    save_plan(store, plan, {})
    generate(store, plan, LocalExecutor(), progress=False)
    made = {r.key: r.image_sha256 for r in store.records(plan.run_id)}
    assert made == {u["key"]: u["image_sha256"] for u in PINNED["units"]}
