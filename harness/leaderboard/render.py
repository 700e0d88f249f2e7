"""Renderers: leaderboard tables -> files under reports/<suite>/<run>/."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.leaderboard.table import Leaderboard

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
    image_metrics = [k for k, v in lb.metrics.items() if v.get("per") == "image" and k in t.columns]
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
        arrow = "↑" if lb.metrics[k].get("higher_is_better", True) else "↓"
        headers.append(f"{k} {arrow} (95% CI)")
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
            row.append(f"{_fmt(r[k])} [{_fmt(r[k + '_lo'])}, {_fmt(r[k + '_hi'])}]")
        for k in set_metrics:
            n = r.get(f"{k}_n")
            row.append(f"{_fmt(r[k])} (N={int(n) if n == n else '–'})")
        rows.append(row)
    lines += ["", _md_table(headers, rows)]

    if len(lb.by_tag):
        for metric in image_metrics:
            sub = lb.by_tag[lb.by_tag["metric"] == metric]
            # Category tags when the suite has them: a row per fine-grained tag drowns the table.
            categories = sub[sub["tag"].str.startswith("category:")]
            sub = categories if len(categories) else sub
            if sub.empty:
                continue
            piv = sub.pivot(index="tag", columns="model", values="value").sort_index()
            models = [m_ for m_ in t["model"] if m_ in piv.columns]
            labels = dict(zip(t["model"], t["label"], strict=False))
            lines += ["", f"## {metric} by tag", "",
                      _md_table(["tag"] + [labels[x] for x in models],
                                [[tag] + [_fmt(piv.loc[tag, x]) for x in models] for tag in piv.index])]

    lines += ["", "## Models", ""]
    lines.append(_md_table(
        ["model", "config", "kind", "family", "notes"],
        [[r["label"], f"`{r['model']}`", r["kind"], r["family"] or "–",
          (UNTRAINED_NOTE if r["untrained"] else "")] for _, r in t.iterrows()],
    ))
    if lb.metrics:
        lines += ["", "## Metric settings", ""]
        for k, v in sorted(lb.metrics.items()):
            s = ", ".join(f"{a}={b}" for a, b in sorted(v.get("settings", {}).items()))
            lines.append(f"- **{k}** ({v.get('per')}): {s}")
    lines.append("")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f}%"


def write_report(lb: Leaderboard, out_dir: str | os.PathLike[str]) -> Path:
    """Write leaderboard.md and leaderboard.csv to <out_dir>/<suite>/<run>/ and point
    <out_dir>/<suite>/latest at it. Returns the run's report folder."""
    suite_dir = Path(out_dir) / lb.suite
    run_dir = suite_dir / lb.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "leaderboard.md", render_markdown(lb))
    csv = lb.models.copy()
    _write_atomic(run_dir / "leaderboard.csv", csv.to_csv(index=False, float_format="%.6g"))
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
