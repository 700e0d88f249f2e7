"""A self-contained leaderboard.html: the report's blocks (headline first), the headline table
sortable and filterable, quality against price and speed, CI plots, win-rate and votes-per-pair
heatmaps, the cost plot when `harness cost` drew one, and a gallery chosen to show differences.

Everything is in the one file (images as data URIs, plots as SVG, a few lines of inline script
for sorting, filtering and enlarging images), so it opens offline, can be mailed or archived on
its own, and reads on a 390 px phone: wide tables scroll inside their own box, never the page.
Nothing depends on the clock: the same store gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import re
import textwrap
from pathlib import Path

from harness.leaderboard.cost import GpuPrice
from harness.leaderboard.heatmap import VOTES_NOTE, WIN_RATE_NOTE, heat_colour, pair_matrices
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
    notes_blocks,
    preference_blocks,
)
from harness.leaderboard.table import Leaderboard
from harness.leaderboard.text import fmt, model_labels, pct
from harness.leaderboard.tradeoff import (
    TABLE_HEADERS,
    gpu_line,
    headline_score,
    intro,
    tradeoff_rows,
    tradeoff_table,
)

ENLARGE_PX = 512
"""Longest side of a gallery image as embedded: shown as a thumbnail, this size when clicked."""

STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; overflow-wrap: anywhere; }
h1 { font-size: 1.6rem; margin-bottom: 0.3rem; }
.meta { color: #55555a; font-size: 0.9rem; margin-top: 0; }
p.headline { font-size: 1.05rem; background: #eef4fb; border-left: 4px solid #1f5fa8;
             padding: 0.5rem 0.8rem; }
.scroll { overflow-x: auto; max-width: 100%; margin: 0.6rem 0 1rem; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #d0d0d5; padding: 0.25rem 0.55rem; text-align: left; vertical-align: top;
         overflow-wrap: normal; }
th { background: #f2f2f5; }
tr:nth-child(even) td { background: #fafafc; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #a0a0a5; font-size: 0.8em; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; color: #1f5fa8; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; color: #1f5fa8; }
/* the model column stays in view while a wide table scrolls sideways */
#headline-table th:nth-child(2), #headline-table td:nth-child(2) { position: sticky; left: 0; z-index: 1;
                                                                   box-shadow: 2px 0 0 #d0d0d5; }
#headline-table th:nth-child(2) { background: #f2f2f5; z-index: 2; }
#headline-table td:nth-child(2) { background: #ffffff; }
#headline-table tr:nth-child(even) td:nth-child(2) { background: #fafafc; }
.filter { font: inherit; padding: 0.3rem 0.5rem; width: 100%; max-width: 22rem; border: 1px solid #b0b0b5;
          border-radius: 4px; }
blockquote { border-left: 4px solid #c9a227; margin: 0.8rem 0; padding: 0.3rem 0.9rem; background: #fff9e6; }
code { background: #f2f2f5; padding: 0 0.2rem; border-radius: 3px; }
img { cursor: zoom-in; }
img.plot { max-width: 100%; height: auto; border: 1px solid #e5e5ea; margin: 0.4rem 0; background: #fff; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.charts figure { margin: 0; flex: 1 1 320px; min-width: 0; }
.charts img.plot { width: 100%; }
figcaption { font-size: 0.85rem; color: #55555a; }
td.heat { text-align: center; min-width: 3.6rem; }
.gallery-row { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 0.4rem 0 1.4rem; }
.cell { width: 200px; font-size: 0.8rem; }
.cell img { display: block; width: 100%; max-width: 192px; height: auto; image-rendering: auto;
            border: 1px solid #d0d0d5; }
.missing { width: 100%; max-width: 192px; min-height: 120px; display: flex; align-items: center;
           justify-content: center; background: #f2f2f5; color: #6e6e73; text-align: center;
           border: 1px dashed #b0b0b5; padding: 0.4rem; }
.why { color: #55555a; font-size: 0.85rem; margin: 0.1rem 0 0.3rem; }
.scores { margin: 0.2rem 0 0; padding-left: 1rem; }
#zoom { position: fixed; inset: 0; background: rgba(0, 0, 0, 0.85); display: none; align-items: center;
        justify-content: center; z-index: 10; cursor: zoom-out; padding: 1rem; }
#zoom.open { display: flex; }
#zoom img { max-width: 100%; max-height: 100%; width: auto; height: auto; min-width: min(512px, 100%);
            background: #fff; object-fit: contain; cursor: zoom-out; }
@media (max-width: 600px) {
  body { margin: 0.8rem auto; padding: 0 0.6rem; }
  h1 { font-size: 1.3rem; }
  .cell { width: calc(50% - 0.4rem); }
  .cell img, .missing { max-width: 100%; }
}
"""

