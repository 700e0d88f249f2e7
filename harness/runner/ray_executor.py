"""The Ray executor: a suite's work units spread over a Ray cluster, every result stored by
this process.

Shape of a run:

* Local models (diffusers pipelines) run in long-lived **actors**, one per GPU (or a share of
  a CPU on CPU-only machines). An actor loads its model once and takes batches of that model's
  units until none are left; it then exits and its GPU goes to the model with the most work
  still queued. Batches are cut exactly as the local executor cuts them, so batch-dependent
  pipelines make the same bytes.
* Closed-API models (and imports) run as lightweight **tasks** (no GPU) on the driver's node.
  The driver caps the tasks in flight per provider so that the provider's ``concurrency``
  (and ``rpm``) hold across all workers, not per worker.
* **One writer**: results travel back to the driver, which writes them with the same
  ``Store.put_result`` as the local executor. The store therefore ends with the same keys and
  image hashes, and a crash between generation and writing loses work, never consistency.
  API tasks never open the store: what they journal (a submit about to go out, a job id, a
  paid answer) is relayed to the driver, which writes it before the task goes on
  (:mod:`harness.runner.relay`).
* **Faults**: a worker that dies mid-batch (killed, out of memory, node lost) raises on the
  driver; its batches go back to the front of the queue and a fresh actor takes them. Nothing
  it made reached the store, so nothing is duplicated. A driver killed mid-run leaves the
  store as the local executor would: the next run resumes from it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, did_you_mean
from harness.generators.base import Generator
from harness.runner.local import ExecStats, ModelStats, pending_work, progress_bar, store_result
from harness.runner.relay import DriverRelay
from harness.store import Store
from harness.store.journal import StoreJournal
from harness.types import GenRequest, GenResult, Journal, WorkUnit

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    """Settings of ``executor=ray`` (``executor.options.*``)."""

    address: str | None = None
    """Cluster to join: ``auto`` (the cluster this machine is part of), ``ray://host:10001``,
    ``host:6379``; None starts a local Ray instance for the run (or uses ``$RAY_ADDRESS``)."""
    num_cpus: float | None = None
    """CPUs of a local instance (None: all of this machine's)."""
    num_gpus: int | None = None
    """GPUs of a local instance (None: those Ray detects)."""
    object_store_memory: int | None = None
    """Bytes of shared memory for a local instance's object store (None: Ray's default)."""
    workers: int | None = None
    """Model actors alive at once; None: one per GPU of the cluster (one on CPU-only clusters)."""
    gpus_per_worker: float | None = None
    """GPUs each model actor asks for; None: 1 when the cluster has GPUs, else 0."""
    cpus_per_worker: float = 1.0
    """CPUs each model actor asks for (fractions share a core, e.g. 0.25)."""
    batches_per_worker: int = 2
    """Batches sent to an actor ahead of time, so it never waits for the driver between two."""
    task_cpus: float = 0.0
    """CPUs each API task asks for (they mostly wait on the network)."""
    max_worker_failures: int = 3
    """Times a batch is re-sent after the worker running it died; then the run stops."""
    env_vars: list[str] = dataclasses.field(default_factory=lambda: ["HARNESS_*", "HF_*"])
    """Driver environment variables (glob patterns) forwarded to workers (model caches, hub
    settings). Forwarded values are visible in Ray's dashboard: forward API keys only to a
    private cluster."""
    log_to_driver: bool = True
    """Show workers' log output on the driver's terminal."""
    namespace: str = "harness"
    """Ray namespace of the actors (named harness-<first model>-<n>-<run token>)."""
    shutdown: bool = True
    """Stop a local instance this executor started once the run ends."""


@dataclass
class _Batch:
    model: str
    units: list[WorkUnit]
    failures: int = 0


@dataclass
class _Worker:
    handle: Any
    model: str
    name: str
    inflight: int = 0


class RayExecutor:
    """Runs pending units on a Ray cluster; the driver (this process) is the only store writer.

    Args:
        options: See :class:`RayOptions`; every key is checked.
    """

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        raw = dict(options or {})
        valid = [f.name for f in dataclasses.fields(RayOptions)]
        for k in raw:
            if k not in valid:
                raise ConfigError(f"executor.options: unknown option {k!r} for the ray executor."
                                  f"{did_you_mean(k, valid)}")
        self.options = RayOptions(**raw)
        o = self.options
        if o.workers is not None and o.workers < 1:
            raise ConfigError(f"executor.options.workers: must be >= 1 (or null), got {o.workers}.")
        if o.cpus_per_worker < 0 or (o.gpus_per_worker or 0) < 0 or o.task_cpus < 0:
            raise ConfigError("executor.options: cpus_per_worker, gpus_per_worker and task_cpus "
                              "must be >= 0.")
        if o.batches_per_worker < 1:
            raise ConfigError(f"executor.options.batches_per_worker: must be >= 1, got "
                              f"{o.batches_per_worker}.")

    # -- Ray connection ---------------------------------------------------------------------

    def _connect(self) -> tuple[Any, bool]:
        """The ray module, and whether this call started the instance (so must stop it)."""
        try:
            import ray
        except ModuleNotFoundError:
            raise ConfigError("executor=ray needs the Python package 'ray', which is not installed. "
                              "Install it with: pip install 'harness[ray]'") from None
        if ray.is_initialized():
            return ray, False
        o = self.options
        kwargs: dict[str, Any] = {"namespace": o.namespace, "include_dashboard": False,
                                  "log_to_driver": o.log_to_driver}
        joining = o.address is not None or bool(os.environ.get("RAY_ADDRESS"))
        if o.address is not None:
            kwargs["address"] = o.address
        if not joining:  # these size a new local instance; Ray refuses them when joining
            for k in ("num_cpus", "num_gpus", "object_store_memory"):
                if getattr(o, k) is not None:
                    kwargs[k] = getattr(o, k)
        ray.init(**kwargs)
        log.info("ray: %s cluster, resources %s", "joined" if joining else "local",
                 ray.cluster_resources())
        return ray, not joining

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items()
                if any(fnmatch.fnmatchcase(k, p) for p in self.options.env_vars)}

    # -- the run ----------------------------------------------------------------------------

    def execute(
        self,
        store: Store,
        generators: Mapping[str, Generator],
        units: Sequence[WorkUnit],
        *,
        retry_errors: bool = True,
        progress: bool = True,
        budget: Any = None,
    ) -> ExecStats:
        """Run what is not stored yet; ``budget`` as in :meth:`LocalExecutor.execute` (API
        batches in flight hold their estimated cost until their results are written)."""
        work = pending_work(store, generators, units, retry_errors=retry_errors)
        stats = work.stats
        if work.total == 0:
            return stats
        queues = {name: deque(_Batch(name, b) for b in todo) for name, todo in work.batches.items()}
        ray, started = self._connect()
        try:
            run = _RayRun(self, ray, store, generators, queues, work.done, stats)
            run.budget = budget
            bar = progress_bar(work.total, progress)
            try:
                run.loop(bar)
            finally:
                bar.close()
                run.stop()
        finally:
            if started and self.options.shutdown:
                ray.shutdown()
        for name, st in stats.models.items():
            if st.calls:
                log.info("%s: %d ok, %d refused, %d errors, %.1f worker-seconds (%d calls)",
                         name, st.ok, st.refused, st.errors, st.seconds, st.calls)
        return stats


