"""The rating service shows an instruction edit's source with its pair (no browser)."""

import io

from PIL import Image

from harness.app.service import RatingService
from harness.store import Store


def test_shown_carries_the_edit_source_as_clean_png(tmp_path, model_cache):
    from harness import cli

    root = tmp_path / "store"
    cli.dispatch(cli.compose([
        "command=generate", "experiment=editing", "progress=false", "suite.tags=[image:sign]",
        "suite.limit=1", "samples=1", "run.name=e", f"store.root={root}",
        "models.toy_pix2pix.params.steps=2", "models.toy_kontext.params.steps=2"]))
    store = Store(root)
    svc = RatingService(store, "e")
    (pid,) = store.run_prompts("e")
    src_path = svc.sources[pid]
    token = store.add_rater("r")
    a = svc.current(store.rater_for_token(token).rater_id)
    shown = svc.shown(a)
    assert shown.prompt == store.run_prompts("e")[pid]["text"]
    src = Image.open(io.BytesIO(shown.source_png))
    assert src.format == "PNG" and not src.info.get("exif")
    assert src.convert("RGB").tobytes() == Image.open(src_path).convert("RGB").tobytes()
    assert svc.source("no-such-prompt") is None
    store.close()
