"""End to end on the embedded default: run, resume, stages alone, export, errors."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import assemble, cli
from harness.store import Store

SMALL = ["experiment=untrained", "suite.limit=3", "samples=2", "run.name=t"]


def run(*overrides, command="run"):
    return cli.dispatch(cli.compose([f"command={command}", "progress=false", *SMALL, *overrides]))


def test_run_then_rerun_makes_no_generator_calls(workdir):
    first = run()
    store = first["store"]
    counts = store.unit_counts("t")
    assert sum(c.ok for c in counts.values()) == 2 * 3 * 2
    assert first["stats"].calls > 0
    md = (workdir / "reports/toy-shapes/t/leaderboard.md").read_text()
    assert "Untrained models" in md and "†" in md and "colorfulness" in md
    csv = pd.read_csv(workdir / "reports/toy-shapes/t/leaderboard.csv")
    assert set(csv["model"]) == {"toy_unet", "toy_dit"} and (csv["ok"] == 6).all()
    pq = pd.read_parquet(workdir / "reports/toy-shapes/t/leaderboard.parquet")
    assert list(pq["model"]) == list(csv["model"])
    doc = json.loads((workdir / "reports/toy-shapes/t/leaderboard.json").read_text())
    assert doc["run_id"] == "t" and {m["model"] for m in doc["models"]} == {"toy_unet", "toy_dit"}
    assert "colorfulness" in doc["metrics"]
    assert (workdir / "reports/toy-shapes/latest").resolve() == (workdir / "reports/toy-shapes/t").resolve()
    assert os.readlink(workdir / "reports/toy-shapes/latest") == "t"
    before = sorted(store.iter_keys_and_hashes())
    second = run()
    assert second["stats"].calls == 0
    assert sorted(second["store"].iter_keys_and_hashes()) == before
    # Every record carries the full request and the environment it ran in.
    rec = store.records("t")[0]
    assert rec.request["weights"] and rec.request["steps"] and rec.seed == rec.request["seed"]
    assert rec.device == "cpu" and rec.dtype and rec.info["versions"]["diffusers"]
    manifest = store.run("t").manifest
    assert manifest["versions"]["torch"] and manifest["config"]["samples"] == 2
    assert (store.root / "runs/t/run.log").read_text().count("plan:") >= 2


def test_stages_alone_read_only_the_store(workdir):
    run(command="generate")
    assert not (workdir / "reports").exists()
    res = run(command="score")
    scored = [s for s in res["store"].scores("t") if s.metric == "colorfulness"]
    assert len(scored) == 12 and all(s.settings["metric"] == "colorfulness" for s in scored)
    run(command="report")
    assert (workdir / "reports/toy-shapes/t/leaderboard.md").exists()
    out = run("export.format=parquet", command="export")["export"]
    df = pd.read_parquet(out)
    assert len(df) == 12 and "score.colorfulness" in df
    assert df["image_path"].map(lambda p: Path(p).exists()).all()
    assert set(df["status"]) == {"ok"}


def test_report_on_unknown_run_is_a_clear_error(workdir):
    run(command="generate")
    with pytest.raises(cli.UserError, match="run 'other' is not in the store"):
        run("run.name=other", command="report")


def test_same_store_gives_same_report_bytes(workdir):
    run()
    names = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.parquet")
    before = {n: (workdir / "reports/toy-shapes/t" / n).read_bytes() for n in names}
    run(command="report")
    assert {n: (workdir / "reports/toy-shapes/t" / n).read_bytes() for n in names} == before


def _harness(*args, cwd, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def test_help_is_fast_and_never_imports_torch(tmp_path):
    code = ("import sys, time; t=time.perf_counter(); from harness import cli; cli.main(['--help']);"
            "assert 'torch' not in sys.modules, 'torch imported'; print(time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: harness" in out.stdout
    t0 = time.perf_counter()
    exe = Path(sys.executable).with_name("harness")
    subprocess.run([str(exe) if exe.exists() else "harness", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("args, message", [
    (["run", "models=[sdxll]"], "no such models config"),
    (["run", "sampels=2"], "Did you mean 'samples'"),
    (["rnu"], "unknown command 'rnu'. Did you mean 'run'"),
    (["run", "suite.file=missing.yaml"], "missing.yaml"),
])
def test_cli_errors_exit_nonzero_and_leave_store_untouched(tmp_path, args, message):
    store = tmp_path / "store"
    res = _harness(*args, cwd=tmp_path, env={"HARNESS_STORE": str(store)})
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (store / "harness.sqlite").exists() or not list((store / "images").rglob("*.png"))


def test_cli_run_writes_leaderboard(tmp_path, model_cache):
    res = _harness("run", "experiment=smoke", f"store.root={tmp_path / 'store'}",
                   f"report.dir={tmp_path / 'reports'}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "leaderboard:" in res.stdout
    assert (tmp_path / "reports/toy-shapes/smoke/leaderboard.md").exists()
    assert "generate" in res.stderr  # the progress bar


def test_named_run_stages_never_read_the_suite_or_models(workdir):
    run(command="generate")
    # The suite file and model entries could be gone: report and export use the store alone.
    res = run("suite.file=/nonexistent/suite.yaml", "models.toy_unet.model_id=/gone", command="report")
    assert (res["report_dir"] / "leaderboard.md").exists()


def test_missing_optional_dependency_names_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "needs_api.py").write_text("import openai  # noqa\nclass G:\n    pass\n")
    (tmp_path / "needs_other.py").write_text("import zzz_not_a_package  # noqa\nclass G:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "openai", None)  # as if not installed
    with pytest.raises(cli.UserError, match=r"pip install 'harness\[api\]'"):
        assemble.instantiate({"_target_": "needs_api.G"})
    with pytest.raises(cli.UserError, match="pip install zzz_not_a_package"):
        assemble.instantiate({"_target_": "needs_other.G"})


def test_multirun_runs_one_job_per_model(tmp_path, model_cache):
    res = _harness("run", "-m", "experiment=smoke", "models=toy_unet,toy_dit", "suite.limit=2",
                   f"report.dir={tmp_path / 'reports'}", cwd=tmp_path,
                   env={"HARNESS_STORE": str(tmp_path / "store")})
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("leaderboard:") == 2
    s = Store(tmp_path / "store", create=False)
    # experiment=smoke names the run, so both jobs share run 'smoke', one model each.
    assert set(s.unit_counts("smoke")) == {"toy_unet", "toy_dit"}


def test_cost_command_reads_the_store_and_draws_the_plot(workdir):
    run(command="generate")
    res = run("cost.gpu_usd_per_hour=2.4", "cost.utilisation=0.5", "+cost.api_prices.flat=0.04",
              command="cost")
    md = res["cost_report"].read_text()
    assert "| Toy U-Net (untrained) |" in md and "flat" in md and "measured on a CPU" in md
    png = res["cost_report"].with_name("cost.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    csv = pd.read_csv(res["cost_report"].with_name("cost.csv"))
    row = csv[csv["api"] == "flat"].iloc[0]
    expected = row["seconds_per_image"] * 2.4 / 3600 / 0.5
    assert row["self_hosted_usd_per_image"] == pytest.approx(expected, rel=1e-4)  # csv keeps 6 digits


def test_rate_finds_the_run_from_the_store_without_building_models(workdir, monkeypatch):
    from harness.app.cli import resolve_run

    run(command="generate")
    # Building a generator may hash weight folders: finding the run to rate must not need one.
    monkeypatch.setattr(assemble, "build_generators", lambda cfg: pytest.fail("built generators"))
    store = Store(workdir / "store", create=False)
    base = ["experiment=untrained", "suite.limit=3"]
    assert resolve_run(store, assemble.compose([*base, "samples=2"])) == "t"
    with pytest.raises(cli.UserError, match=r"no run of suite 'toy-shapes' with models toy_dit, "
                                            r"toy_unet and samples=3.*Runs of suite 'toy-shapes'.*: t;"):
        resolve_run(store, assemble.compose([*base, "samples=3"]))
    with pytest.raises(cli.UserError, match="no run of suite 'toy-shapes' with models toy_unet"):
        resolve_run(store, assemble.compose([*base, "samples=2", "models=[toy_unet]"]))
