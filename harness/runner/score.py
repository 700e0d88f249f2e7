"""The score stage: reads stored images and prompts, writes metric values. Nothing else."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from harness.metrics.base import Metric, ScoreInput
from harness.store import Store
from harness.store.rows import Record
from harness.types import canonical_json, sha256_hex

log = logging.getLogger(__name__)


def score_run(store: Store, run_id: str, metrics: Mapping[str, Metric], *,
              progress: bool = True) -> dict[str, int]:
    """Compute every metric missing for the run's stored images; return values computed per metric."""
    from tqdm.auto import tqdm

    records = store.records(run_id, status="ok")
    prompts = store.run_prompts(run_id)
    computed: dict[str, int] = {}
    for name, metric in metrics.items():
        h = metric.settings_hash()
        settings = metric.describe()
        metric.cache_dir = store.root / "cache"
        if metric.per == "image":
            # An image counts as scored once its first stored output is there (outputs of one
            # image are written in one transaction).
            first = next(iter(metric.stored_names()))
            done = store.scored_keys(first, h, [r.key for r in records])
            inputs = _input_ids(metric, records, prompts)
            if inputs and done:
                # A value computed on other prompt inputs (questions written since) is stale.
                stored = store.score_extras(first, h, done)
                done = {k for k in done if stored.get(k, {}).get("input_id") == inputs[k]}
            todo = [r for r in records if r.key not in done]
            computed[name] = len(todo)
            if not todo:
                continue
            bar = tqdm(total=len(todo), desc=f"score {name}", unit="img", disable=not progress,
                       dynamic_ncols=True)
            try:
                for i in range(0, len(todo), metric.batch_size):
                    chunk = todo[i : i + metric.batch_size]
                    items = [_input(store, r, prompts) for r in chunk]
                    values = metric.score_images(items)
                    if len(values) != len(chunk):
                        raise RuntimeError(f"metric {name} returned {len(values)} values for "
                                           f"{len(chunk)} images")
                    store.put_scores([
                        (r.key, stored, h, v, settings,
                         {**extra, "input_id": inputs[r.key]} if inputs else extra)
                        for r, (value, extra) in zip(chunk, values, strict=True)
                        for stored, v in _outputs(metric, value)
                    ])
                    bar.update(len(chunk))
            finally:
                bar.close()
        else:
            by_model: dict[str, list[Record]] = {}
            for r in records:
                by_model.setdefault(r.model, []).append(r)
            existing = {(s.model, s.metric, s.settings_hash): s for s in store.set_scores(run_id)}
            n_done = 0
            for model, recs in by_model.items():
                # A set value is stale when the images it rests on changed (a resumed run).
                images_hash = sha256_hex(canonical_json(sorted(r.image_sha256 for r in recs)))
                prev = existing.get((model, next(iter(metric.stored_names())), h))
                if prev and prev.extra.get("images_hash") == images_hash:
                    continue
                items = [_input(store, r, prompts, opened=False) for r in recs]
                value, extra = metric.score_set(items)
                for stored, v in _outputs(metric, value):
                    store.put_set_score(run_id, model, stored, h, v, len(items), settings,
                                        {**extra, "images_hash": images_hash})
                n_done += 1
            computed[name] = n_done
        metric.close()
        log.info("score %s: %d new values", name, computed[name])
    return computed


def _input_ids(metric: Metric, records: list[Record], prompts: Mapping[str, dict]) -> dict[str, str]:
    """Key -> the metric's :meth:`~harness.metrics.base.Metric.input_id` of the record's prompt
    (empty when the metric has none)."""
    if type(metric).input_id is Metric.input_id:
        return {}
    out = {}
    for r in records:
        prompt = prompts.get(r.prompt_id, {"id": r.prompt_id, "text": r.request["prompt"]})
        ident = metric.input_id(prompt)
        if ident is None:
            return {}
        out[r.key] = ident
    return out


def _outputs(metric: Metric, value: Any) -> list[tuple[str, float | None]]:
    """(stored metric name, value) pairs for one result."""
    if metric.outputs:
        if not isinstance(value, dict) or set(value) != set(metric.outputs):
            raise RuntimeError(f"metric {metric.name} must return a dict with keys "
                               f"{sorted(metric.outputs)}, got {value!r}")
        return [(f"{metric.name}.{o}", _num(value[o])) for o in metric.outputs]
    return [(metric.name, _num(value))]


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def _input(store: Store, rec: Record, prompts: Mapping[str, dict], *, opened: bool = True) -> ScoreInput:
    """Per-image metrics get the image opened, not decoded: they decode (as_rgb) on their own
    worker threads, and a corrupt file becomes that image's recorded skip instead of stopping the
    stage. Set metrics get the path: an opened image holds its file open until decoded, and one
    model's set can hold more images than a process may keep files open (often 1,024)."""
    from PIL import Image

    prompt = prompts.get(rec.prompt_id, {"id": rec.prompt_id, "text": rec.request["prompt"]})
    path = store.image_path(rec.image_sha256)
    return ScoreInput(key=rec.key, model=rec.model,
                      image=Image.open(path) if opened else path, prompt=prompt,
                      image_sha256=rec.image_sha256)
