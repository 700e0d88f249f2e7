"""Instruction edits (control kind ``edit_image``) through DiffusersGenerator on tiny editing
pipelines: the source image reaches the pipeline, edits depend on it, and non-editing models
or mixed controls are refused before anything runs."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import cli
from harness.errors import ConfigError, UserError
from harness.generators import controls as ctl
from harness.generators.diffusers_local import DiffusersGenerator
from harness.types import GenRequest, sha256_hex

SUITE_DIR = Path(__file__).resolve().parents[2] / "harness" / "data" / "suites"


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two different source photos, registered by hash."""
    d = tmp_path_factory.mktemp("edit-src")
    out = []
    for name in ("cat", "coffee"):
        path = d / f"{name}.png"
        Image.open(SUITE_DIR / "controls" / f"{name}.png").convert("RGB").resize((64, 64)).save(path)
        sha = sha256_hex(path.read_bytes())
        ctl.register_inputs([(sha, str(path))])
        out.append(sha)
    return out


def make(tmp_path, arch):
    return DiffusersGenerator(
        name=f"edit_{arch}", label="t", model_id=f"harness-untrained/tiny-{arch}",
        batch_size=4, untrained=True,
        options={"build": {"arch": arch, "seed": 0, "image_size": 64},
                 "cache_dir": str(tmp_path), "device": "cpu"})


def req(seed, controls, **kw):
    fields = {"model": "m", "generator": "diffusers", "model_id": "m", "revision": None,
              "weights": None, "prompt_id": f"p{seed}", "prompt": "make the cat red",
              "negative_prompt": None, "sample": 0, "seed": seed, "width": 64, "height": 64,
              "steps": 2, "guidance": 4.0, "params": {}, "controls": tuple(controls)}
    fields.update(kw)
    return GenRequest(**fields)


def edit(sha, **params):
    return {"kind": "edit_image", "sha256": sha, "params": params}


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory):
    g = make(tmp_path_factory.mktemp("models"), "instruct_pix2pix")
    yield g
    g.close()


def test_instruct_pix2pix_edits_depend_on_the_source(pix2pix, sources):
    cat, coffee = sources
    res = pix2pix.generate([req(0, [edit(cat)]), req(0, [edit(coffee)]), req(0, [edit(cat)])])
    assert [r.status for r in res] == ["ok"] * 3, res[0].error
    a, b, again = (pixels(r.image) for r in res)
    assert a.shape == (64, 64, 3)
    assert np.array_equal(a, again)  # same source, seed and instruction: same bytes
    assert np.abs(a - b).mean() > 2  # another source gives another edit
    assert res[0].info["pipeline"] == "StableDiffusionInstructPix2PixPipeline"


def test_image_guidance_reaches_the_pipeline(pix2pix, sources):
    cat = sources[0]
    low, high = pix2pix.generate([req(0, [edit(cat, image_guidance=1.0)]),
                                  req(0, [edit(cat, image_guidance=3.0)])])
    assert low.status == high.status == "ok"
    assert np.abs(pixels(low.image) - pixels(high.image)).mean() > 0.5


def test_mixed_controls_and_text_only_models_are_refused(pix2pix, sources, tmp_path):
    cat = sources[0]
    with pytest.raises(ConfigError, match="edit_image .*takes no other control input"):
        pix2pix.generate([req(0, [edit(cat), {"kind": "init_image", "sha256": cat, "params": {}}])])
    with pytest.raises(ConfigError, match="image_guidance must be a number"):
        pix2pix.generate([req(0, [edit(cat, image_guidance="high")])])
    text_only = make(tmp_path, "sd15")
    with pytest.raises(ConfigError, match="StableDiffusionPipeline is not an instruction-editing"):
        text_only.generate([req(0, [edit(cat)])])
    text_only.close()


