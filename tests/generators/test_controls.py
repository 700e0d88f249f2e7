"""Control inputs through DiffusersGenerator on tiny pipelines: img2img, inpainting, ControlNet,
IP-Adapter and LoRA each shown to act, batched, split by mode, and keyed."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from harness.errors import ConfigError
from harness.generators import controls as ctl
from harness.generators.diffusers_loading import folder_fingerprint
from harness.generators.diffusers_local import DiffusersGenerator
from harness.generators.tiny import (
    build_tiny_controlnet,
    build_tiny_ip_adapter,
    build_tiny_lora,
    build_tiny_pipeline,
)
from harness.types import GenRequest, sha256_hex

SUITE_DIR = Path(__file__).resolve().parents[2] / "harness" / "data" / "suites"


def pixels(png_or_image) -> np.ndarray:
    im = Image.open(io.BytesIO(png_or_image)) if isinstance(png_or_image, bytes) else png_or_image
    return np.asarray(im.convert("RGB")).astype(int)


def mad(a, b) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A photo, a mask (white centre square) and a reference image, registered by hash."""
    d = tmp_path_factory.mktemp("inputs")
    photo = Image.open(SUITE_DIR / "controls" / "cat.png").convert("RGB").resize((64, 64))
    photo.save(d / "photo.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((16, 16, 47, 47), fill=255)
    mask.save(d / "mask.png")
    Image.open(SUITE_DIR / "controls" / "coffee.png").convert("RGB").save(d / "ref.png")
    Image.open(SUITE_DIR / "controls" / "depth-sphere.png").save(d / "depth.png")
    out = {}
    for name in ("photo", "mask", "ref", "depth"):
        path = d / f"{name}.png"
        out[name] = sha256_hex(path.read_bytes())
        ctl.register_inputs([(out[name], str(path))])
    out["dir"] = d
    return out


def _trained_like_vae(folder: Path) -> None:
    """Give the tiny VAE a trained VAE's statistics: a narrow posterior (random weights give a
    posterior std near 1, so every encode is mostly noise) and a scaling factor that makes the
    scaled latents unit-variance. Without this no img2img could stay near its input."""
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(folder / "vae"), local_files_only=True)
    n = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[n:] = 0
        vae.quant_conv.bias[n:] = -30.0  # log-variance: std e^-15
        photo = Image.open(SUITE_DIR / "controls" / "cat.png").convert("RGB").resize((64, 64))
        x = torch.from_numpy(pixels(photo)).permute(2, 0, 1)[None].float() / 127.5 - 1
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=round(1.0 / std, 4))
    vae.save_pretrained(str(folder / "vae"), safe_serialization=True)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    base = build_tiny_pipeline("sd15", root / "base")
    _trained_like_vae(base)
    return {"base": base, "cn": build_tiny_controlnet(base, root / "cn"),
            "ip": build_tiny_ip_adapter(base, root / "ip")}


@pytest.fixture(scope="module")
def gen(folders):
    g = DiffusersGenerator(
        name="toy", label="toy", model_id=str(folders["base"]), family="sd15",
        options={"device": "cpu", "controlnet": {"model_id": str(folders["cn"]), "type": "canny"},
                 "ip_adapter": {"model_id": str(folders["ip"])}},
        batch_size=8, untrained=True)
    yield g
    g.close()


def req(seed=0, controls=(), steps=4, params=None, **kw):
    fields = {"model": "toy", "generator": "diffusers", "model_id": "m", "revision": None,
              "weights": None, "prompt_id": f"p{seed}", "prompt": "a cat", "negative_prompt": None,
              "sample": 0, "seed": seed, "width": 64, "height": 64, "steps": steps,
              "guidance": 4.0, "params": params or {}, "controls": tuple(controls)}
    fields.update(kw)
    return GenRequest(**fields)


def c(kind, sha, **params):
    return {"kind": kind, "sha256": sha, "params": params}


def roundtrip(gen, path) -> Image.Image:
    """The init image through the tiny (random) VAE: what img2img starts from. Random VAE
    weights cannot reproduce a photo, so "close to the init image" is measured against this."""
    import torch

    pipe = gen._pipe
    x = pipe.image_processor.preprocess(Image.open(path).convert("RGB"))
    with torch.no_grad():
        lat = pipe.vae.encode(x).latent_dist.mean
        y = pipe.vae.decode(lat).sample
    return pipe.image_processor.postprocess(y, output_type="pil")[0]


