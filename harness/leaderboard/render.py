"""Leaderboard tables -> report blocks (shared by the Markdown, HTML and Streamlit renderers) and
the Markdown text. Metric-specific words come from the metrics' stored reading notes
(:class:`harness.metrics.base.ReadingNotes`), never from branches here."""

from __future__ import annotations

import math
from typing import Any

from harness.leaderboard.outputs import output_of, split_outputs
from harness.leaderboard.preference import ELO_SCALE
from harness.leaderboard.stats import BOOTSTRAP_RESAMPLES
from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import FACT_HEADERS, ci_label, fact, fmt, level_of, model_labels, pct
from harness.metrics.base import ReadingNotes, output_directions

NO_NOTES = ReadingNotes()
"""What a metric stored without reading notes (values stored before metrics carried them) reads as."""

UNTRAINED_NOTE = ("random weights, built only so the pipeline runs end to end; its images and "
                  "scores say nothing about any real model")


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
    m = lb.run.manifest
    t = lb.models
    all_image = [k for k, v in lb.metrics.items() if v.get("per") == "image" and k in t.columns]
    # The main table shows one column per metric: multi-output metrics show their headline
    # (first) output there and every output in a table of their own below.
    image_metrics, more_outputs = split_outputs(lb, all_image)
    h = lb.headline
    if h.kind == "metric" and h.metric in all_image:  # the score that ranks the rows comes first
        image_metrics = [h.metric] + [k for k in image_metrics if k != h.metric]
    set_metrics = [k for k, v in lb.metrics.items() if v.get("per") == "set" and k in t.columns]
    blocks: list[Block] = headline_blocks(lb) + [
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
    blocks += tag_winner_blocks(lb)
    level = ci_label(level_of(lb))
    own_column = h.kind in ("preference", "composite") and "headline" in t.columns
    headers = ["#", "model"]
    if own_column:
        headers.append(f"{_headline_name(lb)} {'↑' if h.higher_is_better else '↓'} ({level})")
    headers += ["images", "refusal rate", "latency p50 (s)", "latency p95 (s)",
                "cost / image (USD)", "cost / 1,000 images (USD)"]
    for k in image_metrics:
        headers.append(f"{k} {_arrow(lb, k)} ({level})")
    for k in set_metrics:
        headers.append(f"{k} {_arrow(lb, k)} (N)")
    rows = []
    no_price = _no_price_reasons(lb)
    for i, r in t.iterrows():
        label = f"{r['label']}{' †' if r['untrained'] else ''}"
        images = f"{int(r['ok'])}/{int(r['planned'])}"
        if r["errors"] or r["pending"]:
            images += f" ({int(r['errors'])} errors, {int(r['pending'])} pending)"
        rank = str(r["rank_text"]) if "rank_text" in t.columns else str(i + 1)
        row = [rank, label] + ([_headline_cell(r, h.kind)] if own_column else [])
        row += [images, pct(r["refusal_rate"]), fmt(r["latency_p50_s"]),
               fmt(r["latency_p95_s"]), _cost_cell(r["cost_per_image_usd"], 4, no_price.get(r["model"])),
               _cost_cell(r.get("cost_per_1000_usd", math.nan), 2, no_price.get(r["model"]))]
        for k in image_metrics:
            row.append(_ci_cell(r, k) + _metric_rank(r, k))
        for k in set_metrics:
            n = r.get(f"{k}_n")
            row.append(f"{fmt(r[k])} (N={int(n) if n == n else '–'})" + _metric_rank(r, k))
        rows.append(row)
    blocks.append(("table", headers, rows))
    blocks.append(("p", rank_note(lb)))
    if _cost_note(no_price):
        blocks.append(("p", _cost_note(no_price)))
    blocks += set_metric_notes(lb, set_metrics)
    if image_metrics:
        blocks.append(("p", f"{level}: clustered percentile bootstrap of the mean (prompts resampled, then "
                            "images within each prompt, so several images of one prompt are not counted "
                            f"as independent; {BOOTSTRAP_RESAMPLES} resamples, seed "
                            f"{lb.settings.get('seed', 0)}); N is shown where fewer images have a value "
                            "than were generated."))
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
            blocks += [("h2", f"{metric} by tag"), ("p", f"mean [{level}] (N); columns in headline order"),
                       ("table", ["tag"] + [labels[x] for x in models],
                        [[tag] + [cells.get((tag, x), "–") for x in models] for tag in tags])]
    return blocks


def headline_blocks(lb: Leaderboard) -> list[Block]:
    """The first line of every report: the winner by the declared headline, whether it is tied,
    and why that score ranks the models."""
    h = lb.headline
    if not h.sentence:
        return []
    return [("p", f"{h.sentence} {h.why}".strip())]


def tag_winner_blocks(lb: Leaderboard) -> list[Block]:
    """"best for <tag>: X (tied with Y)" lines, what a reader choosing for one use case wants."""
    tw = lb.tag_winners
    if tw is None or not len(tw):
        return []
    h = lb.headline
    what = {"preference": "human preference on each tag's votes",
            "composite": "the composite of the per-image metrics on each tag's prompts"}.get(
        h.kind, f"{h.label} on each tag's prompts, or the measure named where it has no values there")
    if h.kind == "metric" and h.metric is not None and lb.metrics.get(h.metric, {}).get("per") == "set":
        what = (f"the composite of the per-image metrics on each tag's prompts ({h.label} is one number "
                "per set)")
    return [("p", f"**Best for each use case** (by {what}; ties at {100 * h.ci:g}%):"),
            ("list", [(0, line) for line in tw["line"]])]


def rank_note(lb: Leaderboard) -> str:
    """Under the main table: what the rows are ranked by and how to read "#"."""
    h = lb.headline
    if h.kind == "none":
        return "Nothing ranks the models yet."
    by = _headline_name(lb)
    spread = ("ranges come from the preference bootstrap" if h.kind == "preference"
              else "ranges come from the clustered bootstrap")
    exact = (h.kind == "metric" and h.metric is not None and lb.metrics.get(h.metric, {}).get("per") == "set")
    if exact:
        spread = "a set metric has no interval, so its ranks are exact"
    fixed = [k for k in h.metrics if lb.metrics.get(k, {}).get("per") == "set"]
    if h.kind == "composite" and fixed:
        spread += (f" ({', '.join(fixed)}: one number per set, no interval, so it enters every resample "
                   "with its exact ranks)")
    return (f"Rows are ranked by {by} ({'higher' if h.higher_is_better else 'lower'} is better), the "
            f"declared headline (report.headline={h.requested}). # is each model's rank range: "
            f"{spread}; a model is ahead of another only when the {100 * h.ci:g}% interval of their "
            "difference excludes 0, so models shown with overlapping ranges (\"1–2\") are tied. "
            + ("\"· #\" in a metric column is the model's rank range on that metric alone."
               if lb.settings.get("metric_ranks") else "Other columns are not ranks."))


def _headline_name(lb: Leaderboard) -> str:
    h = lb.headline
    if h.kind == "preference":
        return "human preference (Elo-like Bradley–Terry rating)"
    if h.kind == "composite":
        return f"composite mean rank over {', '.join(h.metrics) or 'no metric'}"
    return h.label


def _metric_rank(r: Any, k: str) -> str:
    """" · #1–2": the metric's own rank range, when report.metric_ranks asked for them."""
    text = r.get(f"{k}_rank_text")
    return f" · #{text}" if isinstance(text, str) and text != "–" else ""


def _headline_cell(r: Any, kind: str) -> str:
    digits = 0 if kind == "preference" else 2
    lo, hi = r.get("headline_lo"), r.get("headline_hi")
    ci = f" [{fmt(lo, digits)}, {fmt(hi, digits)}]" if lo == lo and lo is not None else ""
    return f"{fmt(r.get('headline'), digits)}{ci}"


def _resampled(st: dict[str, Any]) -> str:
    return {"prompt": "over prompts (every vote on a drawn prompt)",
            "rater": "over raters (every vote of a drawn rater)",
            "prompt+rater": "over prompts and raters (drawn independently)"}.get(
        str(st.get("cluster", "vote")), "over votes")


def notes_blocks(lb: Leaderboard) -> list[Block]:
    """What is missing, in words (empty when nothing is); under a model's shortfall line, its
    causes with example messages."""
    if not lb.notes:
        return []
    why = {s.line(): s.example_lines() for s in lb.short}
    items = [(level, text) for n in lb.notes
             for level, text in [(0, n)] + [(1, e) for e in why.get(n, [])]]
    return [("h2", "What is missing"), ("list", items)]


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
    level = ci_label(st["ci"])
    labels = model_labels(lb)
    anchor = (f"rating 1000 = {labels.get(st['baseline'], st['baseline'])}" if st.get("baseline")
              else "ratings average 1000")
    raters = lb.agreement.get("raters", {}).get("raters", 0)
    blocks.append(("p", f"{pref.n_votes} blind pairwise votes from {raters} rater(s){excluded}. "
                        f"Bradley-Terry by maximum likelihood (a tie counts half a win each; \"both bad\" "
                        f"{'counts as a tie' if st['both_bad'] == 'tie' else 'is left out'}), on an "
                        f"Elo-like scale (400 points = 10:1 odds; {anchor}). "
                        f"{level}: percentile bootstrap {_resampled(st)} ({st['n_boot']} "
                        f"resamples, seed {st['seed']})."))
    rows = []
    for i, r in tab.iterrows():
        rows.append([str(r.get("rank_text", i + 1)), labels.get(r["model"], r["model"]),
                     f"{fmt(r['rating'], 0)} [{fmt(r['rating_lo'], 0)}, {fmt(r['rating_hi'], 0)}]",
                     f"{fmt(_clean(r['strength']))} [{fmt(_clean(r['strength_lo']))}, "
                     f"{fmt(_clean(r['strength_hi']))}]",
                     str(int(r["votes"])), f"{int(r['wins'])}/{int(r['losses'])}/{int(r['ties'])}/"
                     f"{int(r['both_bad'])}", pct(r["win_rate"]), r["reason"] or ""])
    blocks.append(("table", ["# (by rating)", "model", f"rating ({level})", f"log-strength ({level})",
                             "votes", "won/lost/tie/both bad", "win rate", "note"], rows))
    order = [m for m in tab["model"] if m in pref.win_rates.index]
    wr = pref.win_rates
    blocks += [("h3", "Win rates"),
               ("p", "Share of votes in which the row model beat the column model (ties half); "
                     "– where the two were never compared."),
               ("table", ["row beat column"] + [labels.get(m, m) for m in order],
                [[labels.get(a, a)] + ["–" if a == b else pct(wr.loc[a, b]) for b in order]
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
                   ("p", f"The left image won {pct(pb['share_left'])} of {pb['n']} decisive votes "
                         f"({_pct_level(pb['ci'])} CI {pct(pb['lo'])}–{pct(pb['hi'])}, exact binomial "
                         f"p = {fmt(pb['p_value'], 3)} against 50%): {verdict}.")]
    else:
        blocks += [("h3", "Position bias"), ("p", f"Not estimated: {pb['reason']}.")]
    tags = pref.tags
    if len(tags):
        cats = tags[tags["tag"].str.startswith("category:")]
        tags = cats if len(cats) else tags
        cell = {(r["tag"], r["model"]): ("–" if r["value"] != r["value"] else
                                         fmt(1000 + ELO_SCALE * r["value"], 0)) + f" ({r['votes']})"
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
                    [[labels.get(r["upper"], r["upper"]), labels.get(r["lower"], r["lower"]), fmt(r["gap"]),
                      fmt(r["half_width"]), "yes" if r["separated"] else "no",
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
        ci = (f" ({_pct_level(a['ci'])} CI {fmt(a['lo'])} to {fmt(a['hi'])}, bootstrap over comparisons)"
              if a["lo"] == a["lo"] else " (too few comparisons for a CI)")
        blocks.append(("p", f"Inter-rater Krippendorff's α (nominal: first image / second image / tie) = "
                            f"**{fmt(a['alpha'])}**{ci}, from {a['units']} comparison(s) rated by two or "
                            f"more of {a['raters']} rater(s). 1 is perfect agreement, 0 is chance; "
                            "below about 0.4 the votes are mostly noise."))
    mt = ag.get("metrics")
    if mt is not None and len(mt):
        blocks += [("h3", "Which metric predicts the raters"),
                   ("p", "Share of decisive (left/right) votes where the metric, read in its own direction, "
                         "prefers the image the rater chose (a metric tie counts half; 50% is chance)."),
                   ("table", ["metric", "direction", f"agrees with raters ({ci_label(level_of(lb))})",
                              "votes", "metric ties", "note"],
                    [[f"`{r['metric']}`", "↑" if r["higher_is_better"] else "↓",
                      f"{pct(r['agreement'])} [{pct(r['lo'])}, {pct(r['hi'])}]", str(r["n"]),
                      str(r["metric_ties"]), r["reason"]] for _, r in mt.iterrows()])]
    return blocks


def model_blocks(lb: Leaderboard) -> list[Block]:
    """The models and the metric settings (with how to read each)."""
    t = lb.models
    blocks: list[Block] = []
    if len(t):
        facts = [k for k in FACT_HEADERS if k in t.columns]
        blocks += [("h2", "Models"),
                   ("table", ["model", "config", "kind", "family"] + [FACT_HEADERS[k] for k in facts]
                    + ["untrained", "notes"],
                    [[r["label"], f"`{r['model']}`", r["kind"], r["family"] or "–"]
                     + [fact(r[k]) for k in facts]
                     + ["yes" if r["untrained"] else "no", (UNTRAINED_NOTE if r["untrained"] else "")]
                     for _, r in t.iterrows()])]
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
            how = lb.reading.get(k, NO_NOTES).line(output_of(lb, k))
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


_SELF_HOSTED = "no API price; its GPU time is priced by harness cost and the HTML's cost chart"


def _no_price_reasons(lb: Leaderboard) -> dict[str, tuple[str, str]]:
    """Per model with an empty cost cell, a short tag for the cell and the reason in full (a "–"
    always says why). Self-hosted models have no API price: this table knows no GPU price."""
    from harness.leaderboard.tradeoff import NO_PRICE, price_table

    short = {NO_PRICE["refused"]: "all refused", NO_PRICE["gpu_unset"]: "self-hosted",
             NO_PRICE["no_latency"]: "self-hosted", NO_PRICE["imported"]: "imported"}
    out = {}
    for _, p in price_table(lb, None).iterrows():
        why = p["why"]
        if not why:
            continue
        tag = short.get(why, "no price")
        out[p["model"]] = (tag, _SELF_HOSTED if tag == "self-hosted" else why)
    return out


def _cost_cell(v: Any, digits: int, why: tuple[str, str] | None) -> str:
    """A cost, or "– (short reason)"."""
    text = fmt(v, digits)
    return f"{text} ({why[0]})" if text == "–" and why else text


def _cost_note(reasons: dict[str, tuple[str, str]]) -> str | None:
    """The full reasons behind the cost cells' short tags, once each."""
    seen: dict[str, str] = {}
    for tag, why in reasons.values():
        seen.setdefault(tag, why)
    return ("Cost \"–\": " + "; ".join(f"{tag}: {why}" for tag, why in sorted(seen.items())) + "."
            if seen else None)


def _md_cell(c: str) -> str:
    return str(c).replace("|", "\\|").replace("\n", " ")


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
    cell = f"{fmt(r[k])} [{fmt(r[k + '_lo'])}, {fmt(r[k + '_hi'])}]"
    n = r.get(f"{k}_n")
    if n == n and n is not None and int(n) != int(r["ok"]):
        cell += f" (N={int(n)})"  # some images have no value (skipped): say how many count
    return cell


def _tag_cell(r: Any) -> str:
    lo, hi = r.get("lo"), r.get("hi")
    ci = f" [{fmt(lo)}, {fmt(hi)}]" if lo == lo and lo is not None else ""
    n = r.get("n")
    return f"{fmt(r['value'])}{ci}" + (f" ({int(n)})" if n == n and n is not None else "")


def set_metric_notes(lb: Leaderboard, set_metrics: list[str]) -> list[Block]:
    """Notes under the main table for set metrics whose reading notes ask for them (FID: which
    features it rests on): the note beside the headline output and, per model, its number of
    images, flagged in the metric's words below the metric's minimum. Notes with the same title
    share one list."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for k in set_metrics:
        notes = lb.reading.get(k, NO_NOTES)
        outputs = list(output_directions(lb.metrics[k].get("settings", {})))
        base, _, out = k.partition(".")
        if not notes.table_note or (outputs and out != outputs[0]):
            continue  # outputs of one metric share their notes: shown once, by the headline
        items = groups.setdefault(notes.table_title, [])
        items.append((0, f"**{k}**: {notes.table_note}"))
        for _, r in lb.models.iterrows():
            n = r.get(f"{k}_n")
            if n is None or n != n:
                continue
            if r.get(k) is None or r.get(k) != r.get(k):
                items.append((1, f"{r['label']}: no value (skipped; the reason is stored with it, "
                                 "e.g. no reference set configured or too few images)."))
            elif n < notes.min_images:
                values = {o: fmt(r.get(f"{base}.{o}"), 4) for o in outputs}
                items.append((1, f"⚠ {r['label']}: {_few_images(notes, int(n), values)}"))
            else:
                items.append((1, f"{r['label']}: N={int(n)} images."))
    blocks: list[Block] = []
    for title, items in groups.items():
        blocks += ([("p", f"**{title}**")] if title else []) + [("list", items)]
    return blocks


def _few_images(notes: ReadingNotes, n: int, values: dict[str, str]) -> str:
    plain = f"rests on N={n} images (< {notes.min_images:,})."
    try:
        return notes.few_images.format(n=n, min_images=notes.min_images, **values) or plain
    except (KeyError, IndexError, ValueError):  # a template naming an output this run lacks
        return f"{plain} {notes.few_images}"


