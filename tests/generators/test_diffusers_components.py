"""options.components: pipeline parts kept outside the model folder (HiDream-I1's Llama text
encoder) are checked when the config is read, loaded with their own class, passed to
from_pretrained, and identified by content in every cache key."""

import shutil

import pytest

from harness.errors import ConfigError
from harness.generators.diffusers_loading import folder_fingerprint, load_components
from harness.generators.diffusers_local import DiffusersGenerator
from harness.generators.diffusers_options import DiffusersOptions
from harness.generators.tiny import build_tiny_pipeline
from harness.generators.tiny_families import HIDREAM_LLAMA


@pytest.fixture(scope="module")
def hidream(tmp_path_factory):
    """A tiny HiDream-I1 folder laid out as on the hub (no Llama inside the pipeline) with its
    stand-in Llama in a subfolder."""
    return build_tiny_pipeline("hidream", tmp_path_factory.mktemp("hd") / "hidream")


def _gen(model, llama, **more):
    parts = {c: {"model_id": str(llama), "class": cls} for c, cls in
             (("text_encoder_4", "LlamaForCausalLM"), ("tokenizer_4", "PreTrainedTokenizerFast"))}
    return DiffusersGenerator(name="hd", label="hd", model_id=str(model),
                              options={"device": "cpu", "components": parts, **more},
                              params={"width": 64, "height": 64, "steps": 1})


@pytest.mark.parametrize(("components", "message"), [
    ("llama", r"models\.hd\.options\.components: expected a mapping"),
    ({"text_encoder_4": "llama"}, r"models\.hd\.options\.components\.text_encoder_4: expected a mapping"),
    ({"text_encoder_4": {"model_id": "x", "class": "LlamaForCausalLM", "revison": "a"}},
     r"unknown key 'revison'.*revision"),
    ({"text_encoder_4": {"model_id": "x"}},
     r"models\.hd\.options\.components\.text_encoder_4\.class: required"),
    ({"text_encoder_4": {"class": "LlamaForCausalLM"}},
     r"models\.hd\.options\.components\.text_encoder_4\.model_id: required"),
])
def test_bad_components_fail_when_the_config_is_read(components, message):
    with pytest.raises(ConfigError, match=message):
        DiffusersGenerator(name="hd", label="hd", model_id="org/m",
                           options={"components": components})


def test_components_are_in_the_key_by_content(hidream, tmp_path):
    llama = hidream / HIDREAM_LLAMA
    ident = _gen(hidream, llama).request_params()["components"]
    assert ident["text_encoder_4"] == {"model_id": HIDREAM_LLAMA, "class": "LlamaForCausalLM",
                                       "weights": folder_fingerprint(llama)}
    assert ident["tokenizer_4"]["weights"] == folder_fingerprint(llama)
    # A different Llama (one changed byte of its config) is a different key; the folder's
    # place on disk is not part of it.
    moved = tmp_path / HIDREAM_LLAMA
    shutil.copytree(llama, moved)
    assert _gen(hidream, moved).request_params() == _gen(hidream, llama).request_params()
    cfg = moved / "config.json"
    cfg.write_text(cfg.read_text().replace('"rms_norm_eps": 1e-06', '"rms_norm_eps": 1e-05'))
    assert _gen(hidream, moved).request_params()["components"]["text_encoder_4"]["weights"] \
        != ident["text_encoder_4"]["weights"]
    # The harness sets it; a config may not.
    with pytest.raises(ConfigError, match=r"params\.extra\.components: set by the harness"):
        DiffusersGenerator(name="hd", label="hd", model_id=str(hidream),
                           params={"extra": {"components": {}}}).request_params()


def test_a_missing_component_folder_fails_at_planning(hidream, tmp_path):
    with pytest.raises(ConfigError, match=r"models\.hd\.options\.components\.text_encoder_4\."
                                          r"model_id: local folder .* does not exist"):
        _gen(hidream, tmp_path / "nowhere").request_params()


def test_components_load_with_their_class_and_pass_into_the_pipeline(hidream):
    import torch

    gen = _gen(hidream, hidream / HIDREAM_LLAMA)
    try:
        gen.load()
        pipe = gen._pipe
        assert type(pipe.text_encoder_4).__name__ == "LlamaForCausalLM"
        from transformers import PreTrainedTokenizerFast

        assert isinstance(pipe.tokenizer_4, PreTrainedTokenizerFast)
        assert pipe.text_encoder_4.dtype == torch.float32
        # The pipeline's Llama is the folder's: same weights.
        from transformers import LlamaForCausalLM

        ref = LlamaForCausalLM.from_pretrained(str(hidream / HIDREAM_LLAMA))
        assert torch.equal(ref.model.embed_tokens.weight, pipe.text_encoder_4.model.embed_tokens.weight)
    finally:
        gen.close()


def test_unknown_class_and_unreachable_hub_say_the_fix(hidream, tmp_path):
    import torch

    def where(key):
        return f"models.hd.{key}"

    bad = DiffusersOptions(components={"text_encoder_4": {"model_id": str(hidream / HIDREAM_LLAMA),
                                                          "class": "LlamaForCausalLMM"}})
    with pytest.raises(ConfigError, match=r"models\.hd\.options\.components\.text_encoder_4\.class: "
                                          r"'LlamaForCausalLMM' is not a transformers or diffusers"):
        load_components(bad, torch.float32, tmp_path, where)
    offline = DiffusersOptions(local_files_only=True, components={
        "text_encoder_4": {"model_id": "meta-llama/Llama-3.1-8B-Instruct", "class": "LlamaForCausalLM"}})
    with pytest.raises(RuntimeError, match=r"(?s)models\.hd\.options\.components\.text_encoder_4\.model_id: "
                                           r"cannot load 'meta-llama/Llama-3\.1-8B-Instruct'.*hf auth "
                                           r"login.*hf download meta-llama/Llama-3\.1-8B-Instruct"):
        load_components(offline, torch.float32, tmp_path, where)
