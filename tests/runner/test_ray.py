"""executor=ray on a small local Ray instance: the same store as executor=local, and a worker
killed mid-batch loses and duplicates nothing. Also the SLURM sweep preset (hydra/launcher=slurm)
and a sweep through submitit's local mode."""

import contextlib
import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import cli
from harness.generators.base import Generator
from harness.runner.local import LocalExecutor
from harness.runner.plan import plan_units
from harness.runner.ray_executor import RayExecutor
from harness.store import Store
from harness.store.journal import StoreJournal
from harness.store.rows import UnitCounts
from harness.types import GenResult, Prompt, Suite

SMALL = ["experiment=untrained", "suite.limit=4", "samples=2", "progress=false", "run.name=r",
         # Intra-op threads change float rounding on CPU: pin them so both executors compare
         # like for like (Ray gives fractional-CPU workers one thread).
         "+models.toy_unet.options.torch_threads=1", "+models.toy_dit.options.torch_threads=1"]
RAY = ["executor=ray", "executor.options.workers=2", "executor.options.cpus_per_worker=0.5",
       "executor.options.log_to_driver=false"]


@pytest.fixture(scope="module")
def ray():
    """One small Ray instance for the module (2 CPUs, a small object store, no dashboard)."""
    ray = pytest.importorskip("ray", reason="executor=ray needs the ray extra: pip install -e '.[ray]'")
    import torch

    threads = torch.get_num_threads()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="harness",
             object_store_memory=80 * 2**20)
    try:
        yield ray
    finally:
        ray.shutdown()
        torch.set_num_threads(threads)  # torch_threads=1 above is process-wide


