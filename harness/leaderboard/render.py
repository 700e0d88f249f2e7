"""Renderers: leaderboard tables -> files under reports/<suite>/<run>/."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.leaderboard.table import Leaderboard
from harness.metrics.base import output_directions

UNTRAINED_NOTE = ("random weights, built only so the pipeline runs end to end; its images and "
                  "scores say nothing about any real model")


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -digits):
            return f"{v:.{digits}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def render_markdown(lb: Leaderboard) -> str:
    m = lb.run["manifest"]
    t = lb.models
    all_image = [k for k, v in lb.metrics.items() if v.get("per") == "image" and k in t.columns]
    # The main table shows one column per metric: multi-output metrics show their headline
    # (first) output there and every output in a table of their own below.
    image_metrics, more_outputs = _split_outputs(lb, all_image)
    set_metrics = [k for k, v in lb.metrics.items() if v.get("per") == "set" and k in t.columns]
    lines = [
        f"# Leaderboard: {lb.suite}",
        "",
        f"Run `{lb.run_id}` · suite `{lb.suite}` v{m.get('suite', {}).get('version', '?')} "
        f"({m.get('suite', {}).get('prompts', '?')} prompts) · {m.get('samples', '?')} sample(s) "
        f"per prompt · seed {m.get('seed', '?')}",
    ]
    if m.get("suite", {}).get("description"):
        lines += ["", m["suite"]["description"]]
    if len(t) and t["untrained"].any():
        lines += ["", f"> **Untrained models** are marked †: {UNTRAINED_NOTE}."]
    headers = ["#", "model", "images", "refusal rate", "latency p50 (s)", "latency p95 (s)",
               "cost / image (USD)"]
    for k in image_metrics:
        headers.append(f"{k} {_arrow(lb, k)} (95% CI)")
    if image_metrics:
        ci_note = ("95% CI: percentile bootstrap of the mean over images (2000 resamples, seeded); "
                   "N is shown where fewer images have a value than were generated.")
    for k in set_metrics:
        arrow = "↑" if lb.metrics[k].get("higher_is_better", True) else "↓"
        headers.append(f"{k} {arrow} (N)")
    rows = []
    for i, r in t.iterrows():
        label = f"{r['label']}{' †' if r['untrained'] else ''}"
        images = f"{int(r['ok'])}/{int(r['planned'])}"
        if r["errors"] or r["pending"]:
            images += f" ({int(r['errors'])} errors, {int(r['pending'])} pending)"
        row = [str(i + 1), label, images, _pct(r["refusal_rate"]), _fmt(r["latency_p50_s"]),
               _fmt(r["latency_p95_s"]), _fmt(r["cost_per_image_usd"], 4)]
        for k in image_metrics:
            row.append(_ci_cell(r, k))
        for k in set_metrics:
            n = r.get(f"{k}_n")
            row.append(f"{_fmt(r[k])} (N={int(n) if n == n else '–'})")
        rows.append(row)
    lines += ["", _md_table(headers, rows)]
    lines += _fid_note(lb, set_metrics)
    if image_metrics:
        lines += ["", ci_note]
    for base, names in more_outputs.items():
        lines += ["", f"## {base}: every output", "",
                  _md_table(["model"] + [f"{k.split('.', 1)[1]} {_arrow(lb, k)}" for k in names],
                            [[r["label"]] + [_ci_cell(r, k) for k in names] for _, r in t.iterrows()])]

    if len(lb.by_tag):
        for metric in image_metrics:
            sub = lb.by_tag[lb.by_tag["metric"] == metric]
            # Category tags when the suite has them: a row per fine-grained tag drowns the table.
            categories = sub[sub["tag"].str.startswith("category:")]
            sub = categories if len(categories) else sub
            if sub.empty:
                continue
            cells = {(r_["tag"], r_["model"]): _tag_cell(r_) for _, r_ in sub.iterrows()}
            tags = sorted(sub["tag"].unique())
            models = [m_ for m_ in t["model"] if m_ in set(sub["model"])]
            labels = dict(zip(t["model"], t["label"], strict=False))
            lines += ["", f"## {metric} by tag", "", "mean [95% CI] (N)", "",
                      _md_table(["tag"] + [labels[x] for x in models],
                                [[tag] + [cells.get((tag, x), "–") for x in models] for tag in tags])]

    lines += ["", "## Models", ""]
    lines.append(_md_table(
        ["model", "config", "kind", "family", "notes"],
        [[r["label"], f"`{r['model']}`", r["kind"], r["family"] or "–",
          (UNTRAINED_NOTE if r["untrained"] else "")] for _, r in t.iterrows()],
    ))
    if lb.metrics:
        lines += ["", "## Metric settings", ""]
        listed: set[str] = set()
        for k, v in sorted(lb.metrics.items()):
            settings = v.get("settings", {})
            outputs = output_directions(settings)
            base = k.split(".", 1)[0] if outputs else k
            if base not in listed:  # outputs of one metric share their settings: list them once
                listed.add(base)
                shown = ", ".join(f"{a}={b}" for a, b in sorted(settings.items()) if a != "outputs")
                arrows = (f"{o} {'↑' if hib else '↓'}" for o, hib in outputs.items())
                outs = f"; outputs {', '.join(arrows)}" if outputs else ""
                lines.append(f"- **{base}** ({v.get('per')}{outs}): {shown}")
            how = how_to_read(k, settings)
            if how:
                lines.append(f"  - How to read{f' {k}' if outputs else ''}: {how}")
    lines.append("")
    return "\n".join(lines)


def _arrow(lb: Leaderboard, k: str) -> str:
    return "↑" if lb.metrics[k].get("higher_is_better", True) else "↓"


def _ci_cell(r: Any, k: str) -> str:
    cell = f"{_fmt(r[k])} [{_fmt(r[k + '_lo'])}, {_fmt(r[k + '_hi'])}]"
    n = r.get(f"{k}_n")
    if n == n and n is not None and int(n) != int(r["ok"]):
        cell += f" (N={int(n)})"  # some images have no value (skipped): say how many count
    return cell


def _split_outputs(lb: Leaderboard, names: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Headline metric names (single-output metrics and each multi-output metric's first
    output) and, per multi-output metric, all its outputs in declared order."""
    head: list[str] = []
    groups: dict[str, list[str]] = {}
    for k in names:
        outputs = list(output_directions(lb.metrics[k].get("settings", {})))
        base, _, out = k.partition(".")
        if out in outputs:
            groups.setdefault(base, [None] * len(outputs))[outputs.index(out)] = k
        else:
            head.append(k)
    more = {}
    for base, ks in groups.items():
        present = [k for k in ks if k]
        head.append(present[0])
        if len(present) > 1:
            more[base] = present
    return head, more


