"""Toy-world edits described in the world's caption words (what the edit_following metric asks)."""

from __future__ import annotations

from harness.toyworld.edits import EDIT_KINDS, edit_meta, edits
from harness.toyworld.world import captions


def test_meta_names_the_touched_thing_and_keeps_the_others():
    seen = set()
    for e in edits(40, seed=4):
        m = edit_meta(e)
        seen.add(e.kind)
        assert m["edit_type"] == e.kind
        if e.kind == "word":
            assert m["must_change"] == f'a sign that says "{e.target.word}"' == m["target_caption"]
            assert m["must_keep"] == [f"a {e.source.sign_colour} sign"]
            continue
        t = e.target.things[e.index]
        assert m["must_change"] == f"a {t.colour} {t.shape} in the {t.position}"
        others = [o for j, o in enumerate(e.target.things) if j != e.index]
        assert m["must_keep"] == [f"a {o.colour} {o.shape} in the {o.position}" for o in others]
        if e.target.kind in ("single", "pair"):
            assert m["target_caption"] == captions(e.target)[0]
        else:  # three things: the world has no caption for them
            assert m["target_caption"] is None
    assert seen == set(EDIT_KINDS)
