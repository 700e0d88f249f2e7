"""The OpenAI adapter, its configs and the fake follow the installed official openai SDK.

The SDK's types are generated from OpenAI's OpenAPI spec and carry what changes under us: the
model names (``ImageModel``), which are retired or shut down and when (its docstring), and the
sizes, qualities and fields of the Images API. These tests read them at test time, so an SDK
release that retires a model a config uses turns them red (the last test shows it with an
edited copy of the SDK's ``image_model.py``, as such a release would ship it).
"""

import importlib.util
import inspect
import re
import typing
from pathlib import Path

import pytest
import yaml

from harness import assemble
from harness.errors import ConfigError
from harness.generators.openai_images import OpenAIImages, check_config
from harness.generators.openai_spec import parse_spec, sdk_spec
from harness.testing.fakes import openai as fake_openai

openai = pytest.importorskip("openai")
from openai.types import (  # noqa: E402
    image_edit_params,
    image_generate_params,
    image_model,
    images_response,
)

KEY = "sk-conformance-test-key-0a1b2c3d"
GEN = "/v1/images/generations"
TARGET = f"{OpenAIImages.__module__}.{OpenAIImages.__qualname__}"
ODD_SIZES = ("1536x864", "1000x1000", "3072x864", "3840x2160", "4096x2048", "2048x2048", "3840x3840")
"""Free sizes on either side of the SDK's limits (multiples of 16, 1:3 to 3:1, 3840x2160)."""


