"""Renderers: leaderboard tables -> files under reports/<suite>/<run>/."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from harness.leaderboard.preference import ELO_SCALE
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


Block = tuple
"""A piece of a report, shared by the Markdown, HTML and Streamlit renderers: ("h1"|"h2"|"h3", text),
("p", text), ("quote", text), ("list", [(level, text), ...]) or ("table", headers, rows). Text may
hold the inline Markdown `code` and **bold**."""


def main_blocks(lb: Leaderboard) -> list[Block]:
    """Title, run line, the main table with its notes, every output of multi-output metrics and
    per-image metrics by tag."""
    m = lb.run["manifest"]
    t = lb.models
    all_image = [k for k, v in lb.metrics.items() if v.get("per") == "image" and k in t.columns]
    # The main table shows one column per metric: multi-output metrics show their headline
    # (first) output there and every output in a table of their own below.
    image_metrics, more_outputs = _split_outputs(lb, all_image)
    set_metrics = [k for k, v in lb.metrics.items() if v.get("per") == "set" and k in t.columns]
    blocks: list[Block] = [
        ("h1", f"Leaderboard: {lb.suite}"),
        ("p", f"Run `{lb.run_id}` · suite `{lb.suite}` v{m.get('suite', {}).get('version', '?')} "
              f"({m.get('suite', {}).get('prompts', '?')} prompts) · {m.get('samples', '?')} sample(s) "
              f"per prompt · seed {m.get('seed', '?')}"),
    ]
    if m.get("suite", {}).get("description"):
        blocks.append(("p", m["suite"]["description"]))
    if len(t) and t["untrained"].any():
        blocks.append(("quote", f"**Untrained models** are marked †: {UNTRAINED_NOTE}."))
    if not len(t):
        return blocks
    headers = ["#", "model", "images", "refusal rate", "latency p50 (s)", "latency p95 (s)",
               "cost / image (USD)", "cost / 1,000 images (USD)"]
    for k in image_metrics:
        headers.append(f"{k} {_arrow(lb, k)} (95% CI)")
    for k in set_metrics:
        headers.append(f"{k} {_arrow(lb, k)} (N)")
    rows = []
    for i, r in t.iterrows():
        label = f"{r['label']}{' †' if r['untrained'] else ''}"
        images = f"{int(r['ok'])}/{int(r['planned'])}"
        if r["errors"] or r["pending"]:
            images += f" ({int(r['errors'])} errors, {int(r['pending'])} pending)"
        row = [str(i + 1), label, images, _pct(r["refusal_rate"]), _fmt(r["latency_p50_s"]),
               _fmt(r["latency_p95_s"]), _fmt(r["cost_per_image_usd"], 4),
               _fmt(r.get("cost_per_1000_usd", math.nan), 2)]
        for k in image_metrics:
            row.append(_ci_cell(r, k))
        for k in set_metrics:
            n = r.get(f"{k}_n")
            row.append(f"{_fmt(r[k])} (N={int(n) if n == n else '–'})")
        rows.append(row)
    blocks.append(("table", headers, rows))
    blocks += _fid_note(lb, set_metrics)
    if image_metrics:
        blocks.append(("p", "95% CI: percentile bootstrap of the mean over images (2000 resamples, seeded); "
                            "N is shown where fewer images have a value than were generated."))
    for base, names in more_outputs.items():
        blocks += [("h2", f"{base}: every output"),
                   ("table", ["model"] + [f"{k.split('.', 1)[1]} {_arrow(lb, k)}" for k in names],
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
            blocks += [("h2", f"{metric} by tag"), ("p", "mean [95% CI] (N)"),
                       ("table", ["tag"] + [labels[x] for x in models],
                        [[tag] + [cells.get((tag, x), "–") for x in models] for tag in tags])]
    return blocks


def notes_blocks(lb: Leaderboard) -> list[Block]:
    """What is missing, in words (empty when nothing is)."""
    return [("h2", "What is missing"), ("list", [(0, n) for n in lb.notes])] if lb.notes else []


def preference_blocks(lb: Leaderboard) -> list[Block]:
    """Human preference: ratings with CIs, win rates, votes per pair, position bias, tags and the
    votes still needed; a sentence saying why when there are no votes."""
    pref = lb.preference
    if pref is None:
        return []
    blocks: list[Block] = [("h2", "Human preference")]
    excluded = (f"; {lb.excluded_votes} vote(s) from raters marked excluded are left out"
                if lb.excluded_votes else "")
    if pref.n_votes == 0:
        return blocks + [("p", f"No votes for this run yet{excluded}.")]
    st, tab = pref.settings, pref.table
    labels = _labels(lb)
    anchor = (f"rating 1000 = {labels.get(st['baseline'], st['baseline'])}" if st.get("baseline")
              else "ratings average 1000")
    raters = lb.agreement.get("raters", {}).get("raters", 0)
    blocks.append(("p", f"{pref.n_votes} blind pairwise votes from {raters} rater(s){excluded}. "
                        f"Bradley-Terry by maximum likelihood (a tie counts half a win each; \"both bad\" "
                        f"{'counts as a tie' if st['both_bad'] == 'tie' else 'is left out'}), on an "
                        f"Elo-like scale (400 points = 10:1 odds; {anchor}). "
                        f"{_pct_level(st['ci'])} CI: percentile bootstrap over votes ({st['n_boot']} "
                        f"resamples, seed {st['seed']})."))
    rows = []
    for i, r in tab.iterrows():
        rows.append([str(i + 1), labels.get(r["model"], r["model"]),
                     f"{_fmt(r['rating'], 0)} [{_fmt(r['rating_lo'], 0)}, {_fmt(r['rating_hi'], 0)}]",
                     f"{_fmt(_clean(r['strength']))} [{_fmt(_clean(r['strength_lo']))}, "
                     f"{_fmt(_clean(r['strength_hi']))}]",
                     str(int(r["votes"])), f"{int(r['wins'])}/{int(r['losses'])}/{int(r['ties'])}/"
                     f"{int(r['both_bad'])}", _pct(r["win_rate"]), r["reason"] or ""])
    blocks.append(("table", ["#", "model", "rating (95% CI)", "log-strength (95% CI)", "votes",
                             "won/lost/tie/both bad", "win rate", "note"], rows))
    order = [m for m in tab["model"] if m in pref.win_rates.index]
    wr = pref.win_rates
    blocks += [("h3", "Win rates"),
               ("p", "Share of votes in which the row model beat the column model (ties half); "
                     "– where the two were never compared."),
               ("table", ["row beat column"] + [labels.get(m, m) for m in order],
                [[labels.get(a, a)] + ["–" if a == b else _pct(wr.loc[a, b]) for b in order]
                 for a in order])]
    pairs = pref.pairs
    blocks += [("h3", "Votes per pair"),
               ("table", ["model A", "model B", "votes", "A won", "B won", "ties", "both bad",
                          "A shown left"],
                [[labels.get(r["model_a"], r["model_a"]), labels.get(r["model_b"], r["model_b"]),
                  str(r["votes"]), str(r["a_wins"]), str(r["b_wins"]), str(r["ties"]), str(r["both_bad"]),
                  str(r["a_left"])] for _, r in pairs.iterrows()])]
    pb = pref.position
    if pb["n"]:
        verdict = ("no sign of a side preference" if pb["p_value"] >= 0.05
                   else "raters favour one side: keep sides randomised and balanced")
        blocks += [("h3", "Position bias"),
                   ("p", f"The left image won {_pct(pb['share_left'])} of {pb['n']} decisive votes "
                         f"({_pct_level(pb['ci'])} CI {_pct(pb['lo'])}–{_pct(pb['hi'])}, exact binomial "
                         f"p = {_fmt(pb['p_value'], 3)} against 50%): {verdict}.")]
    else:
        blocks += [("h3", "Position bias"), ("p", f"Not estimated: {pb['reason']}.")]
    tags = pref.tags
    if len(tags):
        cats = tags[tags["tag"].str.startswith("category:")]
        tags = cats if len(cats) else tags
        cell = {(r["tag"], r["model"]): ("–" if r["value"] != r["value"] else
                                         _fmt(1000 + ELO_SCALE * r["value"], 0)) + f" ({r['votes']})"
                for _, r in tags.iterrows()}
        blocks += [("h3", "By prompt tag"),
                   ("p", "Elo-like rating fitted on each tag's votes alone (mean 1000), (votes)."),
                   ("table", ["tag"] + [labels.get(m, m) for m in order],
                    [[tag] + [cell.get((tag, m), "–") for m in order]
                     for tag in sorted(tags["tag"].unique())])]
    need = pref.needed
    blocks.append(("h3", "Votes still needed"))
    if len(need):
        blocks += [("p", "For each pair of neighbours in rating order: are they separated (the CI of "
                         "their difference excludes 0), and if not, roughly how many more votes (with "
                         "today's mix of pairs) would separate them, assuming the gap stays as it is."),
                   ("table", ["upper", "lower", "gap (log-strength)", "CI half-width", "separated",
                              "more votes needed"],
                    [[labels.get(r["upper"], r["upper"]), labels.get(r["lower"], r["lower"]), _fmt(r["gap"]),
                      _fmt(r["half_width"]), "yes" if r["separated"] else "no",
                      _more_votes(r["more_votes"])] for _, r in need.iterrows()])]
    else:
        blocks.append(("p", f"Not estimated: {need.attrs.get('reason') or 'no ranking'}."))
    return blocks


def agreement_blocks(lb: Leaderboard) -> list[Block]:
    """Inter-rater alpha and, per automatic metric, how often it picks the rater's image."""
    ag = lb.agreement
    if not ag or lb.preference is None or lb.preference.n_votes == 0:
        return []
    a = ag["raters"]
    blocks: list[Block] = [("h2", "Agreement")]
    if a["reason"]:
        blocks.append(("p", f"Inter-rater Krippendorff's α: not available ({a['reason']})."))
    else:
        ci = (f" ({_pct_level(a['ci'])} CI {_fmt(a['lo'])} to {_fmt(a['hi'])}, bootstrap over comparisons)"
              if a["lo"] == a["lo"] else " (too few comparisons for a CI)")
        blocks.append(("p", f"Inter-rater Krippendorff's α (nominal: first image / second image / tie) = "
                            f"**{_fmt(a['alpha'])}**{ci}, from {a['units']} comparison(s) rated by two or "
                            f"more of {a['raters']} rater(s). 1 is perfect agreement, 0 is chance; "
                            "below about 0.4 the votes are mostly noise."))
    mt = ag.get("metrics")
    if mt is not None and len(mt):
        blocks += [("h3", "Which metric predicts the raters"),
                   ("p", "Share of decisive (left/right) votes where the metric, read in its own direction, "
                         "prefers the image the rater chose (a metric tie counts half; 50% is chance)."),
                   ("table", ["metric", "direction", "agrees with raters (95% CI)", "votes", "metric ties",
                              "note"],
                    [[f"`{r['metric']}`", "↑" if r["higher_is_better"] else "↓",
                      f"{_pct(r['agreement'])} [{_pct(r['lo'])}, {_pct(r['hi'])}]", str(r["n"]),
                      str(r["metric_ties"]), r["reason"]] for _, r in mt.iterrows()])]
    return blocks