def is_api(gen: Generator) -> bool:
    """Closed-API generators: they declare a request concurrency and a base URL."""
    opts = getattr(gen, "options", None)
    return hasattr(opts, "concurrency") and hasattr(opts, "base_url")


def _run_batch(gen: Generator, requests: list[GenRequest]) -> tuple[list[GenResult], float]:
    t0 = time.perf_counter()
    results = gen.generate(requests)
    return results, time.perf_counter() - t0


class _ModelWorker:
    """Actor body: holds one model, loaded on its first batch, until the actor exits or is
    switched to another model."""

    def __init__(self, gen: Generator) -> None:
        from harness.runtime import tune_allocator

        tune_allocator()  # a worker process of its own: the same allocator settings as the CLI
        self.gen = gen

    def run(self, requests: list[GenRequest]) -> tuple[list[GenResult], float]:
        return _run_batch(self.gen, requests)

    def switch(self, gen: Generator) -> None:
        """Release the current model (its memory) and hold ``gen`` instead."""
        self.gen.close()
        self.gen = gen


def _host_task(gen: Generator, requests: list[GenRequest],
               journal: Journal | None) -> tuple[list[GenResult], float]:
    """Task body for API and import models, on the driver's node. It never opens the store:
    ``journal`` relays what the adapter records to the driver."""
    gen.attach_journal(journal)
    try:
        return _run_batch(gen, requests)
    finally:
        gen.close()


