"""The leaderboard as a Streamlit page: the report's tables, CI plots and gallery.

``show(store, run_id)`` draws into whatever page calls it (the rating app's admin page mounts
it); it sets no page config and no title of its own. The leaderboard is rebuilt only when the
run's votes, rater exclusions or scores change.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from harness.leaderboard.plots import metric_ci_png, preference_ci_png, text_or_none, thumbnail_png
from harness.leaderboard.render import (
    Block,
    agreement_blocks,
    main_blocks,
    model_blocks,
    preference_blocks,
)
from harness.leaderboard.table import Leaderboard, build_leaderboard
from harness.leaderboard.text import fmt, model_labels
from harness.leaderboard.votes import fingerprint
from harness.store import Store, StoreError

SETTINGS = ("ci", "baseline", "n_boot", "seed", "both_bad", "gallery_prompts", "include_excluded")


@st.cache_resource(show_spinner="Building the leaderboard...", max_entries=8)
def _cached(root: str, run_id: str, stamp: tuple, settings: tuple, _store: Store) -> Leaderboard:
    # root, run_id, stamp and settings are the cache key; the store object itself is not hashed.
    return build_leaderboard(_store, run_id, **dict(settings))


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
            headers = _unique(b[1])
            st.dataframe(pd.DataFrame(b[2], columns=headers), hide_index=True)


def _unique(headers: list[str]) -> list[str]:
    # st.dataframe needs distinct column names; two models may share a label.
    seen: dict[str, int] = {}
    out = []
    for h in headers:
        seen[h] = seen.get(h, 0) + 1
        out.append(h if seen[h] == 1 else f"{h} ({seen[h]})")
    return out


def show(store: Store, run_id: str, **settings: Any) -> Leaderboard | None:
    """Draw the run's leaderboard: tables, CI plots, human preference, agreement and gallery.

    ``settings`` are :func:`harness.leaderboard.table.build_leaderboard`'s keyword arguments
    (ci, baseline, n_boot, seed, both_bad, gallery_prompts, include_excluded). Returns the
    leaderboard it drew, or None after showing an error (unknown run or baseline).
    """
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise TypeError(f"show(): unknown setting(s) {unknown}; use {list(SETTINGS)}")
    key = tuple(sorted(settings.items()))
    try:
        lb = _cached(str(store.root), run_id, fingerprint(store, run_id), key, store)
    except (StoreError, ValueError) as e:  # unknown run or baseline: say so on the page
        st.error(str(e))
        return None

    _draw(main_blocks(lb)[:2], skip_title=False)
    for note in lb.notes:
        st.warning(note)
    _draw(main_blocks(lb)[2:])
    png = metric_ci_png(lb)
    if png is not None:
        st.markdown("#### Metric CIs")
        st.image(png)
    pref = preference_blocks(lb)
    _draw(pref[:2])
    png = preference_ci_png(lb.preference, model_labels(lb))
    if png is not None:
        st.image(png)
    _draw(pref[2:])
    _draw(agreement_blocks(lb))
    gallery(lb)
    _draw(model_blocks(lb))
    return lb


def gallery(lb: Leaderboard) -> None:
    """Every gallery prompt with each model's image side by side and its scores."""
    st.markdown("#### Gallery")
    g = lb.gallery
    if not len(g):
        off = lb.settings.get("gallery_prompts") == 0
        st.markdown("No gallery: " + ("turned off (gallery_prompts=0)." if off
                                      else "the run has no finished images yet."))
        return
    for pid in dict.fromkeys(g["prompt_id"]):
        rows = g[g["prompt_id"] == pid]
        st.markdown(f"**`{pid}`**: {rows['prompt'].iloc[0]}")
        for col, (_, r) in zip(st.columns(len(rows)), rows.iterrows(), strict=True):
            with col:
                png = thumbnail_png(r["image_path"]) if isinstance(r["image_path"], str) else None
                if png is not None:
                    st.image(png, caption=str(r["label"]))
                else:
                    reason = text_or_none(r["refusal_reason"]) or "no reason given"
                    why = (f"refused: {reason}" if r["status"] == "refused"
                           else "image file missing" if r["status"] == "ok" else f"no image ({r['status']})")
                    st.markdown(f"**{r['label']}**  \n{why}")
                if r["scores"]:
                    st.caption(" · ".join(f"{k} {fmt(v)}" for k, v in r["scores"].items()))
