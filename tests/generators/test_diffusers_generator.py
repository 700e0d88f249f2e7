"""DiffusersGenerator on tiny random-weight pipelines built offline (CPU, a few seconds)."""

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from harness.config import ModelConfig, check_section
from harness.errors import ConfigError
from harness.generators.diffusers_loading import folder_fingerprint
from harness.generators.diffusers_local import DiffusersGenerator
from harness.types import GenRequest

REPO = Path(__file__).resolve().parents[2]
MODELS_CONF = REPO / "harness" / "conf" / "models"
STEPS = 4  # enough to exercise the scheduler loop; the configs' own step counts are slower


def make(cache, arch="sd15", **options):
    opts = {"build": {"arch": arch, "seed": 0, "image_size": 64}, "cache_dir": str(cache),
            "device": "cpu"}
    opts.update(options)
    return DiffusersGenerator(name=f"toy_{arch}", label="toy", model_id=f"harness-untrained/tiny-{arch}",
                              family=arch, options=opts, batch_size=8, untrained=True)


def req(seed=0, prompt="a red circle", **kw):
    fields = {"model": "toy", "generator": "diffusers", "model_id": "m", "revision": None,
              "weights": None, "prompt_id": f"p{seed}", "prompt": prompt, "negative_prompt": None,
              "sample": 0, "seed": seed, "width": 64, "height": 64, "steps": STEPS,
              "guidance": 4.0}
    fields.update(kw)
    return GenRequest(**fields)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def gens(cache):
    out = {arch: make(cache, arch) for arch in ("sd15", "sd3")}
    yield out
    for g in out.values():
        g.close()


def test_builds_on_first_use_and_fingerprints_the_folder(cache, gens):
    g = gens["sd15"]
    folder = cache / "harness-untrained--tiny-sd15"
    assert g.weights_path() == folder
    fp = g.fingerprint()
    assert (folder / "model_index.json").is_file()
    assert fp == folder_fingerprint(folder) and len(fp) == 64
    assert make(cache).fingerprint() == fp  # a second instance finds the same folder
    assert make(cache, build={"arch": "sd15", "seed": 0, "image_size": 64}).fingerprint() == fp


