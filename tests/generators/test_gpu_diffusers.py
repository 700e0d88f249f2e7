"""DiffusersGenerator on a CUDA device (opt-in: pytest -m gpu). Tiny models: seconds per test."""

import io

import numpy as np
import pytest
from PIL import Image

from harness.generators.diffusers_local import DiffusersGenerator
from harness.types import GenRequest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def make(cache, **options):
    opts = {"build": {"arch": "sd15", "seed": 0, "image_size": 64}, "cache_dir": str(cache)}
    opts.update(options)
    return DiffusersGenerator(name="toy", label="toy", model_id="harness-untrained/tiny-sd15",
                              options=opts, batch_size=8, untrained=True)


def req(seed=0, **kw):
    fields = {"model": "toy", "generator": "diffusers", "model_id": "m", "revision": None,
              "weights": None, "prompt_id": f"p{seed}", "prompt": "a red circle",
              "negative_prompt": None, "sample": 0, "seed": seed, "width": 64, "height": 64,
              "steps": 4, "guidance": 4.0}
    fields.update(kw)
    return GenRequest(**fields)


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png))).astype(int)


def test_auto_picks_cuda_and_half_precision_and_close_frees_memory(tmp_path):
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    g = make(tmp_path)
    res = g.generate([req(0), req(1)])
    assert [r.status for r in res] == ["ok", "ok"]
    assert res[0].device == "cuda"
    assert res[0].dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert res[0].info["gpu"] == torch.cuda.get_device_name(0)
    assert torch.cuda.memory_allocated() > before
    g.close()
    assert torch.cuda.memory_allocated() <= before + (1 << 20)  # everything released


def test_seeded_images_do_not_depend_on_the_device_batch(tmp_path):
    g = make(tmp_path, dtype="float32")
    alone = g.generate([req(7)])[0]
    batch = g.generate([req(1), req(2), req(7)])
    assert np.abs(pixels(alone.image) - pixels(batch[2].image)).mean() < 1
    g.close()


def test_speed_options_on_cuda(tmp_path):
    eager = make(tmp_path, dtype="float16")
    ref = eager.generate([req(3)])[0]
    eager.close()
    fast = make(tmp_path, dtype="float16", channels_last=True, compile=True, vae_slicing=True)
    res = fast.generate([req(3)])[0]
    assert res.status == "ok", res.error
    assert np.abs(pixels(ref.image) - pixels(res.image)).mean() < 3  # same model, other kernels
    fast.close()


def test_controls_and_offload_on_cuda(tmp_path):
    from harness.generators import controls as ctl
    from harness.types import sha256_hex

    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), (200, 50, 50)).save(photo)
    sha = sha256_hex(photo.read_bytes())
    ctl.register_inputs([(sha, str(photo))])
    g = make(tmp_path, cpu_offload="model",
             controlnet={"model_id": "t/cn", "build": {"seed": 0}},
             ip_adapter={"model_id": "t/ip", "build": {"seed": 0}})
    res = g.generate([
        req(1, controls=({"kind": "init_image", "sha256": sha, "params": {"strength": 0.5}},)),
        req(2, controls=({"kind": "control_image", "sha256": sha,
                          "params": {"type": "canny", "conditioning_scale": 1.0}},)),
        req(3, controls=({"kind": "reference_image", "sha256": sha, "params": {"scale": 0.5}},)),
    ])
    assert [r.status for r in res] == ["ok"] * 3, [r.error for r in res]
    g.close()
