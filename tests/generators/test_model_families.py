"""Today's model families: every family config runs its own pipeline class on a tiny random
model through `harness run` and resumes with zero calls; the coverage test holds the maintained
family list against the installed diffusers; withdrawn hub ids fail before any download."""

import io
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from PIL import Image

from harness import assemble, cli
from harness.errors import ConfigError
from harness.generators.diffusers_families import (
    FAMILIES,
    LEFT_OUT,
    RETIRED_HUB_IDS,
    VARIANT_SUFFIXES,
    config_family,
)
from harness.generators.diffusers_local import DiffusersGenerator
from harness.generators.tiny import ARCHS
from harness.generators.tiny_families import FAMILY_PIPELINES, HIDREAM_LLAMA

NEW = ("flux2_dev", "flux2_klein_4b", "qwen_image", "z_image_turbo", "chroma1_hd", "lumina2",
       "cogview4", "sana_sprint", "bria_3_2", "kandinsky5_lite",
       "hunyuan_image_21", "hidream_i1_full", "qwen_image_21",
       "ovis_image_7b", "nucleus_moe_image", "glm_image")
"""Configs of today's text-to-image families (tested end to end below)."""


def installed_text2image() -> list[str]:
    """Class names of the installed diffusers' text-to-image pipelines (AutoPipeline's table)."""
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING

    return sorted({cls.__name__ for cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values()})


def test_every_installed_text_to_image_family_has_a_config_or_a_reason():
    covered = {p for f in FAMILIES for p in f.pipelines}
    missing = []
    for name in installed_text2image():
        if name in covered or name in LEFT_OUT:
            continue
        base = next((name.removesuffix(s) for s in VARIANT_SUFFIXES if name.endswith(s)), None)
        if base is not None and any(p.removesuffix("Pipeline") == base for p in covered | set(LEFT_OUT)):
            continue
        missing.append(name)
    assert not missing, (f"diffusers ships text-to-image pipelines with no model config and no "
                         f"reason in diffusers_families.LEFT_OUT: {missing}")
    # The families covered, by name (the report of this test).
    names = sorted(f.name for f in FAMILIES if not f.editing)
    assert {"flux2", "flux2_klein", "qwen_image", "z_image", "chroma", "lumina2",
            "cogview4", "sana_sprint", "bria", "kandinsky5",
            "hunyuan_image", "hidream", "qwen_image_21",
            "ovis_image", "nucleus_moe", "glm_image"} <= set(names)
    # A left-out entry that diffusers no longer ships is stale (some, like HiDream, are families
    # AutoPipeline's table does not list).
    import diffusers

    stale = [n for n in LEFT_OUT if not hasattr(diffusers, n)]
    assert not stale, f"LEFT_OUT names pipelines diffusers no longer ships: {stale}"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_config_matches_its_pipeline(family):
    import diffusers

    path = assemble.CONF_DIR / "models" / f"{family.config}.yaml"
    cfg = OmegaConf.load(path)
    assert cfg.family == family.name, path
    for name in family.pipelines:
        assert hasattr(diffusers, name), f"{name} is not in diffusers {diffusers.__version__}"
    if family.tiny is not None:
        assert family.tiny in ARCHS
        built = FAMILY_PIPELINES.get(family.tiny)
        if built is not None:
            assert built == family.pipelines[0]
    if family.licence:
        assert family.licence.split(" ")[0].lower() in cfg.notes.lower(), path
    assert config_family(family.config) is family


def test_withdrawn_hub_id_fails_before_any_download(tmp_path):
    for old, new in RETIRED_HUB_IDS.items():
        with pytest.raises(ConfigError, match=rf"models\.m\.model_id: '{old}' is no longer on the "
                                              rf"hub.*models\.m\.model_id={new}"):
            DiffusersGenerator(name="m", label="m", model_id=old,
                               options={"cache_dir": str(tmp_path)})
    # A copy already in the local hub cache still loads.
    old = next(iter(RETIRED_HUB_IDS))
    snap = tmp_path / ("models--" + old.replace("/", "--")) / "snapshots" / "abc"
    snap.mkdir(parents=True)
    DiffusersGenerator(name="m", label="m", model_id=old, options={"cache_dir": str(tmp_path)})


