"""`harness run experiment=toy-editing` end to end on a zoo model: SDEdit (img2img with the
target caption) over one edit of each kind, scored by edit_check."""

import numpy as np
from PIL import Image

from harness import cli
from harness.toyworld.edit_suite import STRENGTH, edit_from_record
from harness.toyworld.edits import check_edit


def test_zoo_dit_edits_the_toy_world_through_harness_run(workdir):
    res = cli.dispatch(cli.compose([
        "command=run", "progress=false", "experiment=toy-editing", "models=[zoo_dit]",
        "metrics=[edit_check]", "suite.per_tag=1", "suite.stratify_prefix=edit:", "run.name=te",
        # Fewer steps keep the default test run quick; SDEdit runs strength x steps of them.
        "models.zoo_dit.params.steps=8"]))
    store = res["store"]
    records = store.records("te")
    assert len(records) == 4 and {r.status for r in records} == {"ok"}
    prompts = store.run_prompts("te")
    assert sorted(p["meta"]["edit_type"] for p in prompts.values()) == ["add", "move", "recolour", "word"]
    scores = {(s.key, s.metric): s for s in store.scores("te")}
    for r in records:
        p = prompts[r.prompt_id]
        (init,) = r.request["controls"]
        # The img2img path ran with the suite's strength and the target caption as the prompt.
        assert init["kind"] == "init_image" and init["params"] == {"strength": STRENGTH}
        assert r.request["prompt"] == p["meta"]["target_caption"]
        image = Image.open(store.image_path(r.image_sha256))
        source = Image.open(init["path"]).convert("RGB")
        assert image.size == source.size == (64, 64)
        assert not np.array_equal(np.asarray(image.convert("RGB")), np.asarray(source))
        # The stored values are check_edit's on the stored image (the independent reference).
        want = check_edit(image.convert("RGB"), edit_from_record(p["meta"]["toy_edit"]))
        for output, value in want.items():
            assert scores[(r.key, f"edit_check.{output}")].value == value
    md = (workdir / "reports/toy-editing/te/leaderboard.md").read_text()
    assert "edit_check.all" in md and "Zoo DiT" in md
    # Raters see each SDEdit prompt as an edit: its source image and its instruction (not the
    # target caption the model was given).
    from harness.app.service import RatingService

    svc = RatingService(store, "te")
    for pid, p in prompts.items():
        assert svc.prompts[pid] == p["meta"]["instruction"] != p["text"]
        assert svc.sources[pid] == p["controls"][0]["path"]