# -- canny, inputs, modes (no torch) --------------------------------------------------------------


def test_canny_finds_a_square_outline_and_follows_its_thresholds():
    im = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(im).rectangle((16, 16, 47, 47), fill="white")
    e = pixels(ctl.canny(im))[..., 0] > 0
    assert e[16:48, 15:17].any(axis=1).all() and e[15:17, 16:48].any(axis=0).all()  # outline
    assert not e[20:44, 20:44].any() and not e[:10].any()  # nothing inside or far outside
    faint = Image.new("RGB", (64, 64), (100, 100, 100))
    ImageDraw.Draw(faint).rectangle((16, 16, 47, 47), fill=(130, 130, 130))
    assert not (pixels(ctl.canny(faint))[..., 0] > 0).any()  # 30 levels: below 100/200
    assert (pixels(ctl.canny(faint, 20, 40))[..., 0] > 0).any()


def test_canny_agrees_with_opencv():
    cv2 = pytest.importorskip("cv2")
    im = Image.open(SUITE_DIR / "controls" / "cat.png").convert("RGB")
    ours = pixels(ctl.canny(im, 100, 200))[..., 0] > 0
    ref = cv2.Canny(np.asarray(im.convert("L")), 100, 200) > 0
    assert (ours & ref).sum() / (ours | ref).sum() > 0.9  # measured 0.98 on a 256 px photo


def test_inputs_are_found_by_hash_and_unknown_ones_say_where_to_look(inputs, monkeypatch):
    assert ctl.find_input(inputs["photo"]) == inputs["dir"] / "photo.png"
    cat = SUITE_DIR / "controls" / "cat.png"
    assert ctl.find_input(sha256_hex(cat.read_bytes())) == cat  # built-in suites are searched
    monkeypatch.setenv("HARNESS_CONTROL_DIRS", "/no/such/dir")
    with pytest.raises(FileNotFoundError, match="HARNESS_CONTROL_DIRS"):
        ctl.find_input("0" * 64)


def test_modes_and_settings_are_checked():
    assert ctl.request_mode([c("init_image", "a")]) == ("img2img", False, False)
    assert ctl.request_mode([c("init_image", "a"), c("mask", "b"), c("control_image", "c")]) \
        == ("inpaint", True, False)
    assert ctl.request_mode([c("reference_image", "a")]) == ("text2img", False, True)
    with pytest.raises(ValueError, match="mask needs an init_image"):
        ctl.request_mode([c("mask", "a")])
    assert ctl.check_params("init_image", {"strength": 0.5}) == []
    assert "strength must be in (0, 1]" in ctl.check_params("init_image", {"strength": 1.5})[0]
    assert "takes no setting 'scale'" in ctl.check_params("init_image", {"scale": 1})[0]
    assert "type 'edge'" in ctl.check_params("control_image", {"type": "edge"})[0]


# -- each control acts ----------------------------------------------------------------------------


def test_img2img_strength(gen, inputs):
    light, strong = gen.generate([
        req(1, [c("init_image", inputs["photo"], strength=0.1)], steps=20),
        req(1, [c("init_image", inputs["photo"], strength=0.9)], steps=20)])
    assert light.info["pipeline"] == "StableDiffusionImg2ImgPipeline"
    ref = roundtrip(gen, inputs["dir"] / "photo.png")
    # Random VAE: the reference is the photo as the VAE gives it back (no denoising at all).
    # Measured: 15 at strength 0.1 (2 of 20 steps), 42 at 0.9; 46 between the VAE's
    # round trip and the photo itself (random decoder weights).
    near, far = mad(light.image, ref), mad(strong.image, ref)
    assert near < 22 and far > 35 and far > 2.5 * near, (near, far)