def _overrides(name: str, arch: str) -> list[str]:
    m = f"models.{name}"
    over = ["command=run", "progress=false", "suite=toy-shapes", "suite.limit=1", "samples=1",
            "metrics=[]", "run.name=fam", f"models=[{name}]",
            f"{m}.model_id=harness-untrained/tiny-{arch}",
            f"++{m}.options.build={{arch: {arch}, seed: 0, image_size: 64}}",
            f"{m}.options.device=cpu", f"{m}.options.cpu_offload=false", f"{m}.untrained=true",
            f"{m}.params.width=64", f"{m}.params.height=64", f"{m}.params.steps=2",
            f"{m}.batch_size=2"]
    cfg = OmegaConf.load(assemble.CONF_DIR / "models" / f"{name}.yaml")
    for key, value in TINY_EXTRA.items():
        if key in (cfg.params.extra or {}):
            over.append(f"{m}.params.extra.{key}={str(value).lower()}")
    if arch == "hidream":  # the Llama parts, kept outside the pipeline folder as on the hub
        llama = Path(os.environ["HARNESS_MODEL_CACHE"]) / f"harness-untrained--tiny-{arch}" / HIDREAM_LLAMA
        over += [f"{m}.options.components.{c}.model_id={llama}"
                 for c in ("text_encoder_4", "tokenizer_4")]
    return over


TINY_EXTRA = {
    "max_sequence_length": 64,  # the tiny encoders are slow at 512
    "use_resolution_binning": False,  # binning would generate at ~1024 px
}
"""Family arguments the tiny runs override (the rest of params.extra runs as configured)."""

SNAPPED = {"kandinsky5_lite": (1024, 1024), "hidream_i1_full": (512, 512)}
"""Image size of pipelines that snap the requested 64x64 to a trained resolution."""


FAST = ("qwen_image", "flux2_klein_4b", "z_image_turbo", "sana_sprint", "qwen_image_21")
"""Run by default: true CFG with a negative prompt, a step-distilled and a turbo model, an
sCM few-step model with distilled guidance, and a Qwen3-VL-encoded RGBA model; the other
families (each ~5-20 s on 2 cores) run with the slow tests."""


@pytest.mark.parametrize("arch", [a for a in ARCHS if a in FAMILY_PIPELINES])
def test_tiny_family_builds_are_deterministic_small_and_reload(arch, tmp_path):
    from diffusers import DiffusionPipeline

    from harness.generators.diffusers_loading import folder_fingerprint, null_components
    from harness.generators.tiny import build_tiny_pipeline

    a = build_tiny_pipeline(arch, tmp_path / "a")
    b = build_tiny_pipeline(arch, tmp_path / "b")
    assert folder_fingerprint(a) == folder_fingerprint(b)  # same recipe, same bytes
    assert folder_fingerprint(build_tiny_pipeline(arch, tmp_path / "c", seed=1)) != folder_fingerprint(a)
    # HunyuanImage's ByT5 projection has a fixed 2048-wide hidden layer (16 MB in float32).
    limit = 25e6 if arch == "hunyuan_image" else 20e6
    assert sum(p.stat().st_size for p in a.rglob("*") if p.is_file()) < limit
    assert not [p for p in a.iterdir() if p.name.startswith("_")]  # scratch tokenizers removed
    pipe = DiffusionPipeline.from_pretrained(str(a), local_files_only=True, **null_components(a))
    assert type(pipe).__name__ == FAMILY_PIPELINES[arch]


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in NEW])
def test_family_config_generates_and_resumes_with_zero_calls(name, workdir):
    family = config_family(name)
    first = cli.dispatch(cli.compose(_overrides(name, family.tiny)))
    store = first["store"]
    recs = store.records("fam")
    assert recs and all(r.status == "ok" for r in recs), [r.error for r in recs]
    assert first["stats"].calls > 0
    with Image.open(io.BytesIO(store.read_image(recs[0].image_sha256))) as im:
        assert im.format == "PNG" and im.size == SNAPPED.get(name, (64, 64))
    # The config's family-specific arguments (true_cfg_scale ...) went into the key.
    extra = dict(OmegaConf.load(assemble.CONF_DIR / "models" / f"{name}.yaml").params.extra or {})
    extra.update({k: v for k, v in TINY_EXTRA.items() if k in extra})
    params = dict(recs[0].request["params"])
    components = params.pop("components", {})
    assert params == extra
    # Parts loaded from outside the model folder are in the key by content.
    assert all(c["weights"] for c in components.values())
    assert sorted(components) == sorted(
        OmegaConf.load(assemble.CONF_DIR / "models" / f"{name}.yaml").options.get("components") or {})
    second = cli.dispatch(cli.compose(_overrides(name, family.tiny)))
    assert second["stats"].calls == 0
