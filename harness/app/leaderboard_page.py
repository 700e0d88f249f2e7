"""The leaderboard as a Streamlit page: the same blocks as the HTML report (headline and table,
quality against price and speed, CI plots, human preference with win-rate and votes-per-pair
heatmaps, agreement, the gallery, models).

``show(store, run_id)`` draws into whatever page calls it (the rating app's admin page mounts
it); it sets no page config and no title of its own. The leaderboard is rebuilt only when the
run's votes, rater exclusions or scores change. Tables show human column names and text: no
Markdown marks, no "None" (a missing value is "–").
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import streamlit as st

from harness.leaderboard.cost import GpuPrice
from harness.leaderboard.heatmap import VOTES_NOTE, WIN_RATE_NOTE, heat_colour, pair_matrices
from harness.leaderboard.html import ENLARGE_PX, meta_line
from harness.leaderboard.plots import (
    metric_ci_png,
    preference_ci_png,
    preview_image,
    text_or_none,
    tradeoff_plot,
)
from harness.leaderboard.render import (
    Block,
    agreement_blocks,
    headline_blocks,
    main_blocks,
    model_blocks,
    preference_blocks,
)
from harness.leaderboard.table import Leaderboard, build_leaderboard
from harness.leaderboard.text import fmt, model_labels, pct
from harness.leaderboard.tradeoff import TABLE_HEADERS, headline_score, intro, tradeoff_rows, tradeoff_table
from harness.leaderboard.votes import fingerprint
from harness.store import Store, StoreError

SETTINGS = ("ci", "baseline", "n_boot", "seed", "both_bad", "gallery_prompts", "include_excluded")


@st.cache_resource(show_spinner="Building the leaderboard...", max_entries=8)
def _cached(root: str, run_id: str, stamp: tuple, settings: tuple, _store: Store) -> Leaderboard:
    # root, run_id, stamp and settings are the cache key; the store object itself is not hashed.
    return build_leaderboard(_store, run_id, **dict(settings))


def plain(text: Any) -> str:
    """A table cell as plain text: the report's inline Markdown marks (`code`, **bold**) removed,
    a missing value (None, NaN) as "–"."""
    if text is None or (isinstance(text, float) and text != text):
        return "–"
    out = re.sub(r"`([^`]*)`", r"\1", str(text))
    out = re.sub(r"\*\*([^*]+)\*\*", r"\1", out)
    return "–" if out in ("None", "nan", "") else out


def _draw(blocks: list[Block], *, skip_title: bool = True) -> None:
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            if not skip_title:
                st.markdown("### " + b[1])
        elif kind == "h2":
            st.markdown("#### " + b[1])
        elif kind == "h3":
            st.markdown("##### " + b[1])
        elif kind == "p":
            st.markdown(b[1])
        elif kind == "quote":
            st.info(b[1])
        elif kind == "list":
            st.markdown("\n".join("  " * level + "- " + text for level, text in b[1]))
        elif kind == "table":
            table(b[1], b[2])


def table(headers: list[str], rows: list[list[Any]]) -> pd.DataFrame:
    """Draw a report table (sortable by clicking a column, as st.dataframe is); returns what it drew."""
    df = pd.DataFrame([[plain(c) for c in r] for r in rows], columns=_unique([plain(h) for h in headers]))
    st.dataframe(df, hide_index=True)
    return df


def _unique(headers: list[str]) -> list[str]:
    # st.dataframe needs distinct column names; two models may share a label.
    seen: dict[str, int] = {}
    out = []
    for h in headers:
        seen[h] = seen.get(h, 0) + 1
        out.append(h if seen[h] == 1 else f"{h} ({seen[h]})")
    return out


def show(store: Store, run_id: str, *, gpu: GpuPrice | None = None, **settings: Any) -> Leaderboard | None:
    """Draw the run's leaderboard: the blocks of the HTML report, in its order.

    ``settings`` are :func:`harness.leaderboard.table.build_leaderboard`'s keyword arguments
    (ci, baseline, n_boot, seed, both_bad, gallery_prompts, include_excluded); ``gpu`` prices
    self-hosted models on the quality-against-price chart (None: the ``cost`` defaults).
    Returns the leaderboard it drew, or None after showing an error (unknown run or baseline).
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"show(): unknown setting(s) {unknown}; use {list(SETTINGS)}")
    if gpu is None:
        from harness.config import CostConfig
        from harness.leaderboard.tradeoff import gpu_price

        gpu = gpu_price(CostConfig())
    key = tuple(sorted(settings.items()))
    try:
        lb = _cached(str(store.root), run_id, fingerprint(store, run_id), key, store)
    except (StoreError, ValueError) as e:  # unknown run or baseline: say so on the page
        st.error(str(e))
        return None

    blocks = main_blocks(lb)
    # as in the HTML: the title and date, then the verdict (the Markdown's first line), then the rest
    lead = len(headline_blocks(lb))
    title = next((i for i, b in enumerate(blocks) if b[0] == "h1"), None)
    if title is not None:
        _draw([blocks[title]], skip_title=False)
    st.caption(meta_line(lb))
    for b in blocks[:lead]:
        if b[0] == "p":
            st.info(b[1])
        else:
            _draw([b])
    for note in lb.notes:
        st.warning(note)
    _draw([b for i, b in enumerate(blocks) if i >= lead and i != title])
    tradeoff(lb, gpu)
    png = metric_ci_png(lb, fmt="svg")
    if png is not None:
        st.markdown("#### Metric CIs")
        st.image(png.decode("utf-8"))
    _preference(lb)
    _draw(agreement_blocks(lb))
    gallery(lb)
    _draw(model_blocks(lb))
    return lb