SCRIPT = """
(function () {
  function key(cell) {
    var t = (cell.getAttribute('data-sort') || cell.textContent).trim();
    var m = t.replace(/,/g, '').match(/^[^0-9+\\-.]*([+\\-]?[0-9]*\\.?[0-9]+(?:e[+\\-]?[0-9]+)?)/i);
    if (t === '' || t.charAt(0) === '\\u2013' || t.charAt(0) === '-' && t.length === 1) return [2, 0, ''];
    return m ? [0, parseFloat(m[1]), t] : [1, 0, t.toLowerCase()];
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
    var rows = Array.prototype.map.call(body.rows, function (r, i) { return [key(r.cells[col]), i, r]; });
    rows.sort(function (a, b) {
      if (a[0][0] !== b[0][0]) return a[0][0] - b[0][0];  // numbers, then text, missing last
      var c = a[0][0] === 0 ? a[0][1] - b[0][1] : (a[0][2] < b[0][2] ? -1 : a[0][2] > b[0][2] ? 1 : 0);
      return c !== 0 ? dir * c : a[1] - b[1];
    });
    rows.forEach(function (r) { body.appendChild(r[2]); });
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
      th.tabIndex = 0;
      th.title = 'Sort by this column';
      th.addEventListener('click', function () { sortBy(table, col, th); });
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter') sortBy(table, col, th); });
    });
  });
  document.querySelectorAll('input.filter').forEach(function (input) {
    var table = document.getElementById(input.getAttribute('data-table'));
    input.addEventListener('input', function () {
      var q = input.value.trim().toLowerCase();
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        r.style.display = !q || r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
      });
    });
  });
  var zoom = document.getElementById('zoom'), big = null;
  function close() { zoom.classList.remove('open'); if (big) { zoom.removeChild(big); big = null; } }
  document.querySelectorAll('main img').forEach(function (img) {
    img.tabIndex = 0;
    function open() {  // made on demand, so the page holds no image without a source
      close();
      big = document.createElement('img');
      big.src = img.src;
      big.alt = img.alt;
      zoom.appendChild(big);
      zoom.classList.add('open');
    }
    img.addEventListener('click', open);
    img.addEventListener('keydown', function (e) { if (e.key === 'Enter') open(); });
  });
  zoom.addEventListener('click', close);
  document.addEventListener('keydown', function (e) { if (e.key === 'Escape') close(); });
})();
"""