def test_inpainting_keeps_pixels_outside_the_mask(gen, inputs):
    keep, plain = gen.generate([
        req(2, [c("init_image", inputs["photo"], strength=1.0),
                c("mask", inputs["mask"], overlay=True)]),
        req(2, [c("init_image", inputs["photo"], strength=1.0), c("mask", inputs["mask"])])])
    assert keep.info["pipeline"] == "StableDiffusionInpaintPipeline"
    photo = pixels(Image.open(inputs["dir"] / "photo.png"))
    out = np.zeros((64, 64), bool)
    out[:16], out[48:], out[:, :16], out[:, 48:] = True, True, True, True
    got = pixels(keep.image)
    assert np.abs(got - photo)[out].max() == 0  # overlay: the original pixels, exactly
    assert np.abs(got - photo)[~out].mean() > 20  # the masked centre is repainted
    # Without overlay the outside comes back through the VAE: near its round trip, away from
    # the mask's edge, and much nearer than the repainted inside.
    ref, got = pixels(roundtrip(gen, inputs["dir"] / "photo.png")), pixels(plain.image)
    far_out = np.zeros((64, 64), bool)
    far_out[:6], far_out[58:] = True, True
    outside, inside = np.abs(got - ref)[far_out].mean(), np.abs(got - ref)[~out].mean()
    assert outside < 16 and inside > 3 * outside, (outside, inside)  # measured 12 and 66


def test_controlnet_scale_zero_is_text_to_image_and_a_map_steers(gen, inputs):
    plain = gen.generate([req(3)])[0]
    zero, one, depth = gen.generate([
        req(3, [c("control_image", inputs["photo"], type="canny", conditioning_scale=0.0)]),
        req(3, [c("control_image", inputs["photo"], type="canny", conditioning_scale=1.0,
                  low_threshold=50, high_threshold=150)]),
        req(3, [c("control_image", inputs["depth"], type="depth", conditioning_scale=1.0)])])
    assert one.info["pipeline"] == "StableDiffusionControlNetPipeline"
    assert one.info["canny"] == {"low_threshold": 50, "high_threshold": 150}
    assert np.abs(pixels(zero.image) - pixels(plain.image)).max() <= 1
    assert mad(one.image, plain.image) > 2 and mad(depth.image, one.image) > 2


def test_ip_adapter_scale_and_unload(gen, inputs):
    plain = gen.generate([req(4)])[0]
    zero, one = gen.generate([req(4, [c("reference_image", inputs["ref"], scale=0.0)]),
                              req(4, [c("reference_image", inputs["ref"], scale=1.0)])])
    assert gen._adapters.ip_loaded and gen._pipe.image_encoder is not None
    assert np.abs(pixels(zero.image) - pixels(plain.image)).max() <= 1
    assert mad(one.image, zero.image) > 2
    # A prompt without a reference image after it: the adapter is unloaded, nothing lingers.
    again = gen.generate([req(4)])[0]
    assert not gen._adapters.ip_loaded and again.image == plain.image


def test_ip_adapter_batches_only_requests_sharing_a_reference(gen, inputs):
    """Samples of one prompt (same reference) share a call and match a lone run; different
    references run in separate calls (in one SD call they were seen to blend)."""
    def ref(seed, name):
        return req(seed, [c("reference_image", inputs[name], scale=1.0)])

    a, b = gen.generate([ref(5, "ref")])[0], gen.generate([ref(5, "photo")])[0]
    batch = gen.generate([ref(5, "photo"), ref(5, "ref"), ref(6, "ref")])
    assert [r.info["batch_size"] for r in batch] == [1, 2, 2]
    assert mad(a.image, batch[1].image) < 0.1 and mad(b.image, batch[0].image) < 0.1
    assert mad(a.image, b.image) > 2


def test_lora_scale_zero_is_no_lora_and_its_file_is_in_the_key(gen, tmp_path):
    lora_dir = build_tiny_lora(gen.weights_path(), tmp_path / "lora")
    file = lora_dir / "pytorch_lora_weights.safetensors"
    plain = gen.generate([req(7)])[0]

    def with_lora(scale):
        g = DiffusersGenerator(name="toy", label="t", model_id=str(gen.weights_path()),
                               options={"device": "cpu"},
                               params={"extra": {"loras": [{"path_or_id": str(lora_dir),
                                                            "scale": scale}]}})
        return g, g.request_params()

    g0, p0 = with_lora(0.0)
    g1, p1 = with_lora(1.0)
    assert p0["loras"][0]["sha256"] == sha256_hex(file.read_bytes())
    assert p0["loras"][0]["scale"] == 0.0 and req(7, params=p0).key() != req(7, params=p1).key()
    zero = g0.generate([req(7, params=p0)])[0]
    one = g0.generate([req(7, params=p1)])[0]  # switch scale on the loaded adapter
    off = g0.generate([req(7)])[0]  # no loras: disabled
    assert np.abs(pixels(zero.image) - pixels(plain.image)).max() <= 1
    assert mad(one.image, plain.image) > 2
    assert np.abs(pixels(off.image) - pixels(plain.image)).max() <= 1
    assert g1.generate([req(7, params=p1)])[0].image == one.image
    g0.close()
    g1.close()