def _tag_cell(r: Any) -> str:
    lo, hi = r.get("lo"), r.get("hi")
    ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if lo == lo and lo is not None else ""
    n = r.get("n")
    return f"{_fmt(r['value'])}{ci}" + (f" ({int(n)})" if n == n and n is not None else "")


_OCR_OUTPUTS = {
    "exact": "share of images whose normalised text equals the target exactly (0-1)",
    "word_precision": "share of the words read that are in the target (multiset, 0-1)",
    "word_recall": "share of the target's words that were read (multiset, 0-1)",
    "word_f1": "harmonic mean of word precision and recall (0-1)",
    "ned": "1 - edit distance / longer length, character level (0-1, 1 = identical)",
    "cer": "character error rate, edit distance / target length (0 = perfect; can exceed 1)",
}


def how_to_read(stored_name: str, settings: dict[str, Any]) -> str:
    """One line on a metric's scale, for the settings list (empty when there is nothing to say)."""
    kind = settings.get("metric")
    if kind == "clip_score":
        scale = settings.get("scale", 100)
        return (f"{_fmt(float(scale), 4).rstrip('0').rstrip('.')} x max(cos, 0) of image and "
                f"prompt embeddings ({settings.get('model')}, {str(settings.get('weights'))[:23]}); with "
                "scale 100 the range is 0-100 and real CLIPs give roughly 15-40 for matching pairs. "
                "Only comparable between runs with the same model, weights and scale.")
    if kind == "ocr":
        out = stored_name.split(".", 1)[1] if "." in stored_name else ""
        what = _OCR_OUTPUTS.get(out, "")
        norm = ", ".join(k for k in ("casefold", "collapse_whitespace", "strip_punctuation")
                         if settings.get(k))
        return (f"{what}; read by {settings.get('engine_version') or settings.get('engine')} "
                f"after upscaling to {settings.get('min_side')} px, normalised: {norm or 'none'}; "
                "prompts without target text don't count.")
    if kind == "colorfulness":
        return "Hasler-Suesstrunk: ~0 grey, 15 slightly, 33 moderately, 59 quite, 82+ highly colourful."
    return ""


