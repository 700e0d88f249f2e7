"""Planning: seeds, cache keys and run ids are deterministic and mean what they say."""

import dataclasses

import pytest

from harness.errors import ConfigError
from harness.generators.base import Generator
from harness.runner.plan import derive_seed, make_run_id, plan_units
from harness.types import Control, GenRequest, Prompt, Suite


class Fixed(Generator):
    kind = "fixed"

    @dataclasses.dataclass
    class Options:
        color: str = "red"


def gen(name="a", **params):
    return Fixed(name=name, label=name.upper(), model_id=f"org/{name}",
                 params={"width": 64, "height": 64, "steps": 10, **params})


SUITE = Suite(name="s", prompts=(Prompt(id="p1", text="one"), Prompt(id="p2", text="two")))


def test_units_cover_models_prompts_samples_in_model_major_order():
    units = plan_units(SUITE, {"a": gen("a"), "b": gen("b")}, samples=3, seed=0)
    assert len(units) == 2 * 2 * 3
    assert [u.request.model for u in units[:6]] == ["a"] * 6
    assert len({u.key for u in units}) == 12
    assert all(u.key == u.request.key() for u in units)


def test_seed_shared_across_models_and_distinct_across_prompts_and_samples():
    units = plan_units(SUITE, {"a": gen("a"), "b": gen("b")}, samples=2, seed=5)
    by = {(u.request.model, u.request.prompt_id, u.request.sample): u.request.seed for u in units}
    assert by[("a", "p1", 0)] == by[("b", "p1", 0)]
    assert len({by[("a", p, s)] for p in ("p1", "p2") for s in (0, 1)}) == 4
    assert derive_seed(5, "p1", 0) == by[("a", "p1", 0)]
    assert derive_seed(6, "p1", 0) != derive_seed(5, "p1", 0)
    assert 0 <= derive_seed(0, "x", 0) < 2**31


def test_key_is_stable_and_changes_with_every_parameter():
    base = plan_units(SUITE, {"a": gen("a")}, 1, 0)[0].request
    assert base.key() == plan_units(SUITE, {"a": gen("a")}, 1, 0)[0].key  # stable across calls
    changed = [
        dataclasses.replace(base, steps=11),
        dataclasses.replace(base, guidance=3.0),
        dataclasses.replace(base, seed=base.seed + 1),
        dataclasses.replace(base, revision="abc"),
        dataclasses.replace(base, weights="w"),
        dataclasses.replace(base, params={"quality": "high"}),
        dataclasses.replace(base, controls=({"kind": "init_image", "sha256": "x", "params": {}},)),
    ]
    keys = {c.key() for c in changed}
    assert base.key() not in keys and len(keys) == len(changed)


def test_known_key_value_pins_the_canonical_form():
    # Changing the canonical request form silently would orphan every stored image.
    r = GenRequest(model="m", generator="g", model_id="id", revision=None, weights=None,
                   prompt_id="p", prompt="a cat", negative_prompt=None, sample=0, seed=1,
                   width=64, height=64)
    assert r.key() == "1c14af22519fc1075f128f2fb1b0cc31bd8e7358673259713ffdeafc6455e8e3"
    assert r.key() == GenRequest(**r.to_dict() | {"controls": ()}).key()


def test_control_inputs_enter_the_key_by_hash_not_path():
    c1 = Control(kind="init_image", path="/a/x.png", sha256="abc", params={"strength": 0.5})
    c2 = Control(kind="init_image", path="/elsewhere/x.png", sha256="abc", params={"strength": 0.5})
    s1 = Suite(name="s", prompts=(Prompt(id="p", text="t", controls=(c1,)),))
    s2 = Suite(name="s", prompts=(Prompt(id="p", text="t", controls=(c2,)),))
    k1 = plan_units(s1, {"a": gen()}, 1, 0)[0].key
    assert k1 == plan_units(s2, {"a": gen()}, 1, 0)[0].key
    c3 = dataclasses.replace(c1, params={"strength": 0.6})
    s3 = Suite(name="s", prompts=(Prompt(id="p", text="t", controls=(c3,)),))
    assert plan_units(s3, {"a": gen()}, 1, 0)[0].key != k1


def test_prompt_negative_prompt_overrides_model_default():
    s = Suite(name="s", prompts=(Prompt(id="p", text="t", negative_prompt="blurry"),
                                 Prompt(id="q", text="u")))
    units = plan_units(s, {"a": gen(negative_prompt="ugly")}, 1, 0)
    assert [u.request.negative_prompt for u in units] == ["blurry", "ugly"]


def test_run_id_derived_from_plan_or_named():
    units = plan_units(SUITE, {"a": gen()}, 1, 0)
    rid = make_run_id(SUITE, units)
    assert rid.startswith("s-") and rid == make_run_id(SUITE, list(reversed(units)))
    assert make_run_id(SUITE, plan_units(SUITE, {"a": gen()}, 2, 0)) != rid
    assert make_run_id(SUITE, units, "mine") == "mine"
    with pytest.raises(ValueError, match="letters, digits"):
        make_run_id(SUITE, units, "../escape")


def test_unknown_generator_option_is_named_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown option 'colour'.*Did you mean 'color'"):
        Fixed(name="a", label="A", model_id="x", options={"colour": "blue"})


def test_requests_carry_control_paths_outside_the_key():
    c = Control(kind="init_image", path="/a/x.png", sha256="abc", params={"strength": 0.5})
    s = Suite(name="s", prompts=(Prompt(id="p", text="t", controls=(c,)),))
    req = plan_units(s, {"a": gen()}, 1, 0)[0].request
    assert req.controls[0]["path"] == "/a/x.png"
    moved = dataclasses.replace(req, controls=({**req.controls[0], "path": "/b/x.png"},))
    assert moved.key() == req.key()
