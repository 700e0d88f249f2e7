"""The toy-editing suite: generated from the toy world's edits, loadable, and carrying what the
edit checker needs (the committed file and images are what the generator makes)."""

import numpy as np
from PIL import Image

from harness.suites import BUILTIN_SUITES_DIR, load_suite
from harness.toyworld.edit_suite import (
    IMAGE_SIZE,
    PER_KIND,
    STRENGTH,
    edit_from_record,
    edit_record,
    write_toy_editing_suite,
)
from harness.toyworld.edits import EDIT_KINDS, check_edit, edit_meta, edits
from harness.toyworld.world import render


def test_committed_suite_is_what_the_generator_makes(tmp_path):
    fresh = write_toy_editing_suite(tmp_path / "toy-editing.yaml")
    assert fresh.read_text() == (BUILTIN_SUITES_DIR / "toy-editing.yaml").read_text()
    made = sorted((tmp_path / "toy-editing").glob("*.png"))
    committed = sorted((BUILTIN_SUITES_DIR / "toy-editing").glob("*.png"))
    assert [p.name for p in made] == [p.name for p in committed] and len(made) == 4 * PER_KIND
    for a, b in zip(made, committed, strict=True):  # pixels, not PNG bytes (zlib may differ)
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


def test_suite_loads_with_sources_instructions_and_targets():
    suite = load_suite({"name": "toy-editing", "file": "toy-editing.yaml"})
    assert len(suite.prompts) == 4 * PER_KIND
    kinds = [p.meta["edit_type"] for p in suite.prompts]
    assert {k: kinds.count(k) for k in EDIT_KINDS} == dict.fromkeys(EDIT_KINDS, PER_KIND)
    for p in suite.prompts:
        (init,) = p.controls
        assert init.kind == "init_image" and init.params == {"strength": STRENGTH}
        edit = edit_from_record(p.meta["toy_edit"])
        # SDEdit: the text is the target's caption; the instruction rides along for people.
        assert p.text == p.meta["target_caption"] == edit_meta(edit)["target_caption"]
        assert p.meta["instruction"] == edit.instruction and f"edit:{edit.kind}" in p.tags
        assert p.meta["must_change"] == edit_meta(edit)["must_change"]
        src = Image.open(init.path)
        assert src.size == (IMAGE_SIZE, IMAGE_SIZE)
        # The committed source is the record's source scene, and the checker sees the edit undone
        # there and done on the target's render.
        assert np.array_equal(np.asarray(src.convert("RGB")), np.asarray(render(edit.source, IMAGE_SIZE)))
        if edit.kind == "word":
            assert p.expected_text == edit.target.word != edit.source.word
            assert check_edit(render(edit.target, IMAGE_SIZE), edit) == {"kept": 1.0}
        else:
            assert check_edit(render(edit.target, IMAGE_SIZE), edit)["all"] == 1.0
            assert check_edit(src, edit)["changed"] == 0.0


def test_records_round_trip():
    for e in edits(16, seed=3):
        back = edit_from_record(edit_record(e))
        assert (back.kind, back.instruction, back.index) == (e.kind, e.instruction, e.index)
        for a, b in ((back.source, e.source), (back.target, e.target)):
            assert (a.kind, a.word, a.sign_colour) == (b.kind, b.word, b.sign_colour)
            assert [(t.shape, t.colour, t.position) for t in a.things] == \
                [(t.shape, t.colour, t.position) for t in b.things]
            assert np.allclose([t.xy for t in a.things] or 0, [t.xy for t in b.things] or 0, atol=1e-4)