def _fid_note(lb: Leaderboard, set_metrics: list[str]) -> list[str]:
    """Notes under the main table for FID-style metrics: which features they rest on (the
    EfficientNet-Lite0 FID is not comparable to published FID), and a warning for each model
    whose FID rests on fewer than 2,000 images, with its KID (unbiased at small N) beside it."""
    few = 2000
    out: list[str] = []
    for k in set_metrics:
        settings = lb.metrics[k].get("settings", {})
        if settings.get("metric") != "fid" or not k.endswith(".fid"):
            continue
        base = k[: -len(".fid")]
        label = settings.get("label") or "FID"
        out.append(f"- **{k}**: {label}; features `{settings.get('features', '?')}`, "
                   f"{settings.get('resize', '?')} resize to {settings.get('image_size', '?')} px.")
        for _, r in lb.models.iterrows():
            n = r.get(f"{k}_n")
            if n is None or n != n:
                continue
            if r.get(k) is None or r.get(k) != r.get(k):
                out.append(f"  - {r['label']}: no value (skipped; the reason is stored with it, "
                           "e.g. no reference set configured or too few images).")
            elif n < few:
                kid = r.get(f"{base}.kid")
                out.append(f"  - ⚠ {r['label']}: FID rests on N={int(n)} images (< {few:,}): biased "
                           f"upward and noisy; compare KID = {_fmt(kid, 4)} (unbiased).")
    return ["", "**FID / KID**", ""] + out if out else []


def _pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f}%"


def write_report(lb: Leaderboard, out_dir: str | os.PathLike[str]) -> Path:
    """Write leaderboard.md, .csv, .json and .parquet to <out_dir>/<suite>/<run>/ and point
    <out_dir>/<suite>/latest at it. Returns the run's report folder."""
    import json

    suite_dir = Path(out_dir) / lb.suite
    run_dir = suite_dir / lb.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "leaderboard.md", render_markdown(lb))
    table = lb.models.copy()
    _write_atomic(run_dir / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g"))
    doc = {
        "run_id": lb.run_id, "suite": lb.suite,
        "samples": lb.run["manifest"].get("samples"), "seed": lb.run["manifest"].get("seed"),
        "metrics": lb.metrics,
        "models": json.loads(table.to_json(orient="records", double_precision=10)),
        "by_tag": json.loads(lb.by_tag.to_json(orient="records", double_precision=10))
        if len(lb.by_tag) else [],
    }
    _write_atomic(run_dir / "leaderboard.json",
                  json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")
    tmp = run_dir / ".leaderboard.parquet.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, run_dir / "leaderboard.parquet")
    point_latest(suite_dir, lb.run_id)
    return run_dir


def point_latest(suite_dir: Path, run_id: str) -> None:
    """Make <suite_dir>/latest a relative symlink to the run folder (atomic swap)."""
    link = suite_dir / "latest"
    tmp = suite_dir / ".latest.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(run_id, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        # Filesystems without symlinks: a text file naming the newest run.
        tmp.unlink(missing_ok=True)
        _write_atomic(suite_dir / "LATEST", run_id + "\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