# -- batching, keys, errors -----------------------------------------------------------------------


def test_mixed_modes_split_into_sub_batches_in_order(gen, inputs):
    i2i = [c("init_image", inputs["photo"], strength=0.5)]
    reqs = [req(1), req(2, i2i), req(3), req(4, i2i), req(5, i2i, prompt="a dog")]
    res = gen.generate(reqs)
    assert [r.info["batch_size"] for r in res] == [2, 3, 2, 3, 3]
    assert [r.info.get("pipeline") for r in res] == [None, "StableDiffusionImg2ImgPipeline"] * 2 \
        + ["StableDiffusionImg2ImgPipeline"]
    alone = gen.generate([req(4, i2i)])[0]
    assert np.abs(pixels(alone.image) - pixels(res[3].image)).max() <= 1


def test_adapter_identity_is_in_every_request(gen, folders, tmp_path):
    p = gen.request_params()
    assert set(p["adapters"]) == {"controlnet", "ip_adapter"}
    assert p["adapters"]["controlnet"] == {"model_id": "cn", "type": "canny",
                                           "weights": folder_fingerprint(folders["cn"])}
    # Built adapters: the recipe's folder, fingerprinted; another seed, another identity.
    def built(seed):
        return DiffusersGenerator(
            name="toy", label="toy", model_id="harness-untrained/tiny-sd15",
            options={"build": {"arch": "sd15", "seed": 0, "image_size": 64},
                     "cache_dir": str(tmp_path), "device": "cpu",
                     "controlnet": {"model_id": f"t/cn{seed}", "build": {"seed": seed}}})
    a, b = built(0).request_params(), built(1).request_params()
    assert a["adapters"]["controlnet"]["model_id"] == "t/cn0"
    assert a["adapters"]["controlnet"]["weights"] != b["adapters"]["controlnet"]["weights"]
    with pytest.raises(ConfigError, match="params.extra.adapters: set by the harness"):
        DiffusersGenerator(name="x", label="x", model_id="org/m",
                           params={"extra": {"adapters": {}}}).request_params()


def test_missing_adapter_or_input_fails_before_any_image(gen, inputs, tmp_path):
    g = DiffusersGenerator(name="plain", label="p", model_id=str(gen.weights_path()),
                           options={"device": "cpu"})
    with pytest.raises(ConfigError, match=r"control_image but the model has no ControlNet.*"
                                          r"options.controlnet"):
        g.generate([req(1), req(2, [c("control_image", inputs["photo"])])])
    with pytest.raises(ConfigError, match="reference_image but the model has no IP-Adapter"):
        g.generate([req(2, [c("reference_image", inputs["ref"])])])
    with pytest.raises(ConfigError, match="no control input file with sha256"):
        g.generate([req(2, [c("init_image", "f" * 64)])])
    with pytest.raises(ConfigError, match="strength must be in"):
        g.generate([req(2, [c("init_image", inputs["photo"], strength=2)])])
    g.close()


def test_out_of_memory_halves_the_batch(gen, monkeypatch):
    from harness.generators import diffusers_local as dl

    real = dl.DiffusersGenerator._run
    sizes = []

    def run(self, reqs):
        sizes.append(len(reqs))
        if len(reqs) > 2:
            raise dl.OutOfMemory("OutOfMemoryError: CUDA out of memory")
        return real(self, reqs)

    monkeypatch.setattr(dl.DiffusersGenerator, "_run", run)
    res = gen.generate([req(i) for i in range(5)])
    assert sizes == [5, 3, 2, 1, 2]
    assert [r.status for r in res] == ["ok"] * 5
    assert [r.info["batch_size"] for r in res] == [2, 2, 1, 2, 2]
    assert [r.info["oom_retries"] for r in res] == [2, 2, 2, 1, 1]
    one = dl.DiffusersGenerator._run_halving.__get__(gen)
    monkeypatch.setattr(dl.DiffusersGenerator, "_run",
                        lambda self, reqs: (_ for _ in ()).throw(dl.OutOfMemory("OOM")))
    r = one([req(1)])[0]
    assert r.status == "error" and "batch 1" in r.error