def model_blocks(lb: Leaderboard) -> list[Block]:
    """The models and the metric settings (with how to read each)."""
    t = lb.models
    blocks: list[Block] = []
    if len(t):
        blocks += [("h2", "Models"),
                   ("table", ["model", "config", "kind", "family", "notes"],
                    [[r["label"], f"`{r['model']}`", r["kind"], r["family"] or "–",
                      (UNTRAINED_NOTE if r["untrained"] else "")] for _, r in t.iterrows()])]
    if lb.metrics:
        items: list[tuple[int, str]] = []
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
                items.append((0, f"**{base}** ({v.get('per')}{outs}): {shown}"))
            how = how_to_read(k, settings)
            if how:
                items.append((1, f"How to read{f' {k}' if outputs else ''}: {how}"))
        blocks += [("h2", "Metric settings"), ("list", items)]
    return blocks


def report_blocks(lb: Leaderboard) -> list[Block]:
    """Every block of the Markdown report, in order."""
    return (main_blocks(lb) + notes_blocks(lb) + preference_blocks(lb) + agreement_blocks(lb)
            + model_blocks(lb))


def blocks_to_markdown(blocks: list[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            lines += ["", "#" * int(kind[1]) + " " + b[1]]
        elif kind == "p":
            lines += ["", b[1]]
        elif kind == "quote":
            lines += ["", "> " + b[1]]
        elif kind == "list":
            lines.append("")
            lines += ["  " * level + "- " + text for level, text in b[1]]
        elif kind == "table":
            lines += ["", _md_table(b[1], [[_md_cell(c) for c in r] for r in b[2]])]
    return "\n".join(lines[1:] if lines and lines[0] == "" else lines) + "\n"


def render_markdown(lb: Leaderboard) -> str:
    return blocks_to_markdown(report_blocks(lb))


def _md_cell(c: str) -> str:
    return str(c).replace("|", "\\|").replace("\n", " ")


def _labels(lb: Leaderboard) -> dict[str, str]:
    t = lb.models
    return dict(zip(t["model"], t["label"], strict=True)) if len(t) else {}


def _clean(v: float) -> float:
    """Round-off residue (the baseline's own centred strength, ~1e-17) shown as 0."""
    return 0.0 if v == v and abs(v) < 1e-9 else v


def _pct_level(ci: float) -> str:
    return f"{100 * ci:g}%"


def _more_votes(v: float) -> str:
    if v != v:
        return "–"
    if math.isinf(v):
        return "∞ (no gap to find)"
    return "0 (separated)" if v == 0 else f"~{int(math.ceil(v)):,}"


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


def _fid_note(lb: Leaderboard, set_metrics: list[str]) -> list[Block]:
    """Notes under the main table for FID-style metrics: which features they rest on (the
    EfficientNet-Lite0 FID is not comparable to published FID), and a warning for each model
    whose FID rests on fewer than 2,000 images, with its KID (unbiased at small N) beside it."""
    few = 2000
    out: list[tuple[int, str]] = []
    for k in set_metrics:
        settings = lb.metrics[k].get("settings", {})
        if settings.get("metric") != "fid" or not k.endswith(".fid"):
            continue
        base = k[: -len(".fid")]
        label = settings.get("label") or "FID"
        out.append((0, f"**{k}**: {label}; features `{settings.get('features', '?')}`, "
                       f"{settings.get('resize', '?')} resize to {settings.get('image_size', '?')} px."))
        for _, r in lb.models.iterrows():
            n = r.get(f"{k}_n")
            if n is None or n != n:
                continue
            if r.get(k) is None or r.get(k) != r.get(k):
                out.append((1, f"{r['label']}: no value (skipped; the reason is stored with it, "
                               "e.g. no reference set configured or too few images)."))
            elif n < few:
                kid = r.get(f"{base}.kid")
                out.append((1, f"⚠ {r['label']}: FID rests on N={int(n)} images (< {few:,}): biased "
                               f"upward and noisy; compare KID = {_fmt(kid, 4)} (unbiased)."))
            else:
                out.append((1, f"{r['label']}: N={int(n)} images."))
    return [("p", "**FID / KID**"), ("list", out)] if out else []


def _pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f}%"


def write_report(lb: Leaderboard, out_dir: str | os.PathLike[str], *, html: bool = True) -> Path:
    """Write leaderboard.md, .csv, .json, .parquet and (unless ``html=False``) the self-contained
    leaderboard.html to <out_dir>/<suite>/<run>/, and point <out_dir>/<suite>/latest at it.
    Returns the run's report folder. Nothing written depends on the clock: the same store gives
    the same bytes."""
    import json

    suite_dir = Path(out_dir) / lb.suite
    run_dir = suite_dir / lb.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "leaderboard.md", render_markdown(lb))
    table = models_with_preference(lb)
    _write_atomic(run_dir / "leaderboard.csv", table.to_csv(index=False, float_format="%.6g"))
    doc = {
        "run_id": lb.run_id, "suite": lb.suite,
        "samples": lb.run["manifest"].get("samples"), "seed": lb.run["manifest"].get("seed"),
        "metrics": lb.metrics,
        "models": _records(table),
        "by_tag": _records(lb.by_tag),
        "report_settings": lb.settings,
        "notes": lb.notes,
        "excluded_votes": lb.excluded_votes,
        "preference": _preference_doc(lb),
        "agreement": {"raters": lb.agreement.get("raters"),
                      "metrics": _records(lb.agreement.get("metrics"))} if lb.agreement else None,
        "gallery": _records(lb.gallery.drop(columns=["image_path"], errors="ignore")),
    }
    _write_atomic(run_dir / "leaderboard.json",
                  json.dumps(_jsonable(doc), indent=2, sort_keys=True, ensure_ascii=False, default=str,
                             allow_nan=False) + "\n")
    tmp = run_dir / ".leaderboard.parquet.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, run_dir / "leaderboard.parquet")
    if html:
        from harness.leaderboard.html import render_html

        _write_atomic(run_dir / "leaderboard.html", render_html(lb, run_dir))
    point_latest(suite_dir, lb.run_id)
    return run_dir