def tradeoff(lb: Leaderboard, gpu: GpuPrice | None) -> None:
    """Quality against price and speed: the two charts and the table with every "–" explained."""
    st.markdown("#### Quality against price and speed")
    score = headline_score(lb)
    if score is None:
        st.markdown("Not drawn: no model has a score yet.")
        return
    tab = tradeoff_table(lb, gpu)
    st.markdown(intro(score, gpu, lb.settings.get("ci", 0.95)))
    cols = st.columns(2)
    for col, against, title in ((cols[0], "price", "Score against price per 1,000 images"),
                                (cols[1], "speed", "Score against median latency")):
        with col:
            svg = tradeoff_plot(tab, score.label, score.higher_is_better, against)
            if svg is not None:
                st.image(svg.decode("utf-8"), caption=title)
            else:
                st.markdown(f"{title}: not drawn, no model has both values (see the table below).")
    table([h.format(score=score.label) for h in TABLE_HEADERS], tradeoff_rows(lb, tab))


def _preference(lb: Leaderboard) -> None:
    """The preference blocks with the rating plot under the introduction and the heatmaps in
    place of the win-rate table."""
    blocks = preference_blocks(lb)
    png = preference_ci_png(lb.preference, model_labels(lb), fmt="svg")
    skip, placed = False, png is None
    for b in blocks:
        if b[0] in ("h2", "h3"):
            skip = False
        if b[0] == "h3" and b[1] == "Win rates":
            heatmaps(lb)
            skip = True
            continue
        if b[0] == "h3" and b[1] == "Votes per pair":
            b = ("h3", "Votes per pair, in detail")
        if skip:
            continue
        _draw([b])
        if not placed and b[0] == "p":
            st.image(png.decode("utf-8"))
            placed = True


def heatmaps(lb: Leaderboard) -> None:
    """Win rate and votes per pair as coloured tables (the HTML report's colours)."""
    mats = pair_matrices(lb)
    if mats is None:
        return
    wr, votes = mats
    vmax = max(1.0, float(votes.max(skipna=True).max()))
    for title, note, m, diverging, text, hi in (
            ("Win rates", WIN_RATE_NOTE, wr, True, pct, 1.0),
            ("Votes per pair", VOTES_NOTE, votes, False, lambda v: "–" if v != v else f"{v:.0f}", vmax)):
        st.markdown("##### " + title)
        st.markdown(note)
        shown = m.map(text)
        shown.columns = _unique(list(shown.columns))
        colours = pd.DataFrame([[_css(v, hi, diverging) for v in row] for row in m.to_numpy()],
                               index=shown.index, columns=shown.columns)
        st.dataframe(shown.style.apply(lambda _, c=colours: c, axis=None))


def _css(v: float, hi: float, diverging: bool) -> str:
    bg, fg = heat_colour(float(v), 0.0, hi, diverging=diverging)
    return f"background-color: {bg}; color: {fg}"


def gallery(lb: Leaderboard) -> None:
    """Every gallery prompt, why it was chosen, and each model's image side by side with its
    scores (Streamlit's own full-screen button enlarges an image)."""
    st.markdown("#### Gallery")
    g = lb.gallery
    if not len(g):
        off = lb.settings.get("gallery_prompts") == 0
        st.markdown("No gallery: " + ("turned off (gallery_prompts=0)." if off
                                      else "the run has no finished images yet."))
        return
    st.markdown("Prompts chosen to show how the models differ: half spread over the prompt tags, the "
                "rest where the models differ most on the headline.")
    for pid in dict.fromkeys(g["prompt_id"]):
        rows = g[g["prompt_id"] == pid]
        first = rows.iloc[0]
        st.markdown(f"**{pid}**: {first['prompt']}")
        why = plain(first.get("why"))
        if why != "–":
            st.caption(f"Chosen: {why}")
        for col, (_, r) in zip(st.columns(len(rows)), rows.iterrows(), strict=True):
            with col:
                png = (preview_image(r["image_path"], ENLARGE_PX) if isinstance(r["image_path"], str)
                       else None)
                if png is not None:
                    st.image(png, caption=str(r["label"]))
                else:
                    reason = text_or_none(r["refusal_reason"]) or "no reason given"
                    why_r = (f"refused: {reason}" if r["status"] == "refused" else "image file missing"
                             if r["status"] == "ok" else f"no image ({r['status']})")
                    st.markdown(f"**{r['label']}**  \n{why_r}")
                if r["scores"]:
                    st.caption(" · ".join(f"{k} {fmt(v)}" for k, v in r["scores"].items()))

