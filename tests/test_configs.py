"""Every config in conf/ composes, validates against its schema and instantiates on CPU."""

import re

import pytest

from harness import assemble
from harness.config import validate
from harness.errors import ConfigError, UserError
from harness.suites import SuiteError, load_suite


def _names(group):
    return assemble.group_options(group)


def test_every_group_has_configs():
    for group in ("models", "suite", "metrics", "store", "executor", "experiment"):
        assert _names(group), group


@pytest.mark.parametrize("name", _names("models"))
def test_model_config_instantiates_without_loading(name, model_cache):
    cfg = validate(assemble.compose([f"models=[{name}]"]))
    assert list(cfg.models) == [name]
    gens = assemble.build_generators(cfg)
    g = gens[name]
    assert g.name == name and g.label and g.model_id
    d = g.describe()
    assert d["kind"] == g.kind
    assert g.calls == 0  # constructing never generates


@pytest.mark.parametrize("name", _names("models"))
def test_model_files_declare_their_own_package(name):
    first = (assemble.CONF_DIR / "models" / f"{name}.yaml").read_text().splitlines()[0]
    assert first == f"# @package models.{name}"


@pytest.mark.parametrize("name", _names("metrics"))
def test_metric_config_instantiates(name):
    cfg = validate(assemble.compose([f"metrics=[{name}]"]))
    m = assemble.build_metrics(cfg)[name]
    assert m.per in ("image", "set")
    assert isinstance(m.higher_is_better, bool)
    assert len(m.settings_hash()) == 16


@pytest.mark.parametrize("name", _names("suite"))
def test_suite_config_composes_and_loads_or_says_where_to_get_the_file(name, monkeypatch):
    for var in ("HARNESS_PARTIPROMPTS", "HARNESS_DRAWBENCH", "HARNESS_GENEVAL", "HARNESS_T2I_COMPBENCH"):
        monkeypatch.delenv(var, raising=False)
    cfg = validate(assemble.compose([f"suite={name}"]))
    assert cfg.suite.name == name
    try:
        suite = load_suite(cfg.suite)
    except SuiteError as e:  # public sets: the user provides the file
        assert cfg.suite.format != "harness", e
        assert re.search(r"not found|tried", str(e)), e
    else:
        assert suite.prompts and suite.name == name


@pytest.mark.parametrize("name", _names("experiment"))
def test_experiment_presets_compose(name, model_cache):
    cfg = validate(assemble.compose([f"experiment={name}"]))
    assemble.build_generators(cfg)
    assemble.build_metrics(cfg)


def test_executor_and_store_instantiate():
    cfg = validate(assemble.compose([]))
    for name in _names("executor"):
        c = validate(assemble.compose([f"executor={name}"]))
        assert hasattr(assemble.build_executor(c), "execute")
    assert cfg.store.root


def test_every_setting_in_conf_is_commented():
    """Each key line in conf/ has a comment on it or directly above it (a run of sibling
    scalar keys such as width/height may share one comment)."""
    for path in sorted(assemble.CONF_DIR.rglob("*.yaml")):
        prev_ok, prev_indent, prev_line = False, -1, ""
        for i, line in enumerate(path.read_text().splitlines()):
            s = line.strip()
            if not s or s.startswith("#") or s.startswith("- "):
                prev_ok, prev_line = s.startswith("#"), s
                prev_indent = -1
                continue
            if ":" not in s:
                continue
            indent = len(line) - len(line.lstrip())
            sibling = prev_ok and indent == prev_indent and not prev_line.endswith(":")
            ok = ("#" in line or prev_line.startswith("#") or sibling
                  or s.startswith(("_target_", "defaults:")))
            assert ok, f"{path}:{i + 1}: {line}"
            prev_ok, prev_indent, prev_line = ok, indent, s


@pytest.mark.parametrize("override, message", [
    (["samples=0"], "samples: must be >= 1"),
    (["samples=two"], "samples"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        validate(assemble.compose(override))


def test_misspelt_model_key_is_named(model_cache):
    name = _names("models")[0]
    with pytest.raises(ConfigError, match=rf"models\.{name}\.params: unknown key 'stpes'.*'steps'"):
        validate(assemble.compose([f"models=[{name}]", f"+models.{name}.params.stpes=3"]))


@pytest.mark.parametrize("override, message", [
    (["sampels=3"], "unknown setting 'sampels'.*Did you mean 'samples'"),
    (["models=[toy_unett]"], "no such models config.*Did you mean 'toy_unet'"),
    (["suite=text-rendring"], "Did you mean 'text-rendering'"),
    (["metrics=[colorfulnes]"], "Did you mean 'colorfulness'"),
    (["models=toy_unet,nope"], "models=nope"),
    (["run.nmae=x"], "'nmae' is not a key of run.*Did you mean 'name'"),
    (["suite.limt=3"], "Did you mean 'limit'"),
    (["models.toy_unet.params.stpes=3"], "'stpes' is not a key of models.toy_unet.params"),
    (["metrics.fid_toy.settings.kid_sed=2"],
     "'kid_sed' is not a setting of metric fid_toy.*Did you mean 'kid_seed'.*cpu_streams"),
    (["metrics.ocr.settings.engnie=tesseract"], "Did you mean 'engine'"),
])
def test_prevalidation_suggests(override, message):
    with pytest.raises(UserError, match=message):
        assemble.prevalidate(override)


def test_known_metric_settings_pass_prevalidation():
    assemble.prevalidate(["metrics.fid_toy.settings.cpu_streams=1", "metrics.ocr.settings.engine=tesseract"])
    # A metric that is not selected is caught too (tests/cli/test_overrides.py), unless added with +.
    assemble.prevalidate(["+metrics.nonexistent.settings.x=1"])
