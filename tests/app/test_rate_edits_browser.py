"""Blind votes on instruction edits in a real Chromium: 'harness rate' on a run of the editing
preset shows the source image, the instruction and the two edits, and nothing that names a
model (page text, image URLs and alt texts)."""

import time

import pytest
from rate_server import rate_server

from harness.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def edit_store(tmp_path_factory, model_cache):
    """Two tiny editors on two still-life edits, one sample each: two pairs to rate."""
    from harness import cli

    root = tmp_path_factory.mktemp("rate-edits")
    cli.dispatch(cli.compose([
        "command=generate", "experiment=editing", "progress=false", "suite.tags=[image:still-life]",
        "suite.limit=2", "samples=1", "run.name=edits", f"store.root={root}",
        "models.toy_pix2pix.params.steps=2", "models.toy_kontext.params.steps=2"]))
    return Store(root)


@pytest.fixture(scope="module")
def server(edit_store, tmp_path_factory):
    with rate_server(edit_store.root, tmp_path_factory.mktemp("rate-edits-log"), "edits",
                     "edits-admin-token", "--gold-every", "0", "--seed", "3") as url:
        yield url


def test_rater_sees_source_instruction_and_two_edits_and_no_model(chromium, server, edit_store):
    token = edit_store.add_rater("eve")
    rater_id = edit_store.rater_for_token(token).rater_id
    words = set()
    for name, info in edit_store.run_models("edits").items():
        words |= {name, info["label"], info["model_id"], info["model_id"].split("/")[-1]}
    records = edit_store.records("edits")
    words |= {r.key for r in records} | {r.image_sha256 for r in records}
    words = sorted(w.lower() for w in words if w)
    prompts = edit_store.run_prompts("edits")

    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server)
    page.get_by_label("Invitation token").wait_for(timeout=30_000)
    page.get_by_label("Invitation token").fill(token)
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while (a := edit_store.open_assignment("edits", rater_id)) is None:
        assert time.monotonic() < deadline, "no pair assigned"
        time.sleep(0.1)
    page.locator(f".st-key-both_bad-{a.assignment_id}").wait_for(timeout=30_000)
    page.wait_for_function("() => { const im = [...document.images]; return im.length === 3 && "
                           "im.every(i => i.complete && i.naturalWidth > 0); }", timeout=30_000)
    # The source first, then the instruction of this pair's prompt, then the two edits.
    alts = page.eval_on_selector_all("img", "els => els.map(e => e.alt)")
    assert alts == ["Source image", "Left image", "Right image"]
    page.get_by_text("Instruction:").wait_for(timeout=10_000)
    assert prompts[a.prompt_id]["text"] in page.content()
    assert page.get_by_text("Prompt:").count() == 0
    html = page.content().lower()
    assert not [w for w in words if w in html]
    srcs = page.eval_on_selector_all("img", "els => els.map(e => e.src)")
    assert not [w for s in srcs for w in words if w in s.lower()]
    # A vote on an edit pair is stored like any other.
    page.get_by_role("button", name="Left is better").click()
    deadline = time.monotonic() + 15
    while not edit_store.rater_votes("edits", rater_id):
        assert time.monotonic() < deadline, "vote not stored"
        time.sleep(0.1)
    page.close()