def test_construction_and_fingerprint_do_not_import_torch(cache, gens):
    expected = gens["sd3"].fingerprint()  # builds the folder if this test runs alone
    code = (
        "import json, sys\n"
        "from harness.generators.diffusers_local import DiffusersGenerator\n"
        "import harness.generators.tiny\n"
        f"g = DiffusersGenerator(name='toy_dit', label='t', model_id='harness-untrained/tiny-sd3',"
        f" options={{'build': {{'arch': 'sd3'}}, 'cache_dir': {str(cache)!r}}})\n"
        "hub = DiffusersGenerator(name='hub', label='h', model_id='org/some-model')\n"
        "print(json.dumps([g.fingerprint(), hub.fingerprint(), 'torch' in sys.modules,"
        " 'diffusers' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [expected, None, False, False]


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_generates_pngs_of_the_requested_size(arch, gens):
    g = gens[arch]
    res = g.generate([req(0), req(1, width=96, height=64)])
    assert [r.status for r in res] == ["ok", "ok"]
    im = Image.open(io.BytesIO(res[0].image))
    assert im.format == "PNG" and im.size == (64, 64) and im.mode == "RGB"
    assert Image.open(io.BytesIO(res[1].image)).size == (96, 64)
    assert not im.info  # no metadata chunks
    r = res[0]
    assert r.device == "cpu" and r.dtype == "float32" and r.latency_s > 0
    assert r.info["batch_size"] == 1 and r.info["steps"] == STEPS  # two sizes: two calls
    assert set(r.info["versions"]) == {"torch", "diffusers", "transformers"}
    assert r.info["scheduler"] == ("DDIMScheduler" if arch == "sd15" else "FlowMatchEulerDiscreteScheduler")


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_same_seed_same_bytes_other_seed_differs(arch, gens):
    g = gens[arch]
    a, b = g.generate([req(3)]), g.generate([req(3)])
    assert a[0].image == b[0].image
    assert g.generate([req(4)])[0].image != a[0].image


@pytest.mark.parametrize("arch", ["sd15", "sd3"])
def test_an_image_does_not_depend_on_its_batch(arch, gens):
    """Seed 7 alone vs at position 2 of a batch of 3 with other prompts and seeds.

    Each image's noise comes from its own generator, so only float rounding of batched CPU
    kernels can differ: measured at most 1 level in a few pixel values of some images.
    """
    g = gens[arch]
    alone = g.generate([req(7)])[0]
    batch = g.generate([req(1, "a blue square"), req(2, "two cats"), req(7)])
    assert batch[2].info["batch_size"] == 3
    assert np.abs(pixels(alone.image) - pixels(batch[2].image)).max() <= 1
    assert np.abs(pixels(batch[0].image) - pixels(batch[2].image)).max() > 1


def test_mixed_settings_split_into_sub_batches_in_order(gens):
    g = gens["sd15"]
    reqs = [req(1, steps=2), req(2, steps=3), req(3, steps=2), req(4, steps=3, guidance=2.0)]
    res = g.generate(reqs)
    assert [r.info["steps"] for r in res] == [2, 3, 2, 3]
    assert [r.info["batch_size"] for r in res] == [2, 1, 2, 1]
    single = g.generate([req(3, steps=2)])[0]
    assert np.abs(pixels(single.image) - pixels(res[2].image)).max() <= 1


def test_negative_prompts_per_request(gens):
    g = gens["sd15"]
    plain = g.generate([req(5)])[0].image
    res = g.generate([req(5), req(5, negative_prompt="blurry")])
    assert np.abs(pixels(res[0].image) - pixels(plain)).max() <= 1  # None means ""
    assert np.abs(pixels(res[1].image) - pixels(plain)).max() > 1


def test_scheduler_override_and_bad_name(gens):
    g = gens["sd15"]
    default = g.generate([req(0)])[0]
    euler = g.generate([req(0, scheduler="EulerDiscreteScheduler")])[0]
    assert euler.status == "ok" and euler.info["scheduler"] == "EulerDiscreteScheduler"
    assert euler.image != default.image
    assert g.generate([req(0)])[0].image == default.image  # the default scheduler comes back
    with pytest.raises(ConfigError, match=r"'EulerDiscreteSchedular'.*Did you mean "
                                          r"'EulerDiscreteScheduler'.*Valid: .*DDIMScheduler"):
        g.generate([req(0), req(1, scheduler="EulerDiscreteSchedular")])
    with pytest.raises(ConfigError, match=r"Valid: FlowMatchEulerDiscreteScheduler\."):
        gens["sd3"].generate([req(0, scheduler="DDIMScheduler")])


def test_params_go_to_the_pipeline_if_it_takes_them(gens):
    g = gens["sd15"]
    res = g.generate([req(0), req(0, params={"guidance_rescale": 0.7})])
    assert res[0].image != res[1].image
    with pytest.raises(ConfigError, match=r"no argument 'guidance_rescal'.*'guidance_rescale'"):
        g.generate([req(0, params={"guidance_rescal": 0.7})])
    with pytest.raises(ConfigError, match=r"'num_inference_steps' is set by the harness; use params.steps"):
        g.generate([req(0, params={"num_inference_steps": 3})])
    assert gens["sd3"].generate([req(0, params={"max_sequence_length": 32})])[0].status == "ok"


def test_a_failing_batch_returns_errors_not_an_exception(gens):
    res = gens["sd15"].generate([req(0, width=60), req(1, width=60)])  # not a multiple of 8
    assert [r.status for r in res] == ["error", "error"]
    assert "divisible by 8" in res[0].error and res[0].image is None


def test_unknown_control_inputs_are_refused_clearly(gens):
    # Control inputs themselves are covered in test_controls.py.
    r = req(0, prompt_id="edit-1", controls=({"kind": "init_image", "sha256": "ab", "params": {}},))
    with pytest.raises(ConfigError, match=r"prompt 'edit-1'.*init_image.*no control input file"):
        gens["sd15"].generate([req(1), r])


def test_local_folder_model_id(cache, gens, tmp_path):
    folder = gens["sd3"].weights_path()
    gens["sd3"].fingerprint()
    g = DiffusersGenerator(name="mine", label="mine", model_id=str(folder),
                           options={"device": "cpu", "cache_dir": str(tmp_path)})
    assert g.weights_path() == folder and g.fingerprint() == folder_fingerprint(folder)
    assert g.generate([req(2)])[0].image == gens["sd3"].generate([req(2)])[0].image
    g.close()
    assert g._pipe is None
    assert g.generate([req(2)])[0].status == "ok"  # loads again after close
    g.close()
    with pytest.raises(ConfigError, match="local folder '/no/such/folder' does not exist"):
        DiffusersGenerator(name="x", label="x", model_id="/no/such/folder").fingerprint()
    with pytest.raises(ConfigError, match="neither an existing local folder nor a valid hub id"):
        DiffusersGenerator(name="x", label="x", model_id="not a model id").load()


def _no_dns(host, *args, **kwargs):
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


@pytest.mark.parametrize("offline", [False, True])
def test_uncached_hub_id_fails_fast_and_says_what_to_do(offline, tmp_path, monkeypatch):
    # No DNS, as on a machine without internet (and the same on one with it).
    monkeypatch.setattr(socket, "getaddrinfo", _no_dns)
    g = DiffusersGenerator(name="sdxl", label="SDXL", model_id="someorg/not-cached-model",
                           options={"cache_dir": str(tmp_path), "local_files_only": offline})
    assert g.fingerprint() is None
    start = time.perf_counter()
    with pytest.raises(RuntimeError) as info:
        g.load()
    assert time.perf_counter() - start < 10
    msg = str(info.value)
    assert "'someorg/not-cached-model'" in msg and "not in the local cache" in msg
    assert ("local_files_only" if offline else "hub is unreachable (offline)") in msg
    assert "models.sdxl.model_id=/path/to/local/folder" in msg
    assert f"hf download someorg/not-cached-model --cache-dir {tmp_path}" in msg


@pytest.mark.parametrize("options, message", [
    ({"device": "gpu"}, "options.device: 'gpu' is not a device"),
    ({"dtype": "fp8"}, "options.dtype: unknown dtype 'fp8'"),
    ({"build": {"arch": "sdxl2"}}, "options.build.arch: 'sdxl2'.*Did you mean 'sdxl'"),
    ({"cpu_offload": "layers"}, "options.cpu_offload: expected true, false, model or sequential"),
    ({"controlnet": {"type": "canny"}}, "options.controlnet.model_id: give a hub id"),
    ({"controlnet": {"model_id": "x/y", "typ": "canny"}}, "unknown key 'typ'.*'type'"),
    ({"controlnet": {"model_id": "x/y", "type": "edges"}}, "options.controlnet.type: 'edges'"),
    ({"ip_adapter": {"model_id": "x/y", "build": {"seed": 0}}}, "only models built from a recipe"),
    ({"build": {"arch": "sd15", "sed": 1}}, "unknown key 'sed'.*Did you mean 'seed'"),
    ({"torch_threads": 0}, "options.torch_threads"),
    ({"devcie": "cpu"}, "unknown option 'devcie'.*Did you mean 'device'"),
])
def test_bad_options_fail_at_construction(options, message):
    with pytest.raises(ConfigError, match=message):
        DiffusersGenerator(name="m", label="m", model_id="org/m", options=options)


@pytest.mark.parametrize("stem, arch", [("toy_unet", "sd15"), ("toy_dit", "sd3")])
def test_model_configs(stem, arch, tmp_path):
    from hydra.utils import instantiate

    path = MODELS_CONF / f"{stem}.yaml"
    assert path.read_text().splitlines()[0] == f"# @package models.{stem}"
    cfg = check_section(ModelConfig, OmegaConf.load(path), f"models.{stem}")
    assert cfg.untrained and cfg.options.build.arch == arch and cfg.family == arch
    g = instantiate(cfg, name=stem, _convert_="all")
    assert isinstance(g, DiffusersGenerator) and g.batch_size == 8
    assert g.options.build == {"arch": arch, "seed": 0, "image_size": 64}
    assert g.options.device == "auto" and g.options.dtype == "auto"
    g.options.cache_dir = str(tmp_path)
    assert g.weights_path() == tmp_path / cfg.model_id.replace("/", "--")


@pytest.mark.parametrize("arch, pipeline", [("sdxl", "StableDiffusionXLPipeline"),
                                            ("flux", "FluxPipeline")])
def test_other_families_run_through_the_same_code(arch, pipeline, cache):
    g = make(cache, arch)
    res = g.generate([req(0, steps=2), req(1, steps=2, negative_prompt="blurry")])
    assert [r.status for r in res] == ["ok", "ok"], res[0].error
    assert type(g._pipe).__name__ == pipeline
    assert Image.open(io.BytesIO(res[0].image)).size == (64, 64)
    g.close()


def test_speed_options_load_on_cpu(cache, gens):
    import torch

    g = make(cache, "sd15", channels_last=True, attention="native")
    assert g.generate([req(3)])[0].image is not None
    assert g._pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    g.close()
    with pytest.raises(ConfigError, match="options.attention: cannot use 'no-such-kernel'"):
        make(cache, "sd15", attention="no-such-kernel").load()


@pytest.mark.slow
def test_compile_option_matches_eager_on_cpu(tmp_path):
    """torch.compile of the U-Net (about a minute to compile on 2 cores): same image within a level."""
    import io

    import numpy as np
    from PIL import Image

    from harness.generators.diffusers_local import DiffusersGenerator
    from harness.runner.plan import plan_units
    from harness.types import Prompt, Suite

    suite = Suite(name="s", prompts=(Prompt(id="p", text="a red circle"),))
    images = []
    for compiled in (False, True):
        g = DiffusersGenerator(
            name="toy", label="t", model_id="harness-untrained/tiny-sd15",
            params={"width": 64, "height": 64, "steps": 4, "guidance": 4.0},
            options={"build": {"arch": "sd15", "seed": 0, "image_size": 64}, "compile": compiled,
                     "cache_dir": str(tmp_path)})
        res = g.generate([plan_units(suite, {"toy": g}, 1, 0)[0].request])[0]
        assert res.status == "ok", res.error
        images.append(np.asarray(Image.open(io.BytesIO(res.image))).astype(int))
        g.close()
    assert np.abs(images[0] - images[1]).max() <= 1