class _RayRun:
    """The driver's loop for one execute call: schedule, collect, write, recover."""

    def __init__(self, ex: RayExecutor, ray: Any, store: Store, generators: Mapping[str, Generator],
                 queues: dict[str, deque[_Batch]], done: set[str], stats: ExecStats) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.o = ex.options
        self.ray = ray
        self.store = store
        self.generators = generators
        self.queues = queues
        self.done = done
        self.stats = stats
        self.token = uuid.uuid4().hex[:8]
        self.env = {"env_vars": ex._env()}
        self.pending: dict[Any, tuple[_Batch, _Worker | None]] = {}
        self.workers: list[_Worker] = []
        self.seq = 0
        self.refs = {name: ray.put(generators[name]) for name in queues}
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0.0)
        self.gpus_per_worker = self.o.gpus_per_worker if self.o.gpus_per_worker is not None else (
            1.0 if gpus else 0.0)
        if self.o.workers is not None:
            self.max_workers = self.o.workers
        elif self.gpus_per_worker:
            self.max_workers = max(1, int(gpus // self.gpus_per_worker))
        else:
            self.max_workers = 1
        self.api_models = {n for n in queues if generators[n].runs_on_driver or is_api(generators[n])}
        local = [n for n in queues if n not in self.api_models]
        short = {k: v for k, v in (("CPU", self.o.cpus_per_worker), ("GPU", self.gpus_per_worker))
                 if v and resources.get(k, 0.0) < v}
        if local and short:  # an autoscaler may still add such nodes: say so, don't stop
            log.warning("ray: each model actor asks for %s but the cluster has %s now; the run waits "
                        "until a node can host one (executor.options.cpus_per_worker / "
                        "gpus_per_worker).", short, {k: resources.get(k, 0.0) for k in short})
        self.actor_cls = ray.remote(_ModelWorker)
        self.actor_opts = {"num_cpus": self.o.cpus_per_worker, "num_gpus": self.gpus_per_worker,
                           "max_restarts": 0, "max_task_retries": 0, "runtime_env": self.env}
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.task_fn = ray.remote(_host_task).options(
            num_cpus=self.o.task_cpus, max_retries=0, runtime_env=self.env, scheduling_strategy=here)
        # What API tasks journal comes back here, to the only writer (on this node too).
        self.relay = DriverRelay(ray, StoreJournal(store), runtime_env=self.env,
                                 scheduling_strategy=here) if self.api_models else None
        # Tasks in flight per provider: the provider's concurrency split into whole batches.
        self.lane: dict[str, str] = {}
        self.lane_cap: dict[str, int] = {}
        self.lane_interval: dict[str, float] = {}
        for n in self.api_models:
            gen = generators[n]
            if is_api(gen):
                lane = "api:" + (getattr(gen, "provider", "") or gen.kind)
                cap = max(1, int(gen.options.concurrency) // gen.batch_size)
                rpm = getattr(gen.options, "rpm", None)
                interval = 60.0 * gen.batch_size / float(rpm) if rpm else 0.0
            else:
                lane, cap, interval = f"host:{n}", max(1, self.max_workers), 0.0
            self.lane[n] = lane
            self.lane_cap[lane] = min(self.lane_cap.get(lane, cap), cap)
            self.lane_interval[lane] = max(self.lane_interval.get(lane, 0.0), interval)
        self.lane_busy: dict[str, int] = defaultdict(int)
        self.lane_next: dict[str, float] = defaultdict(float)
        self.t0 = time.perf_counter()
        self.written = 0
        self.budget: Any = None
        """The run's :class:`harness.runner.preflight.Budget` (None: no cap)."""

    # -- scheduling -------------------------------------------------------------------------

    def _queued(self, name: str) -> int:
        return len(self.queues.get(name) or ())

    def _neediest(self) -> str | None:
        """The local model that most needs one more actor (most queued batches per actor)."""
        best, best_score = None, 0.0
        for name in self.queues:
            if name in self.api_models or not self._queued(name):
                continue
            mine = sum(w.model == name for w in self.workers)
            if mine >= self._queued(name):  # no more actors than batches left to hand out
                continue
            score = self._queued(name) / (mine + 1)
            if score > best_score:
                best, best_score = name, score
        return best

    def _start_workers(self) -> None:
        """Give free actor slots to the models that need them most."""
        while len(self.workers) < self.max_workers:
            best = self._neediest()
            if best is None:
                return
            self.seq += 1
            name = f"harness-{best}-{self.seq}-{self.token}"
            handle = self.actor_cls.options(name=name, **self.actor_opts).remote(self.refs[best])
            self.workers.append(_Worker(handle, best, name))
            log.info("ray: started %s", name)

    def _feed(self) -> None:
        for _ in range(self.o.batches_per_worker):  # one batch per actor per pass: spread them
            for w in self.workers:
                q = self.queues.get(w.model)
                if q and w.inflight < self.o.batches_per_worker:
                    b = q.popleft()
                    ref = w.handle.run.remote([u.request for u in b.units])
                    self.pending[ref] = (b, w)
                    w.inflight += 1
        now = time.monotonic()
        for name in self.api_models:
            q = self.queues.get(name)
            lane = self.lane[name]
            while q and self.lane_busy[lane] < self.lane_cap[lane] and self.lane_next[lane] <= now:
                if self.budget is not None and not self.budget.reserve(name, self._fresh(q[0])):
                    self.stats.stopped = self.budget.stopped
                    for priced in self.budget.prices:  # the rest waits for a run with a higher cap
                        self.queues.get(priced, deque()).clear()
                    break
                b = q.popleft()
                journal = self.relay.journal_for(u.key for u in b.units) if self.relay else None
                ref = self.task_fn.remote(self.refs[name], [u.request for u in b.units], journal)
                self.pending[ref] = (b, None)
                self.lane_busy[lane] += 1
                self.lane_next[lane] = max(now, self.lane_next[lane]) + self.lane_interval[lane]

    def _fresh(self, batch: _Batch) -> int:
        return sum(u.key not in self.done for u in batch.units)

    def _retire(self, w: _Worker) -> None:
        """``w``'s model has no batches left: hand the actor to another model (its process
        and libraries are already up), or let it go."""
        self.workers.remove(w)
        best = self._neediest()
        if best is None:
            self.ray.kill(w.handle)
            return
        w.handle.switch.remote(self.refs[best])  # runs before any batch sent after it
        w.model = best
        self.workers.append(w)
        log.info("ray: %s now runs %s", w.name, best)

    # -- the loop ---------------------------------------------------------------------------

    def loop(self, bar: Any) -> None:
        from ray.exceptions import RayError, RayTaskError

        while any(self.queues.values()) or self.pending:
            self._start_workers()
            self._feed()
            if not self.pending:  # only rate-limited API batches wait: sleep until the next slot
                time.sleep(max(0.0, min(self.lane_next.values(), default=0.0) - time.monotonic()))
                continue
            waiting = list(self.pending) + ([self.relay.waiting] if self.relay else [])
            ready, _ = self.ray.wait(waiting, num_returns=1, timeout=1.0)
            for ref in ready:
                if self.relay is not None and ref == self.relay.waiting:
                    self.relay.write()  # a task waits for these: write them first
                    continue
                batch, worker = self.pending.pop(ref)
                if worker is not None:
                    worker.inflight -= 1
                else:
                    self.lane_busy[self.lane[batch.model]] -= 1
                try:
                    results, seconds = self.ray.get(ref)
                except RayTaskError as e:  # the generator itself raised: as the local executor does
                    raise e.as_instanceof_cause() from None
                except RayError as e:
                    self._lost(batch, worker, e)
                    continue
                self._write(batch, results, seconds, bar)
                if worker is not None and worker in self.workers and worker.inflight == 0 \
                        and not self._queued(worker.model):
                    self._retire(worker)

    def _lost(self, batch: _Batch, worker: _Worker | None, err: Exception) -> None:
        """A worker died under ``batch``: queue it again (first) for a fresh worker."""
        batch.failures += 1
        where = worker.name if worker else f"task for {batch.model}"
        if batch.failures > self.o.max_worker_failures:
            raise RuntimeError(
                f"{where} died {batch.failures} times running the same batch of {batch.model} "
                f"({type(err).__name__}: {err}). Out of memory? Lower models.{batch.model}."
                f"batch_size or give each worker more (executor.options.gpus_per_worker / "
                f"cpus_per_worker).") from None
        if self.budget is not None:
            self.budget.settle(batch.model, self._fresh(batch), [])  # sent again: held again
        log.warning("ray: %s died (%s); its batch of %d goes to another worker (attempt %d)",
                    where, type(err).__name__, len(batch.units), batch.failures + 1)
        self.queues.setdefault(batch.model, deque()).appendleft(batch)
        if worker is not None and worker in self.workers:
            self.workers.remove(worker)
            self.ray.kill(worker.handle)

    def _write(self, batch: _Batch, results: list[GenResult], seconds: float, bar: Any) -> None:
        st: ModelStats = self.stats.models[batch.model]
        st.calls += 1
        st.seconds += seconds
        stored = []
        for unit, res in zip(batch.units, results, strict=True):
            if unit.key not in self.done:  # batch-mates rerun only to keep the shape
                store_result(self.store, unit, res, st)
                self.done.add(unit.key)
                stored.append(res)
        new = len(stored)
        if self.budget is not None:
            self.budget.settle(batch.model, new, stored)
        self.written += new
        bar.update(new)
        rate = self.written / max(time.perf_counter() - self.t0, 1e-9)
        bar.set_postfix_str(f"{len(self.workers)} workers, {rate:.2f} img/s")

    def stop(self) -> None:
        """Kill every actor of this run (their models go with them)."""
        for w in self.workers:
            try:
                self.ray.kill(w.handle)
            except Exception:  # noqa: BLE001 - already gone, or the cluster went away
                log.debug("ray: %s was already gone", w.name)
        self.workers.clear()
        # API tasks still running are left to go on without the journal relay: what they
        # journaled so far is in the store, so the next run polls those jobs instead of paying
        # again; a task that tries to record more fails before it pays.
        self.pending.clear()
        if self.relay is not None:
            self.relay.close()