class SlowFake(Generator):
    """Sleeps per image and returns a 4x4 PNG coloured by the seed; notes each batch it starts."""

    kind = "slowfake"

    def __init__(self, *, delay: float, marks: str, **kw) -> None:
        super().__init__(**kw)
        self.delay = delay
        self.marks = marks

    def _generate(self, requests):
        from PIL import Image

        Path(self.marks, f"{self.name}-{time.monotonic_ns()}").touch()
        time.sleep(self.delay * len(requests))
        out = []
        for r in requests:
            buf = io.BytesIO()
            Image.new("RGB", (4, 4), (r.seed % 256, r.seed // 256 % 256, r.seed // 65536 % 256)).save(
                buf, format="PNG")
            out.append(GenResult(status="ok", image=buf.getvalue(), latency_s=self.delay))
        return out


def _fake_plan(marks: Path, delay: float):
    gens = {n: SlowFake(name=n, label=n, model_id=f"fake/{n}", batch_size=2, delay=delay, marks=str(marks))
            for n in ("fa", "fb")}
    suite = Suite(name="fake", prompts=tuple(Prompt(id=f"p{i}", text=f"prompt {i}") for i in range(6)))
    return gens, plan_units(suite, gens, samples=2, seed=0)


def _run(root: Path, *extra: str) -> dict:
    return cli.dispatch(cli.compose(["command=generate", *SMALL, f"store.root={root}", *extra]))


def test_ray_store_equals_local_store(ray, tmp_path, model_cache):
    local = _run(tmp_path / "local")
    remote = _run(tmp_path / "ray", *RAY)
    want = sorted(local["store"].iter_keys_and_hashes())
    assert len(want) == 2 * 4 * 2 and all(st == "ok" for _, _, st in want)
    assert sorted(remote["store"].iter_keys_and_hashes()) == want
    assert remote["stats"].calls == local["stats"].calls
    counts = remote["store"].unit_counts("r")
    assert all(c.ok == 8 and c.pending == 0 for c in counts.values())
    again = _run(tmp_path / "ray", *RAY)  # everything stored: no worker is even started
    assert again["stats"].calls == 0


def test_worker_killed_mid_batch_is_replaced_and_nothing_is_lost_or_duplicated(ray, tmp_path, caplog):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/
    marks = tmp_path / "marks"
    marks.mkdir()
    gens, units = _fake_plan(marks, delay=0.4)
    ex = RayExecutor({"workers": 2, "cpus_per_worker": 0.5, "log_to_driver": False})
    store = Store(tmp_path / "ray")
    result: dict = {}

    def run() -> None:
        try:
            result["stats"] = ex.execute(store, gens, units, progress=False)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            result["error"] = e

    driver = threading.Thread(target=run)
    driver.start()
    deadline = time.monotonic() + 60
    while not any(marks.iterdir()):  # a worker is inside generate: kill it there
        assert time.monotonic() < deadline and driver.is_alive(), result
        time.sleep(0.05)
    model = next(iter(marks.iterdir())).name.split("-")[0]
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    victim = [n for n in names if n.startswith(f"harness-{model}-")]
    assert len(victim) == 1, names  # one actor per model here: the one inside generate
    victim = ray.get_actor(victim[0], namespace="harness")
    ray.kill(victim)
    driver.join(timeout=120)
    assert not driver.is_alive() and "error" not in result, result
    assert any("died" in r.getMessage() for r in caplog.records)

    # Every unit stored once (first attempt), with what an uninterrupted local run stores.
    rows = store.db.execute("SELECT key, attempts FROM records").fetchall()
    assert sorted(k for k, _ in rows) == sorted(u.key for u in units)
    assert all(a == 1 for _, a in rows)
    assert len(list(marks.iterdir())) > len(units) // 2  # the killed batch ran again elsewhere
    ref = Store(tmp_path / "local")
    LocalExecutor().execute(ref, *_fake_plan(tmp_path / "marks", delay=0.0), progress=False)
    assert sorted(store.iter_keys_and_hashes()) == sorted(ref.iter_keys_and_hashes())
    deadline = time.monotonic() + 20
    while ray.util.list_named_actors(all_namespaces=True):  # the run's actors are gone
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.slow
def test_driver_killed_then_rerun_resumes_from_the_store(ray, tmp_path, model_cache):
    small_batches = ["models.toy_unet.batch_size=2", "models.toy_dit.batch_size=2"]  # kill mid-run
    args = ["generate", *SMALL, *small_batches, *RAY, "executor.options.num_cpus=2",
            "executor.options.object_store_memory=80000000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cmd(root):
        return [sys.executable, "-m", "harness.cli", *args, f"store.root={root}"]

    p = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    db = tmp_path / "killed" / "harness.sqlite"
    while True:
        assert time.monotonic() < deadline and p.poll() is None
        if db.exists():
            s = Store(tmp_path / "killed", create=False)
            n = s.db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            s.close()
            if n:
                assert n < 16  # killed mid-run
                break
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    p.wait()
    subprocess.run(cmd(tmp_path / "killed"), env=env, check=True, capture_output=True, timeout=400)
    local = _run(tmp_path / "local", *small_batches)
    resumed = Store(tmp_path / "killed", create=False)
    assert sorted(resumed.iter_keys_and_hashes()) == sorted(local["store"].iter_keys_and_hashes())


def test_slurm_preset_is_found_on_our_config_path():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="the SLURM preset needs the slurm extra: pip install -e '.[slurm]'")
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "models=toy_unet,toy_dit"]
    cli.prevalidate(overrides)  # Hydra's own groups pass the harness's checks
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(cli.CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides[:2], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min == 240


def test_sweep_runs_one_job_per_model_in_submitit_local_mode(tmp_path, model_cache):
    """The SLURM launcher's local twin: the same plugin path, jobs as local processes."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="sweeps need the slurm extra: pip install -e '.[slurm]'")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "harness.cli", "generate", "-m", "hydra/launcher=submitit_local",
         "experiment=untrained", "suite.limit=2", "samples=1", "progress=false", "models=toy_unet,toy_dit",
         "store.root=stores/${hydra:runtime.choices.models}", "hydra.sweep.dir=sweep",
         "hydra.launcher.timeout_min=10"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for model in ("toy_unet", "toy_dit"):
        store = Store(tmp_path / "stores" / model, create=False)
        counts = store.unit_counts(store.runs()[0].run_id)
        assert counts == {model: UnitCounts(planned=2, ok=2, refused=0, error=0, pending=0)}
    jobs = [d for d in (tmp_path / "sweep" / ".submitit").iterdir() if d.name.isdigit()]
    assert len(jobs) == 2  # one job per model


def test_api_units_run_as_tasks_under_the_providers_shared_concurrency(ray, tmp_path, monkeypatch):
    from harness.testing.fakes import FakeProviders

    key = "planted-bfl-key-5b7d1e"
    monkeypatch.setenv("BFL_API_KEY", key)
    with FakeProviders(api_key=key) as fake:
        fake.latency_s = 0.05
        res = cli.dispatch(cli.compose([
            "command=generate", "progress=false", "models=[flux_pro]", "suite=toy-shapes", "suite.limit=4",
            "samples=2", "run.name=api", "metrics=[colorfulness]", f"store.root={tmp_path / 'store'}",
            f"models.flux_pro.options.base_url={fake.url}", "models.flux_pro.options.poll_interval_s=0.02",
            "models.flux_pro.options.concurrency=2", "models.flux_pro.batch_size=1", *RAY,
            "executor.options.env_vars=[HARNESS_*,BFL_API_KEY]"]))
        peak = fake.in_flight_stats()["max"]
        submits = fake.calls["bfl.submit"]
    assert res["store"].unit_counts("api")["flux_pro"].ok == 8
    assert submits == 8  # each unit paid for once
    assert peak <= 2  # concurrency=2 holds across all tasks, not per task
    journal = res["store"].db.execute("SELECT COUNT(*) FROM submits").fetchone()[0]
    assert journal == 8  # the tasks journaled their jobs in the driver's store


def _seed_png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (seed % 256, 7, 9)).save(buf, format="PNG")
    return buf.getvalue()


class JournalProbe(Generator):
    """API-shaped (a base URL, a concurrency): journals each unit like a one-call adapter and
    notes, from inside its Ray task, what it saw in the driver's store right after recording."""

    kind = "probe"
    runs_on_driver = True

    @dataclasses.dataclass
    class Options:
        base_url: str = "http://probe.invalid"
        concurrency: int = 2
        db: str = ""
        marks: str = ""

    journal = None

    def attach_journal(self, journal):
        self.journal = journal

    def _generate(self, requests):
        import sqlite3

        out = []
        for r in requests:
            key, j = r.key(), self.journal
            before = j.find(key)
            seen = None
            if before is None:
                j.record_sending(key, "probe", r.model)
                # Read-only, only to check: the entry is in the driver's store when the call returns.
                with contextlib.closing(sqlite3.connect(f"file:{self.options.db}?mode=ro", uri=True)) as con:
                    seen = con.execute("SELECT state FROM submits WHERE key=?", (key,)).fetchone()[0]
                image = _seed_png(r.seed)
                j.record_answer(key, "probe", r.model, {"status": "ok"}, image)
            else:
                image = j.image(before)
            Path(self.options.marks, key).write_text(json.dumps(
                {"pid": os.getpid(), "journal": type(j).__module__, "seen": seen,
                 "before": before.state if before else None}))
            out.append(GenResult(status="ok", image=image))
        return out


def test_api_tasks_journal_through_the_driver_the_only_writer(ray, tmp_path):
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/
    marks = tmp_path / "marks"
    marks.mkdir()
    store = Store(tmp_path / "store")
    gen = JournalProbe(name="probe", label="probe", model_id="probe-1", batch_size=2,
                       options={"db": str(tmp_path / "store" / "harness.sqlite"), "marks": str(marks)})
    suite = Suite(name="fake", prompts=tuple(Prompt(id=f"p{i}", text=f"prompt {i}") for i in range(3)))
    units = plan_units(suite, {"probe": gen}, samples=2, seed=0)
    # A paid answer a killed run journaled but never stored: the task gets it from the driver.
    paid = _seed_png(12345)
    StoreJournal(store).record_answer(units[0].key, "probe", "probe", {"status": "ok"}, paid)

    stats = RayExecutor({"workers": 1, "log_to_driver": False}).execute(
        store, {"probe": gen}, units, progress=False)

    assert stats.models["probe"].ok == len(units) and stats.models["probe"].calls == 3
    notes = {p.name: json.loads(p.read_text()) for p in marks.iterdir()}
    assert sorted(notes) == sorted(u.key for u in units)
    assert all(n["pid"] != os.getpid() for n in notes.values())  # ran in a task
    assert all(not n["journal"].startswith("harness.store") for n in notes.values())
    assert notes[units[0].key]["before"] == "done" and notes[units[0].key]["seen"] is None
    assert all(n["before"] is None and n["seen"] == "sending"  # durable before the call returned
               for k, n in notes.items() if k != units[0].key)
    journal = StoreJournal(store)
    assert all(journal.find(u.key).state == "done" for u in units) and not journal.pending()
    hashes = {k: sha for k, sha, _ in store.iter_keys_and_hashes()}
    assert store.read_image(hashes[units[0].key]) == paid  # reused, not made again
    assert store.read_image(hashes[units[1].key]) == _seed_png(units[1].request.seed)
    store.close()


def test_cost_cap_stops_api_tasks_cleanly_and_a_higher_cap_resumes_without_paying_twice(ray, workdir,
                                                                                        monkeypatch):
    """``run.max_cost_usd`` under executor=ray: batches in flight hold their cost, the batch that
    would pass the cap is never sent, and a rerun with a higher cap pays only for the rest."""
    from harness.assemble import build_job
    from harness.config import validate
    from harness.runner import pipeline
    from harness.runner.preflight import Budget
    from harness.testing.fakes import FakeProviders

    key, model = "sk-ray-cap-key-1f3870be274f6c49b3e3", "openai_gpt_image_mini"  # $0.011 an image
    monkeypatch.setenv("OPENAI_API_KEY", key)

    def job(fake, *extra):
        cfg = cli.compose(["command=generate", "suite.limit=3", "samples=2", "run.name=cap",
                           "progress=false", "metrics=[colorfulness]", f"models=[{model}]",
                           f"models.{model}.options.base_url={fake.url}/v1",
                           f"models.{model}.batch_size=2", f"models.{model}.options.concurrency=4",
                           *RAY, "executor.options.env_vars=[HARNESS_*,OPENAI_API_KEY]", *extra])
        return build_job(validate(cfg))

    with FakeProviders(api_key=key) as fake:
        fake.latency_s = 0.05
        j = job(fake)
        assert isinstance(j.executor, RayExecutor)
        # Room for two batches of two ($0.044), not a third ($0.066); two go out at once.
        budget = Budget(0.045, 0.0, {model: 0.011})
        pipeline.save_plan(j.store, j.plan, {})
        stats = pipeline.generate(j.store, j.plan, j.executor, budget=budget, progress=False)
        paid = fake.calls["/v1/images/generations"]
        assert stats.stopped and "run.max_cost_usd=0.045 reached" in stats.stopped
        assert "run the same command again with a higher cap" in stats.stopped
        assert "in flight" in stats.stopped  # a batch still running held its cost
        counts = j.store.unit_counts("cap")[model]
        assert (counts.ok, counts.pending) == (4, 2)
        assert paid == counts.ok  # one paid submit per stored image, none past the cap
        assert budget.spent == pytest.approx(0.044) and budget.reserved == 0
        assert j.store.run("cap").status == "incomplete"

        # A higher cap: the preflight counts the $0.044 already spent, the run sends the rest.
        again = job(fake, "run.max_cost_usd=0.08")
        said = []
        pipeline.run("generate", again.store, again.run_id, plan=again.plan, executor=again.executor,
                      settings=again.settings, echo=said.append)
        assert "this run sends 2 requests, about $0.022, after $0.044 already spent" in said[0]
        assert not any(line.startswith("stopped") for line in said)
        assert fake.calls["/v1/images/generations"] == 6  # 6 images, 6 paid submits: none twice
        assert again.store.unit_counts("cap")[model].ok == 6
        assert again.store.run("cap").status == "generated"
