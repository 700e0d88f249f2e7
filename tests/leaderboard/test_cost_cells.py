"""The main table's cost cells: a "–" always says why (self-hosted, all refused, no price)."""

from harness.leaderboard import build_leaderboard
from harness.leaderboard.render import render_markdown
from harness.leaderboard.synthetic import make_store


def test_empty_cost_cells_say_why_and_the_reasons_are_spelled_out_once(tmp_path):
    store = make_store(tmp_path / "s", models=("alpha", "beta", "delta"), refuse_all=("delta",),
                       api_price={"beta": 0.04})
    md = render_markdown(build_leaderboard(store, "synthetic"))
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if "cost / 1,000 images" in line) + 2
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("| "))
    rows = {line.split(" | ")[1]: line for line in lines[start:end]}
    assert "| 0.0400 | 40.00 |" in rows["Beta"]
    assert "| – (self-hosted) | – (self-hosted) |" in rows["Alpha"]
    assert "| – (all refused) | – (all refused) |" in rows["Delta"]
    note = [line for line in md.splitlines() if line.startswith('Cost "–"')]
    assert len(note) == 1
    assert "all refused: every request was refused" in note[0]
    assert "self-hosted: no API price" in note[0] and "harness cost" in note[0]
    # No bare "–" left in the cost columns of any row.
    for line in rows.values():
        cells = line.split(" | ")
        assert all(c.strip() != "–" for c in cells[7:9]), line
