"""Model facts (provider, open weights, licence, release date, parameters) and the headline
settings: from config, through the generator's description in the store, to the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import assemble
from harness.config import validate
from harness.errors import ConfigError, UserError
from harness.leaderboard import build_leaderboard
from harness.leaderboard.render import render_markdown
from harness.leaderboard.synthetic import RUN_ID, make_store
from harness.leaderboard.table import MODEL_FACTS

TRACKED_WITH_FACTS = ("zoo_unet", "zoo_dit", "toy_unet", "sd35_large", "flux_schnell", "openai_gpt_image")


@pytest.mark.parametrize("name", TRACKED_WITH_FACTS)
def test_model_configs_carry_facts_into_the_description(name, model_cache):
    cfg = validate(assemble.compose([f"models=[{name}]"]))
    d = assemble.build_generators(cfg)[name].describe()
    assert set(MODEL_FACTS) <= set(d)
    assert d["provider"] and isinstance(d["open_weights"], bool) and d["licence"]


def test_facts_say_what_is_known_and_leave_the_rest_unknown(model_cache):
    cfg = validate(assemble.compose(["models=[zoo_unet,sd35_large,openai_gpt_image,imported]"]))
    gens = assemble.build_generators(cfg)
    zoo = gens["zoo_unet"].describe()
    assert zoo["open_weights"] is True and zoo["licence"] == "Apache-2.0" and zoo["release_date"] is None
    sd = gens["sd35_large"].describe()
    assert (sd["provider"], sd["parameters"], sd["release_date"]) == ("Stability AI", "8.1B", "2024-10-22")
    api = gens["openai_gpt_image"].describe()
    assert api["open_weights"] is False and api["parameters"] is None  # not published
    assert all(gens["imported"].describe()[k] is None for k in MODEL_FACTS)


def test_facts_reach_the_models_table_and_the_report(tmp_path):
    store = make_store(tmp_path / "store", votes_per_pair=0)
    info = {"label": "Alpha", "kind": "local", "provider": "Example Labs", "open_weights": True,
            "licence": "Apache-2.0", "release_date": "2025-01-02", "parameters": "2B", "untrained": False}
    store.db.execute("UPDATE run_models SET info=? WHERE run_id=? AND model='alpha'",
                     (json.dumps(info), RUN_ID))
    store.db.commit()
    lb = build_leaderboard(store, RUN_ID, n_boot=20, gallery_prompts=0)
    row = lb.models.set_index("model").loc["alpha"]
    assert (row["provider"], row["open_weights"], row["parameters"]) == ("Example Labs", True, "2B")
    assert pd.isna(lb.models.set_index("model").loc["beta", "provider"])  # not in its config: unknown
    md = render_markdown(lb)
    assert "| family | provider | open weights | licence | released | parameters | untrained |" in md
    assert "| Alpha | `alpha` | local | – | Example Labs | yes | Apache-2.0 | 2025-01-02 | 2B | no |" in md
    assert "| Beta | `beta` | local | – | unknown | unknown | unknown | unknown | unknown | no |" in md


def test_report_settings_are_validated():
    cfg = validate(assemble.compose(["report.headline=composite", "report.min_votes=10",
                                     "report.preference_cluster=rater", "report.metric_ranks=true"]))
    r = cfg.report
    assert (r.headline, r.min_votes, r.preference_cluster, r.metric_ranks) == ("composite", 10, "rater", True)
    with pytest.raises(ConfigError, match="Did you mean 'prompt'"):
        validate(assemble.compose(["report.preference_cluster=prompts"]))
    with pytest.raises(ConfigError, match="min_votes"):
        validate(assemble.compose(["report.min_votes=-1"]))
    with pytest.raises(UserError, match="Did you mean 'min_votes'"):
        assemble.compose(["report.min_vote=3"])


def test_suites_declare_their_primary_metric():
    for name, want in (("toy-world", "attributes.all"), ("text-rendering", "ocr.word_f1"),
                       ("composition", "clip_score"), ("controls", None),
                       ("editing", "edit_following.overall")):
        assert validate(assemble.compose([f"suite={name}"])).suite.primary_metric == want, name


def test_a_misspelt_primary_metric_stops_the_run_before_any_image(tmp_path, monkeypatch):
    from harness import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HARNESS_STORE", raising=False)
    workdir = tmp_path

    cfg = cli.compose(["command=run", "progress=false", "experiment=untrained", "suite.limit=1",
                       "metrics=[attributes]", "suite.primary_metric=attributes.al", "run.name=t"])
    with pytest.raises(UserError, match=r"primary_metric 'attributes.al'.*Did you mean 'attributes.all'"):
        cli.dispatch(cfg)
    from harness.store import Store

    store_dir = workdir / "store"
    assert not store_dir.exists() or not Store(store_dir).records("t")  # nothing generated