PREFERENCE_COLUMNS = {"rating": "pref_rating", "rating_lo": "pref_rating_lo", "rating_hi": "pref_rating_hi",
                      "strength": "pref_strength", "votes": "pref_votes", "win_rate": "pref_win_rate"}
"""Human-preference columns added to the models table (csv/parquet/json) when the run has votes."""


def models_with_preference(lb: Leaderboard) -> pd.DataFrame:
    """The models table, plus the pref_* columns when the run has votes."""
    table = lb.models.copy()
    pref = lb.preference
    if pref is None or pref.n_votes == 0 or not len(table):
        return table
    p = pref.table.set_index("model")[list(PREFERENCE_COLUMNS)].rename(columns=PREFERENCE_COLUMNS)
    return table.merge(p, left_on="model", right_index=True, how="left")


def _preference_doc(lb: Leaderboard) -> dict[str, Any] | None:
    pref = lb.preference
    if pref is None:
        return None
    wr = pref.win_rates
    return {
        "n_votes": pref.n_votes, "reason": pref.reason, "settings": pref.settings,
        "table": _records(pref.table),
        "win_rates": {a: {b: wr.loc[a, b] for b in wr.columns if b != a} for a in wr.index},
        "votes_per_pair": _records(pref.pairs),
        "never_compared": [list(p) for p in pref.never_compared()],
        "position_bias": pref.position,
        "by_tag": _records(pref.tags),
        "votes_needed": _records(pref.needed),
    }


def _records(df: pd.DataFrame | None) -> list[dict[str, Any]]:
    if df is None or not len(df):
        return []
    import json

    return json.loads(df.to_json(orient="records", double_precision=10, default_handler=str))


def _jsonable(obj: Any) -> Any:
    """NaN and infinities as null (JSON has neither), numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
