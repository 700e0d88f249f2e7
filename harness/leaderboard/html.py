"""A self-contained leaderboard.html: the Markdown report's tables, CI plots, the cost plot when
`harness cost` drew one, and a gallery of every model's image per prompt. Every image is embedded
as a data URI, so the file can be mailed or archived on its own."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from harness.leaderboard.plots import metric_ci_png, preference_ci_png, text_or_none, thumbnail_png
from harness.leaderboard.render import (
    Block,
    agreement_blocks,
    main_blocks,
    model_blocks,
    notes_blocks,
    preference_blocks,
)
from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import fmt, model_labels

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f2f2f5; }
tr:nth-child(even) td { background: #fafafc; }
blockquote { border-left: 4px solid #c9a227; margin: 0.8rem 0; padding: 0.3rem 0.9rem; background: #fff9e6; }
code { background: #f2f2f5; padding: 0 0.2rem; border-radius: 3px; }
img.plot { max-width: 100%; border: 1px solid #e5e5ea; margin: 0.4rem 0; }
.gallery-row { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.4rem 0 1.4rem; }
.cell { width: 200px; font-size: 0.8rem; }
.cell img { width: 192px; height: auto; image-rendering: pixelated; border: 1px solid #d0d0d5; }
.missing { width: 192px; height: 120px; display: flex; align-items: center; justify-content: center;
           background: #f2f2f5; color: #6e6e73; text-align: center; border: 1px dashed #b0b0b5; }
.scores { margin: 0.2rem 0 0; padding-left: 1rem; }
"""


def _inline(text: str) -> str:
    """Escaped text with the report's inline Markdown (`code`, **bold**) as HTML."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def blocks_to_html(blocks: list[Block]) -> str:
    parts: list[str] = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{_inline(b[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{_inline(b[1])}</p>")
        elif kind == "quote":
            parts.append(f"<blockquote>{_inline(b[1])}</blockquote>")
        elif kind == "list":
            parts.append(_nested_list(b[1]))
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in b[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return "\n".join(parts)


def _nested_list(items: list[tuple[int, str]]) -> str:
    out, depth = [], -1
    for level, text in items:
        while depth < level:
            out.append("<ul>")
            depth += 1
        while depth > level:
            out.append("</ul>")
            depth -= 1
        out.append(f"<li>{_inline(text)}</li>")
    out += ["</ul>"] * (depth + 1)
    return "".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{data_uri(png)}">'


def gallery_html(lb: Leaderboard) -> str:
    """Each gallery prompt with every model's image side by side and its scores under it."""
    g = lb.gallery
    n = lb.settings.get("gallery_prompts", 0)
    parts = ["<h2>Gallery</h2>"]
    if not len(g):
        why = ("turned off (report.gallery_prompts=0)" if n == 0
               else "the run has no finished images yet")
        return parts[0] + f"<p>No gallery: {why}.</p>"
    prompts = list(dict.fromkeys(g["prompt_id"]))
    parts.append(f"<p>{len(prompts)} prompt(s) (the first by id), every model's first image for each, "
                 "with its per-image scores. Thumbnails; the full images are in the store.</p>")
    for pid in prompts:
        rows = g[g["prompt_id"] == pid]
        text = html.escape(str(rows["prompt"].iloc[0]))
        parts.append(f"<h3><code>{html.escape(str(pid))}</code>: {text}</h3>")
        parts.append('<div class="gallery-row">')
        for _, r in rows.iterrows():
            png = thumbnail_png(r["image_path"]) if isinstance(r["image_path"], str) else None
            if png is not None:
                pic = _img(png, f"{r['label']}: {r['prompt']}", cls="thumb")
            elif r["status"] == "refused":
                why = html.escape(str(text_or_none(r["refusal_reason"]) or "no reason given"))
                pic = f'<div class="missing">refused: {why}</div>'
            elif r["status"] == "ok":
                pic = '<div class="missing">image file missing from the store</div>'
            else:
                pic = f'<div class="missing">no image ({html.escape(str(r["status"]))})</div>'
            scores = "".join(f"<li>{html.escape(k)}: {fmt(v)}</li>" for k, v in r["scores"].items())
            parts.append(f'<div class="cell"><strong>{html.escape(str(r["label"]))}</strong>{pic}'
                         + (f'<ul class="scores">{scores}</ul>' if scores else "") + "</div>")
        parts.append("</div>")
    return "\n".join(parts)


def render_html(lb: Leaderboard, run_dir: str | Path | None = None) -> str:
    """The whole report as one HTML document. ``run_dir`` is where `harness cost` may have left
    cost.png (embedded when present)."""
    body: list[str] = [blocks_to_html(main_blocks(lb))]
    metric_png = metric_ci_png(lb)
    if metric_png is not None:
        body += ["<h2>Metric CIs</h2>", _img(metric_png, "per-image metrics with confidence intervals")]
    body.append(blocks_to_html(notes_blocks(lb)))
    pref = blocks_to_html(preference_blocks(lb))
    pref_png = preference_ci_png(lb.preference, model_labels(lb))
    if pref_png is not None:
        # the plot right under the section's introduction, before its tables
        head, sep, rest = pref.partition("</p>")
        pref = head + sep + "\n" + _img(pref_png, "human-preference ratings with bootstrap CIs") + rest
    body += [pref, blocks_to_html(agreement_blocks(lb))]
    cost = Path(run_dir) / "cost.png" if run_dir is not None else None
    if cost is not None and cost.is_file():
        body += ["<h2>Cost against daily volume</h2>",
                 "<p>From <code>harness cost</code> (see cost.md next to this file for the table).</p>",
                 _img(cost.read_bytes(), "cost against daily volume")]
    body.append(gallery_html(lb))
    body.append(blocks_to_html(model_blocks(lb)))
    title = html.escape(f"Leaderboard: {lb.suite} / {lb.run_id}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{title}</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(p for p in body if p) + "\n</body>\n</html>\n")