def test_flux_kontext_edits_at_the_request_size(sources, tmp_path):
    # Kontext scales every output to max_area pixels (1 MP by default) and snaps the source to its
    # preferred sizes unless _auto_resize is off: both set so the tiny model stays at 64 px.
    g = make(tmp_path, "flux_kontext")
    extra = {"_auto_resize": False, "max_area": 64 * 64, "max_sequence_length": 32}
    cat, coffee = sources
    res = g.generate([req(0, [edit(cat)], params=extra), req(0, [edit(coffee)], params=extra)])
    assert [r.status for r in res] == ["ok", "ok"], res[0].error
    a, b = (pixels(r.image) for r in res)
    # The source's latents join the sequence; a tiny random transformer couples them weakly,
    # but they change the edit (a dropped source would give identical bytes).
    assert a.shape == (64, 64, 3) and np.abs(a - b).mean() > 0.05
    assert res[0].info["pipeline"] == "FluxKontextPipeline"
    g.close()


def _edit_run(model, arch, *extra):
    m = f"models.{model}"
    return cli.compose([
        "command=run", "progress=false", "suite=editing", "suite.tags=[edit:recolour]",
        "suite.limit=2", "samples=1", "metrics=[]", "run.name=edits", f"models=[{model}]",
        f"{m}.model_id=harness-untrained/tiny-{arch}",
        f"++{m}.options.build={{arch: {arch}, seed: 0, image_size: 64}}",
        f"{m}.options.device=cpu", f"{m}.untrained=true", f"{m}.params.width=64",
        f"{m}.params.height=64", f"{m}.params.steps=2", *extra])


def test_editing_suite_runs_through_harness_run_and_resumes(workdir):
    from harness.suites import load_suite

    first = cli.dispatch(_edit_run("instruct_pix2pix", "instruct_pix2pix"))
    recs = first["store"].records("edits")
    assert len(recs) == 2 and all(r.status == "ok" for r in recs), [r.error for r in recs]
    # The source's hash and settings are in the request (the path rides along, outside the key),
    # and each edit differs from its source.
    suite = load_suite(cli.compose(["suite=editing"]).suite)
    by_id = {p.id: p for p in suite.prompts}
    for r in recs:
        src = by_id[r.prompt_id].controls[0]
        (c,) = r.request["controls"]
        assert (c["kind"], c["sha256"], c["params"]) == ("edit_image", src.sha256, {})
        edited = pixels(first["store"].read_image(r.image_sha256))
        source = np.asarray(Image.open(src.path).convert("RGB").resize((64, 64))).astype(int)
        assert edited.shape == source.shape and np.abs(edited - source).mean() > 1
    assert cli.dispatch(_edit_run("instruct_pix2pix", "instruct_pix2pix"))["stats"].calls == 0


def test_editing_suite_on_a_text_to_image_model_fails_before_generating(workdir):
    with pytest.raises(UserError, match="toy_unet: StableDiffusionPipeline is not an "
                                        "instruction-editing pipeline"):
        cli.dispatch(_edit_run("toy_unet", "sd15"))


def test_editing_preset_runs_scores_and_resumes(workdir):
    """The `editing` preset end to end: two tiny editors, preservation scored from the stored
    prompt's source and region, then a rerun that generates nothing."""
    over = ["command=run", "progress=false", "experiment=editing", "metrics=[edit_preservation]",
            "suite.tags=[image:still-life]", "suite.limit=3", "samples=1", "run.name=ed",
            "models.toy_pix2pix.params.steps=2", "models.toy_kontext.params.steps=2"]
    first = cli.dispatch(cli.compose(over))
    store = first["store"]
    recs = store.records("ed")
    assert len(recs) == 6 and all(r.status == "ok" for r in recs), [r.error for r in recs]
    scores = [s for s in store.scores("ed") if s.metric.startswith("edit_preservation")]
    psnr = [s.value for s in scores if s.metric == "edit_preservation.psnr"]
    assert len(psnr) == 6 and all(v is not None and 0 < v < 100 for v in psnr)
    assert cli.dispatch(cli.compose(over))["stats"].calls == 0

