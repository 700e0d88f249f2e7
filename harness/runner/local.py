"""The local executor: one model at a time, batches in order, every result stored at once."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.generators.base import Generator
from harness.store import Store
from harness.store.journal import StoreJournal
from harness.types import GenResult, WorkUnit

log = logging.getLogger(__name__)


@dataclass
class ModelStats:
    planned: int = 0
    cached: int = 0
    ok: int = 0
    refused: int = 0
    errors: int = 0
    calls: int = 0
    seconds: float = 0.0


@dataclass
class ExecStats:
    models: dict[str, ModelStats] = field(default_factory=lambda: defaultdict(ModelStats))
    stopped: str | None = None
    """Why the run stopped before its plan was done (``run.max_cost_usd`` reached), or None."""

    @property
    def calls(self) -> int:
        return sum(m.calls for m in self.models.values())

    def as_dict(self) -> dict[str, Any]:
        return {k: vars(v) for k, v in self.models.items()}


def batches(items: Sequence[WorkUnit], size: int) -> list[list[WorkUnit]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def plan_batches(units: Sequence[WorkUnit], gen: Generator, done: set[str]) -> list[list[WorkUnit]]:
    """Batches still to run for one model.

    For batch-dependent generators the batches are cut from the whole plan and a batch with
    any pending unit runs complete, so every image is made in the same company as in an
    uninterrupted run. Otherwise only pending units are batched (nothing is paid for twice).
    """
    if gen.batch_dependent:
        return [b for b in batches(units, gen.batch_size) if any(u.key not in done for u in b)]
    return batches([u for u in units if u.key not in done], gen.batch_size)


@dataclass
class Work:
    """What one execute call has left to do (the part every executor starts with)."""

    stats: ExecStats
    """Planned and already-stored counts per model, filled in as the run goes."""
    done: set[str]
    """Keys already stored."""
    units: dict[str, list[WorkUnit]]
    """Planned units by model, in plan order."""
    batches: dict[str, list[list[WorkUnit]]]
    """Batches still to run, by model (only models that have any)."""
    total: int
    """Units still to generate."""


def pending_work(store: Store, generators: Mapping[str, Generator], units: Sequence[WorkUnit],
                 *, retry_errors: bool = True) -> Work:
    """Group the plan by model, count what the store already holds, cut the rest into batches,
    and let each model with work check its plan (an import's manifest) before anything runs."""
    stats = ExecStats()
    done = store.finished_keys([u.key for u in units], retry_errors=retry_errors)
    by_model: dict[str, list[WorkUnit]] = defaultdict(list)
    for u in units:
        by_model[u.request.model].append(u)
    todo: dict[str, list[list[WorkUnit]]] = {}
    for name, mine in by_model.items():
        st = stats.models[name]
        st.planned = len(mine)
        st.cached = sum(u.key in done for u in mine)
        cut = plan_batches(mine, generators[name], done)
        if cut:
            todo[name] = cut
    total = sum(st.planned - st.cached for st in stats.models.values())
    log.info("plan: %d units, %d already stored, %d to generate",
             len(units), len(units) - total, total)
    for name in todo:
        generators[name].check_plan(by_model[name])
    return Work(stats, done, dict(by_model), todo, total)


def store_result(store: Store, unit: WorkUnit, res: GenResult, st: ModelStats) -> None:
    """Write one result and count it (the executors' only write of generated work)."""
    store.put_result(unit.request, unit.key, res)
    if res.status == "ok":
        st.ok += 1
    elif res.status == "refused":
        st.refused += 1
        log.info("%s/%s#%d refused: %s", unit.request.model, unit.request.prompt_id,
                 unit.request.sample, res.refusal_reason)
    else:
        st.errors += 1
        log.warning("%s/%s#%d failed: %s", unit.request.model, unit.request.prompt_id,
                    unit.request.sample, res.error)


def progress_bar(total: int, enabled: bool):
    """The ``generate`` progress bar (disabled: a no-op bar with the same methods)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="generate", unit="img", disable=not enabled, dynamic_ncols=True)


class LocalExecutor:
    """Runs pending units model by model in this process.

    A model is loaded only if it has pending units and is closed (memory released) before
    the next model loads.
    """

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        if self.options:
            raise ValueError(f"executor.options: the local executor takes none, got {sorted(self.options)}")

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
        """Run what is not stored yet. ``budget`` (a :class:`harness.runner.preflight.Budget`):
        before each batch it must have room for the batch's estimated cost, else the run stops
        cleanly there (``stats.stopped`` says why; what is stored stays)."""
        work = pending_work(store, generators, units, retry_errors=retry_errors)
        stats, done = work.stats, work.done
        if work.total == 0:
            return stats
        journal = StoreJournal(store)  # API adapters record paid calls here as they happen
        bar = progress_bar(work.total, progress)
        try:
            for name, todo in work.batches.items():
                gen = generators[name]
                st = stats.models[name]
                t0 = time.perf_counter()
                gen.attach_journal(journal)
                try:
                    for batch in todo:
                        fresh = sum(u.key not in done for u in batch)
                        if budget is not None and not budget.reserve(name, fresh):
                            stats.stopped = budget.stopped
                            break
                        results = gen.generate([u.request for u in batch])
                        st.calls += 1
                        stored = []
                        for unit, res in zip(batch, results, strict=True):
                            if unit.key not in done:  # batch-mates rerun only to keep the shape
                                store_result(store, unit, res, st)
                                stored.append(res)
                        new = len(stored)
                        if budget is not None:
                            budget.settle(name, fresh, stored)
                        bar.update(new)
                        elapsed = time.perf_counter() - t0
                        bar.set_postfix_str(
                            f"{name}: {(st.ok + st.refused + st.errors) / max(elapsed, 1e-9):.2f} img/s"
                        )
                finally:
                    st.seconds += time.perf_counter() - t0
                    gen.close()
                    gen.attach_journal(None)
                log.info("%s: %d ok, %d refused, %d errors in %.1fs (%d calls)",
                         name, st.ok, st.refused, st.errors, st.seconds, st.calls)
                if stats.stopped:
                    break
        finally:
            bar.close()
        return stats