def _openai_configs():
    out = {}
    for path in sorted((assemble.CONF_DIR / "models").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        if cfg.get("_target_") == TARGET:
            out[path.stem] = cfg
    return out


CONFIGS = _openai_configs()


def _literals(tp):
    """The values of every ``Literal`` in a type (through Optional and Union)."""
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    return [v for arg in typing.get_args(tp) for v in _literals(arg)]


def _client(fake):
    return openai.OpenAI(api_key=KEY, base_url=fake.url + "/v1", max_retries=0)


def test_there_are_openai_configs_and_no_retired_one_is_shipped():
    assert "openai_gpt_image" in CONFIGS
    assert "openai_dalle3" not in CONFIGS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_openai_config_uses_a_current_model_of_the_sdk(name):
    cfg = CONFIGS[name]
    spec = sdk_spec()
    model = cfg["model_id"]
    assert model in typing.get_args(image_model.ImageModel), model
    assert model not in spec.retired, spec.retired[model].message()
    p = cfg["params"]
    check_config(name, model, p["width"], p["height"], p.get("extra") or {}, spec)


def test_the_adapters_tables_are_exactly_the_sdks_literals():
    spec = sdk_spec()
    assert spec.sdk_version == openai.__version__
    assert spec.models == typing.get_args(image_model.ImageModel)
    hints = typing.get_type_hints(image_generate_params.ImageGenerateParamsNonStreaming)
    quality = set(_literals(hints["quality"]))
    assert set(spec.qualities) | set(spec.extra_qualities) | set(spec.deprecated_qualities) == quality
    size = set(_literals(hints["size"]))
    assert set(spec.sizes) | set(spec.deprecated_sizes) | {"auto"} == size
    assert spec.params == set(hints)
    # Parsed from prose: these must have been found, or a reworded docstring went unnoticed.
    assert spec.retired and spec.free_size_models and spec.extra_qualities
    assert spec.size_multiple and spec.aspect_range and spec.max_size
    assert {"response_format", "style"} <= spec.legacy_params


def test_every_model_the_sdk_docstring_quotes_as_deprecated_is_retired():
    src = inspect.getsource(image_model)
    doc = src[src.index('"""'):]
    quoted = set(re.findall(r'"([a-z0-9.-]+)"', doc.partition("Deprecated values:")[2]))
    assert quoted and quoted == set(sdk_spec().retired)
    for r in sdk_spec().retired.values():
        assert r.on.year >= 2026 and r.use


def test_the_fake_reads_the_same_sdk_and_agrees_with_the_adapter():
    spec, rules = sdk_spec(), fake_openai.sdk_rules()
    assert rules.models == set(spec.models)
    assert rules.retired == set(spec.retired)
    assert rules.generate.free_size_models == spec.free_size_models
    assert rules.generate.extra_qualities == dict(spec.extra_qualities)
    assert set(rules.generate.qualities) == set(spec.qualities)
    assert rules.generate.legacy == spec.legacy_params
    assert rules.generate.fields == spec.params and rules.edit.fields == spec.edit_params


def test_the_fake_answers_every_current_model_and_quality_and_refuses_the_retired(fake):
    spec, client = sdk_spec(), _client(fake)
    for model in spec.current:
        for i, q in enumerate(spec.qualities_of(model)):
            size = spec.sizes[i % len(spec.sizes)]
            r = client.images.generate(model=model, prompt="a red cube", size=size, quality=q)
            assert r.data[0].b64_json and r.size == size, (model, q)
        with pytest.raises(openai.BadRequestError) as e:  # only retired DALL-E models took it
            client.images.generate(model=model, prompt="x", quality=spec.deprecated_qualities[0])
        assert e.value.param == "quality"
        _same_size_line(client, spec, model, ("1536x864",))
    for model in (min(spec.free_size_models), min(set(spec.current) - spec.free_size_models)):
        _same_size_line(client, spec, model, spec.deprecated_sizes + ODD_SIZES)
    for model in spec.retired:
        with pytest.raises(openai.NotFoundError) as e:
            client.images.generate(model=model, prompt="x")
        assert e.value.code == "model_not_found"


def _same_size_line(client, spec, model, sizes):
    """The fake takes exactly the sizes the adapter's reading of the SDK allows."""
    for size in sizes:
        w, h = map(int, size.split("x"))
        if spec.size_error(model, w, h) is None:
            client.images.generate(model=model, prompt="x", size=size, quality="low")
            continue
        with pytest.raises(openai.BadRequestError) as e:
            client.images.generate(model=model, prompt="x", size=size)
        assert e.value.param == "size", (model, size)


def test_the_fakes_answer_has_only_fields_of_the_sdks_images_response(fake):
    raw = _client(fake).images.with_raw_response.generate(
        model="gpt-image-2.5-flare", prompt="a red cube", size="1536x1024", quality="high")
    body = raw.http_response.json()
    model = images_response.ImagesResponse
    assert set(body) <= set(model.model_fields)
    assert set(body["usage"]) <= set(images_response.Usage.model_fields)
    q_hint = model.model_fields["quality"].annotation
    assert body["quality"] in _literals(q_hint)
    assert raw.parse().usage.output_tokens_details.image_tokens > 0


def _future_sdk(tmp_path: Path, model: str, line: str):
    """``openai/types/image_model.py`` as a later release that retires ``model`` would ship it."""
    src = inspect.getsource(image_model)
    bullet = f'- "{model}": {line}\n'
    edited = src.replace('Deprecated values:\n\n', f'Deprecated values:\n\n{bullet}', 1)
    assert edited != src
    path = tmp_path / "image_model.py"
    path.write_text(edited)
    spec = importlib.util.spec_from_file_location("future_image_model", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_an_sdk_release_that_retires_a_configured_model_fails_the_config_and_the_fake(
        tmp_path, fake, monkeypatch):
    cfg = CONFIGS["openai_gpt_image"]
    model = cfg["model_id"]
    future = _future_sdk(tmp_path, model, "This snapshot was shut down on January 5, 2027. "
                         "Use gpt-image-2.6-sunburst instead.")
    spec = parse_spec("99.0.0", future, image_generate_params, image_edit_params)
    p = cfg["params"]
    with pytest.raises(ConfigError, match=rf"{re.escape(model)} was shut down on 2027-01-05; "
                       r"use gpt-image-2.6-sunburst .*openai SDK 99\.0\.0"):
        check_config("openai_gpt_image", model, p["width"], p["height"], p["extra"], spec)
    # ... and the fake, reading the same release, stops serving it.
    monkeypatch.setattr(fake_openai, "sdk_rules", lambda: fake_openai.rules_from(
        future, image_generate_params, image_edit_params))
    with pytest.raises(openai.NotFoundError):
        _client(fake).images.generate(model=model, prompt="x")
    assert fake.calls[GEN] == 1
