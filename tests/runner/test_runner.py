"""The local executor: skips stored units, batches per model, keeps planned batch shapes for
batch-dependent generators, stores refusals and errors as they are."""

import io

import pytest
from PIL import Image

from harness.generators.base import Generator
from harness.runner.local import LocalExecutor
from harness.runner.plan import plan_units
from harness.store import Store
from harness.types import GenResult, Prompt, Suite


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (seed % 256, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


class Recording(Generator):
    """Records every batch it is given; refuses prompts containing 'forbidden'."""

    kind = "recording"
    fail_flaky = True

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches: list[list[str]] = []
        self.closed = 0

    def _generate(self, requests):
        self.batches.append([r.prompt_id + f"#{r.sample}" for r in requests])
        out = []
        for r in requests:
            if "forbidden" in r.prompt:
                out.append(GenResult("refused", refusal_reason="content_policy_violation"))
            elif "flaky" in r.prompt and self.fail_flaky:
                out.append(GenResult("error", error="HTTP 503"))
            else:
                out.append(GenResult("ok", image=_png(r.seed), latency_s=0.01))
        return out

    def close(self):
        self.closed += 1


class BatchDependent(Recording):
    batch_dependent = True


SUITE = Suite(name="s", prompts=tuple(Prompt(id=f"p{i}", text=f"prompt {i}") for i in range(5)))


def gens(cls=Recording, batch_size=2, names=("a", "b")):
    return {n: cls(name=n, label=n, model_id=n, batch_size=batch_size) for n in names}


def test_runs_everything_once_then_nothing(tmp_path):
    store = Store(tmp_path)
    g = gens()
    units = plan_units(SUITE, g, samples=2, seed=0)
    stats = LocalExecutor().execute(store, g, units, progress=False)
    assert stats.calls == 2 * 5  # 10 units per model in batches of 2
    assert all(m.ok == 10 for m in stats.models.values())
    assert all(gen.closed == 1 for gen in g.values())
    g2 = gens()
    stats2 = LocalExecutor().execute(store, g2, units, progress=False)
    assert stats2.calls == 0 and all(gen.batches == [] for gen in g2.values())
    assert all(gen.closed == 0 for gen in g2.values())  # never loaded, nothing to close


def test_pending_only_batching_for_independent_generators(tmp_path):
    store = Store(tmp_path)
    g = gens(names=("a",))
    units = plan_units(SUITE, g, samples=1, seed=0)
    for u in units[1:3]:  # p1 and p2 already stored
        store.put_result(u.request, u.key, GenResult("ok", image=_png(1)))
    LocalExecutor().execute(store, g, units, progress=False)
    assert g["a"].batches == [["p0#0", "p3#0"], ["p4#0"]]


def test_batch_dependent_generators_rerun_planned_batches_whole(tmp_path):
    store = Store(tmp_path)
    g = gens(BatchDependent, names=("a",))
    units = plan_units(SUITE, g, samples=1, seed=0)
    for u in units[1:3]:  # p1 and p2 stored: batch [p0,p1] is partial, [p2,p3] partial
        store.put_result(u.request, u.key, GenResult("ok", image=_png(1)))
    stats = LocalExecutor().execute(store, g, units, progress=False)
    assert g["a"].batches == [["p0#0", "p1#0"], ["p2#0", "p3#0"], ["p4#0"]]
    assert stats.models["a"].ok == 3  # only the missing ones are stored
    rec = {r.prompt_id: r for r in store.records_for_keys([u.key for u in units])}
    assert rec["p1"].image_sha256 == store.put_image(_png(1))  # stored record untouched


def test_refusals_are_results_and_errors_are_retried(tmp_path):
    store = Store(tmp_path)
    suite = Suite(name="s", prompts=(Prompt(id="bad", text="something forbidden"),
                                     Prompt(id="f", text="flaky thing"),
                                     Prompt(id="ok", text="fine")))
    g = gens(names=("a",), batch_size=1)
    units = plan_units(suite, g, samples=1, seed=0)
    s1 = LocalExecutor().execute(store, g, units, progress=False)
    assert (s1.models["a"].refused, s1.models["a"].errors, s1.models["a"].ok) == (1, 1, 1)
    g2 = gens(names=("a",), batch_size=1)
    g2["a"].fail_flaky = False
    s2 = LocalExecutor().execute(store, g2, units, progress=False)
    assert g2["a"].batches == [["f#0"]]  # the refusal is never retried, the error is
    assert s2.models["a"].ok == 1
    s3 = LocalExecutor().execute(store, gens(names=("a",)), units, retry_errors=False,
                                 progress=False)
    assert s3.calls == 0


def test_multi_output_metrics_store_one_value_per_output(tmp_path):
    from harness.leaderboard import build_leaderboard
    from harness.metrics.base import Metric
    from harness.runner.pipeline import Plan, save_plan
    from harness.runner.score import score_run

    class TwoNumbers(Metric):
        kind = "two"
        outputs = {"good": True, "err": False}

        def score_images(self, items):
            return [({"good": 1.0, "err": 0.25}, {"note": "x"}) for _ in items]

    store = Store(tmp_path)
    g = gens(names=("a",))
    units = plan_units(SUITE, g, samples=1, seed=0)
    metric = {"two": TwoNumbers(name="two")}
    save_plan(store, Plan("r", SUITE, units, g, 1, 0), metric)
    LocalExecutor().execute(store, g, units, progress=False)
    assert score_run(store, "r", metric, progress=False) == {"two": 5}
    assert score_run(store, "r", metric, progress=False) == {"two": 0}
    names = {s.metric for s in store.scores("r")}
    assert names == {"two.good", "two.err"}
    lb = build_leaderboard(store, "r")
    assert lb.metrics["two.err"]["higher_is_better"] is False
    assert lb.metrics["two.good"]["higher_is_better"] is True
    assert lb.models.loc[0, "two.err"] == 0.25


def test_report_shows_headline_output_and_a_table_of_every_output(tmp_path):
    from harness.leaderboard import build_leaderboard
    from harness.leaderboard.render import render_markdown
    from harness.metrics.base import Metric
    from harness.runner.pipeline import Plan, save_plan
    from harness.runner.score import score_run

    class Multi(Metric):
        kind = "multi"
        outputs = {"zeta": True, "alpha": False}  # declared order, not alphabetical, decides

        def score_images(self, items):
            return [({"zeta": 0.5, "alpha": 2.0}, {}) for _ in items]

    store = Store(tmp_path)
    g = gens(names=("a",))
    units = plan_units(SUITE, g, samples=1, seed=0)
    metric = {"multi": Multi(name="multi")}
    save_plan(store, Plan("r", SUITE, units, g, 1, 0), metric)
    LocalExecutor().execute(store, g, units, progress=False)
    score_run(store, "r", metric, progress=False)
    md = render_markdown(build_leaderboard(store, "r"))
    header = next(line for line in md.splitlines() if line.startswith("| # |"))
    assert "multi.zeta ↑" in header and "alpha" not in header
    assert "## multi: every output" in md and "| model | zeta ↑ | alpha ↓ |" in md
    assert md.count("- **multi** (image; outputs zeta ↑, alpha ↓)") == 1


def test_pipeline_run_follows_the_stage_order_on_plain_objects(tmp_path):
    """No Hydra: a store, a plan, metrics and settings are all 'harness run' needs."""
    from harness.config import RootConfig
    from harness.metrics.base import Metric
    from harness.runner import pipeline
    from harness.store import StoreError

    class Red(Metric):
        kind = "red"

        def score_images(self, items):
            return [(1.0, {}) for _ in items]

    settings = RootConfig(progress=False)
    settings.report.dir = str(tmp_path / "reports")
    settings.report.html = False
    store = Store(tmp_path / "store")
    plan = pipeline.make_plan(SUITE, gens(), samples=1, seed=0, name="r")
    lines: list[str] = []
    res = pipeline.run("run", store, "r", plan=plan, metrics={"red": Red(name="red")},
                       settings=settings, echo=lines.append)
    assert res["stats"].calls > 0 and store.run("r").status == "scored"
    assert lines[:2] == ["a: 5/5 images (5 new, 0 refused, 0 errors, 0 pending)",
                         "b: 5/5 images (5 new, 0 refused, 0 errors, 0 pending)"]
    assert lines[2] == f"generator calls: {res['stats'].calls}"
    assert lines[3] == f"leaderboard: {res['report_dir'] / 'leaderboard.md'}"
    assert {s.metric for s in store.scores("r")} == {"red"}
    again = pipeline.run("generate", store, "r", plan=plan, settings=settings)
    assert again["stats"].calls == 0
    with pytest.raises(StoreError, match="run 'nope' is not in the store"):
        pipeline.run("report", store, "nope", settings=settings)
    with pytest.raises(ValueError, match="needs the run's plan"):
        pipeline.run("generate", store, "r", settings=settings)
