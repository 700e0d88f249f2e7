"""Decoding ahead of a model: per-image work on a thread pool, results in order, bounded memory.

A GPU scores images faster than one CPU core decodes them (a 512 px PNG takes 3-6 ms to decode
and resize; a GPU runs Inception-v3 at thousands of images a second), so the metrics decode on
every core, one image per task, a bounded number of images ahead of the model. The work releases
the GIL (libspng, PIL's decoder and resize), so the threads run in parallel.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def resolve_workers(value: Any, *, name: str = "workers") -> int:
    """A ``workers`` setting: ``auto`` (or None) = one per core, else an integer >= 0 (0 = decode
    in the calling thread)."""
    from harness.errors import ConfigError

    if value is None or value == "auto":
        return cpu_count()
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name}: must be an integer >= 0 or auto, got {value!r}.")
    return value


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int,
                 name: str = "prep") -> Iterator[R]:
    """``fn`` over ``items`` in order, computed by ``workers`` threads at most ``ahead`` items
    before the consumer. An exception from ``fn`` is raised when its item's turn comes (items
    after it are not waited for). ``workers=0`` maps in the calling thread."""
    if workers <= 0:
        for item in items:
            yield fn(item)
        return
    it = iter(items)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        try:
            for item in it:
                pending.append(pool.submit(fn, item))
                if len(pending) >= max(1, ahead):
                    break
            while pending:
                result = pending.popleft().result()
                for item in it:
                    pending.append(pool.submit(fn, item))
                    break
                yield result
        finally:
            for f in pending:
                f.cancel()


def batched(results: Iterable[R], size: int) -> Iterator[list[R]]:
    """Consecutive lists of ``size`` (the last one shorter)."""
    batch: list[R] = []
    for r in results:
        batch.append(r)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prepared_groups(prepare: Callable[[Any], Any], todo: Iterable[tuple[int, str]],
                    images: Callable[[int], Any], out: Any, *, workers: int,
                    model_batch: int, name: str) -> Iterator[list[tuple[int, Any, str]]]:
    """Groups of up to ``model_batch`` ``(index, prepared image, text)`` for a model that scores
    an image against a text, prepared on ``workers`` threads up to two batches ahead (decoding
    and resizing overlap the forward pass). ``images(i)`` is the i-th image source and
    ``prepare`` turns it into the model's input; an image that cannot be read is recorded in
    ``out[i]`` as ``(None, {"skipped": reason})`` and the others still count."""
    from harness.metrics.base import as_rgb

    def prep(entry: tuple[int, str]) -> tuple[int, Any, str, str | None]:
        i, text = entry
        try:
            return i, prepare(as_rgb(images(i))), text, None
        except Exception as e:  # a corrupt file: recorded, the other images still count
            return i, None, text, f"unreadable image: {type(e).__name__}: {e}"

    ready = prefetch_map(prep, todo, workers=workers, ahead=2 * model_batch + workers, name=name)
    for group in batched(ready, model_batch):
        for i, _, _, reason in group:
            if reason is not None:
                out[i] = (None, {"skipped": reason})
        good = [(i, x, text) for i, x, text, reason in group if reason is None]
        if good:
            yield good