def _inline(text: str) -> str:
    """Escaped text with the report's inline Markdown (`code`, **bold**) as HTML."""
    out = html.escape(str(text), quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def table_html(headers: list[str], rows: list[list[str]], *, table_id: str | None = None,
               sortable: bool = True) -> str:
    """A table in its own horizontal scroll box (a wide table never widens the page); sortable by
    clicking a header unless ``sortable=False``."""
    head = "".join(f'<th scope="col">{_inline(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rows)
    attrs = (f' id="{table_id}"' if table_id else "") + (' class="sortable"' if sortable else "")
    return (f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def blocks_to_html(blocks: list[Block]) -> str:
    """Report blocks as HTML; every table sortable and in its own scroll box."""
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
            parts.append(table_html(b[1], b[2]))
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


def data_uri(data: bytes) -> str:
    """Image bytes (PNG, JPEG or SVG) as a data URI."""
    kind = ("svg+xml" if data.lstrip()[:5] in (b"<?xml", b"<svg ")
            else "jpeg" if data[:3] == b"\xff\xd8\xff" else "png")
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _img(data: bytes, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{data_uri(data)}">'


def _main_html(lb: Leaderboard) -> str:
    """The main blocks: the title, the run and its date, the headline sentence (what ranks the
    models, who leads, tied or not) set off as the first thing to read, then the rest with the
    first table (the headline table) filterable by a text box."""
    blocks = main_blocks(lb)
    lead = _headline_count(lb)
    meta = f'<p class="meta">{html.escape(meta_line(lb))}</p>'
    title = next((i for i, b in enumerate(blocks) if b[0] == "h1"), None)
    if title is not None:
        top = blocks_to_html([blocks[title]]) + "\n" + meta
        verdict = "".join(f'<p class="headline">{_inline(b[1])}</p>' if b[0] == "p" else blocks_to_html([b])
                          for b in blocks[:lead])
        rest = blocks[lead:title] + blocks[title + 1:]
    else:
        top, verdict, rest = meta, "", blocks
    first = next((i for i, b in enumerate(rest) if b[0] == "table"), None)
    if first is None:
        return "\n".join(p for p in (top, verdict, blocks_to_html(rest)) if p)
    _, headers, rows = rest[first]
    box = ('<p><input class="filter" type="search" data-table="headline-table" '
           'placeholder="Filter models" aria-label="Filter the models table"> '
           '<span class="meta">Click a column header to sort.</span></p>')
    table = table_html(headers, rows, table_id="headline-table")
    return "\n".join(p for p in (top, verdict, blocks_to_html(rest[:first]), box, table,
                                  blocks_to_html(rest[first + 1:])) if p)


def _headline_count(lb: Leaderboard) -> int:
    """How many of the main blocks are the headline verdict (render.headline_blocks), which
    comes before the title in the Markdown (its first line) and right under it here."""
    return len(headline_blocks(lb))


def meta_line(lb: Leaderboard) -> str:
    """Run id, suite and date: when the run was last generated or scored, as the store says (no
    clock is read, so the same store gives the same line)."""
    when = str(lb.run.updated_at or lb.run.created_at or "")
    date = when[:16].replace("T", " ") + " UTC" if when else "date unknown"
    return f"Run {lb.run_id} · suite {lb.suite} · run last updated {date}"


def tradeoff_html(lb: Leaderboard, gpu: GpuPrice | None) -> str:
    """Quality against price and against speed: two charts with the Pareto front, and a table
    with each model's price (or why there is none) and latency."""
    score = headline_score(lb)
    parts = ["<h2>Quality against price and speed</h2>"]
    if score is None:
        return parts[0] + "<p>Not drawn: no model has a score yet.</p>"
    tab = tradeoff_table(lb, gpu)
    parts.append(f"<p>{html.escape(intro(score, gpu, lb.settings.get('ci', 0.95)))}</p>")
    note = "\n".join(textwrap.wrap(gpu_line(gpu), 90)) if (tab["basis"] == "gpu").any() else ""
    figs = []
    for against, title in (("price", "Score against price per 1,000 images"),
                           ("speed", "Score against median latency")):
        svg = tradeoff_plot(tab, score.label, score.higher_is_better, against,
                            note=note if against == "price" else "")
        if svg is not None:
            figs.append(f"<figure>{_img(svg, title)}<figcaption>{title}</figcaption></figure>")
        else:
            figs.append(f"<figure><p>{title}: not drawn, no model has both values "
                        "(see the table below).</p></figure>")
    parts.append('<div class="charts">' + "".join(figs) + "</div>")
    headers = [h.format(score=score.label) for h in TABLE_HEADERS]
    parts.append(table_html(headers, tradeoff_rows(lb, tab)))
    return "\n".join(parts)


def _matrix_html(m, corner: str, *, diverging: bool, text) -> str:
    lo, hi = (0.0, 1.0) if diverging else (0.0, max(1.0, float(m.max(skipna=True).max())))
    head = f'<th scope="col">{html.escape(corner)}</th>' + "".join(
        f'<th scope="col">{html.escape(str(c))}</th>' for c in m.columns)
    rows = []
    for name, row in m.iterrows():
        cells = []
        for v in row:
            bg, fg = heat_colour(float(v), lo, hi, diverging=diverging)
            cells.append(f'<td class="heat" style="background:{bg};color:{fg}">{html.escape(text(v))}</td>')
        rows.append(f'<tr><th scope="row">{html.escape(str(name))}</th>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table class="heatmap"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def heatmaps_html(lb: Leaderboard) -> str:
    """Win rate (row model beat column model) and votes per pair, as coloured matrices."""
    mats = pair_matrices(lb)
    if mats is None:
        return ""
    wr, votes = mats
    return "\n".join([
        "<h3>Win rates</h3>",
        f"<p>{html.escape(WIN_RATE_NOTE)}</p>",
        _matrix_html(wr, "row beat column", diverging=True, text=pct),
        "<h3>Votes per pair</h3>",
        f"<p>{html.escape(VOTES_NOTE)}</p>",
        _matrix_html(votes, "votes between", diverging=False, text=lambda v: "–" if v != v else f"{v:.0f}"),
    ])


def _preference_html(lb: Leaderboard) -> str:
    """The preference blocks with the rating plot under the introduction and the win-rate and
    votes-per-pair heatmaps in place of the win-rate table (the per-pair detail table stays)."""
    blocks = preference_blocks(lb)
    parts: list[str] = []
    plot = preference_ci_png(lb.preference, model_labels(lb), fmt="svg")
    skip, placed = False, plot is None
    for b in blocks:
        if b[0] in ("h2", "h3"):
            skip = False
        if b[0] == "h3" and b[1] == "Win rates":
            parts.append(heatmaps_html(lb))
            skip = True  # the heatmap replaces the win-rate paragraph and table
            continue
        if b[0] == "h3" and b[1] == "Votes per pair":
            b = ("h3", "Votes per pair, in detail")
        if skip:
            continue
        parts.append(blocks_to_html([b]))
        if not placed and b[0] == "p":  # right under the introduction, before the tables
            parts.append(_img(plot, "human-preference ratings with bootstrap CIs"))
            placed = True
    return "\n".join(parts)


def gallery_html(lb: Leaderboard) -> str:
    """Each gallery prompt, why it was chosen, and every model's image (click to enlarge) with
    its scores."""
    g = lb.gallery
    n = lb.settings.get("gallery_prompts", 0)
    parts = ["<h2>Gallery</h2>"]
    if not len(g):
        why = ("turned off (report.gallery_prompts=0)" if n == 0
               else "the run has no finished images yet")
        return parts[0] + f"<p>No gallery: {why}.</p>"
    prompts = list(dict.fromkeys(g["prompt_id"]))
    parts.append(f"<p>{len(prompts)} prompt(s) chosen to show how the models differ: half spread over "
                 "the prompt tags, the rest where the models differ most on the headline. Each model's first "
                 "image for the prompt with its per-image scores; click an image to enlarge it.</p>")
    for pid in prompts:
        rows = g[g["prompt_id"] == pid]
        first = rows.iloc[0]
        text = html.escape(str(first["prompt"]))
        parts.append(f"<h3><code>{html.escape(str(pid))}</code>: {text}</h3>")
        why = str(first.get("why") or "")
        tags = ", ".join(first.get("tags") or []) if "tags" in rows.columns else ""
        if why or tags:
            parts.append(f'<p class="why">Chosen: {html.escape(why)}'
                         + (f" · tags: {html.escape(tags)}" if tags else "") + "</p>")
        parts.append('<div class="gallery-row">')
        for _, r in rows.iterrows():
            png = (preview_image(r["image_path"], ENLARGE_PX) if isinstance(r["image_path"], str)
                   else None)
            if png is not None:
                pic = _img(png, f"{r['label']}: {r['prompt']}", cls="thumb")
            elif r["status"] == "refused":
                why_r = html.escape(str(text_or_none(r["refusal_reason"]) or "no reason given"))
                pic = f'<div class="missing">refused: {why_r}</div>'
            elif r["status"] == "ok":
                pic = '<div class="missing">image file missing from the store</div>'
            else:
                pic = f'<div class="missing">no image ({html.escape(str(r["status"]))})</div>'
            scores = "".join(f"<li>{html.escape(k)}: {fmt(v)}</li>" for k, v in r["scores"].items())
            parts.append(f'<div class="cell"><strong>{html.escape(str(r["label"]))}</strong>{pic}'
                         + (f'<ul class="scores">{scores}</ul>' if scores else "") + "</div>")
        parts.append("</div>")
    return "\n".join(parts)


def render_html(lb: Leaderboard, run_dir: str | Path | None = None, *, gpu: GpuPrice | None = None) -> str:
    """The whole report as one HTML document.

    Args:
        run_dir: where `harness cost` may have left cost.png (embedded when present).
        gpu: the GPU price self-hosted models are priced at on the quality-against-price chart
            (:func:`harness.leaderboard.tradeoff.gpu_price` of the ``cost`` settings); None: they
            have no price, and the report says so.
    """
    body: list[str] = [_main_html(lb)]
    body.append(tradeoff_html(lb, gpu))
    metric_svg = metric_ci_png(lb, fmt="svg")
    if metric_svg is not None:
        body += ["<h2>Metric CIs</h2>", _img(metric_svg, "per-image metrics with confidence intervals")]
    body.append(blocks_to_html(notes_blocks(lb)))
    body += [_preference_html(lb), blocks_to_html(agreement_blocks(lb))]
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
            f"<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(p for p in body if p)
            + "\n</main>\n<div id=\"zoom\" role=\"dialog\" aria-label=\"enlarged image\"></div>\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")
