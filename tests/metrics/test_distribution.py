"""CMMD, FD/KID on DINOv2, precision/recall/density/coverage and per-prompt diversity: each
against an independent computation (the ``prdc`` and ``vendi-score`` packages, or a re-derivation
written here) on random features, and end to end on tiny random DINOv2 / CLIP models built from
config, saved with ``save_pretrained`` and loaded from the folder."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput, reading_notes
from harness.metrics.cmmd import CMMD, cmmd, l2_normalize
from harness.metrics.diversity import Diversity, mean_cosine_distance, vendi_score
from harness.metrics.features import FeatureError, build_extractor
from harness.metrics.fid import FID
from harness.metrics.prdc import PRDC, prdc

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


# -- the formulas on random features ---------------------------------------------------------------


def _cmmd_by_loops(x, y, sigma=10.0, scale=1000.0):
    """The MMD^2 V-statistic written as the three double sums of Gretton et al. (2012), eq. 5."""
    def k(a, b):
        return math.exp(-sum((p - q) ** 2 for p, q in zip(a, b, strict=True)) / (2 * sigma ** 2))

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return scale * (kxx + kyy - 2 * kxy)


def test_cmmd_matches_the_double_sums_and_the_published_constants():
    rng = np.random.default_rng(0)
    x = l2_normalize(rng.standard_normal((20, 8)))
    y = l2_normalize(rng.standard_normal((15, 8)) + 0.5)
    assert cmmd(x, y) == pytest.approx(_cmmd_by_loops(x.tolist(), y.tolist()), rel=1e-9)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-9)
    from harness.metrics.cmmd import rbf_kernel_mean

    # the row blocks that bound memory change nothing
    whole = rbf_kernel_mean(x, y, 0.3, block=1000)
    assert rbf_kernel_mean(x, y, 0.3, block=7) == pytest.approx(whole, rel=1e-12)
    # sigma and scale are settings; other values follow the same formula
    assert cmmd(x, y, sigma=0.5, scale=1.0) == pytest.approx(
        _cmmd_by_loops(x.tolist(), y.tolist(), 0.5, 1.0), rel=1e-9)
    d = CMMD(name="cmmd").describe()
    assert d["sigma"] == 10.0 and d["scale"] == 1000.0 and d["higher_is_better"] is False
    for bad in (0, -1, "ten", True):
        with pytest.raises(ConfigError, match="metrics.cmmd.settings.sigma: must be a number > 0"):
            CMMD(name="cmmd", settings={"sigma": bad})


def test_cmmd_grows_with_a_shift():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((200, 16))
    vals = [cmmd(l2_normalize(base), l2_normalize(rng.standard_normal((200, 16)) + s)) for s in (0, 0.3, 1)]
    assert vals[0] < vals[1] < vals[2]


def test_prdc_matches_the_prdc_package():
    ref = pytest.importorskip("prdc")
    rng = np.random.default_rng(2)
    for n_real, n_fake, d, k, shift in [(100, 100, 16, 5, 0.0), (80, 60, 8, 3, 0.5), (50, 120, 32, 5, 1.0)]:
        real = rng.standard_normal((n_real, d))
        fake = rng.standard_normal((n_fake, d)) * 1.2 + shift
        want = ref.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
        got = prdc(real, fake, k=k)
        for key in ("precision", "recall", "density", "coverage"):
            assert got[key] == pytest.approx(float(want[key]), abs=1e-12), key


def test_prdc_hand_case():
    # Real points on a line 0..9; k=1: each real ball has radius 1 (strict inside).
    real = np.arange(10, dtype=float)[:, None]
    fake = np.array([[0.5], [4.2], [20.0], [21.0]])
    got = prdc(real, fake, k=1)
    assert got["precision"] == 0.5  # 0.5 and 4.2 inside a real ball; 20 and 21 not
    assert got["density"] == pytest.approx((2 + 2) / 4)  # 0.5 in balls of 0 and 1; 4.2 in 4 and 5
    assert got["coverage"] == pytest.approx(4 / 10)  # reals 0, 1 (0.5 away), 4 (0.2), 5 (0.8)
    # fake radii (k=1): 3.7, 3.7, 1, 1 -> reals within: 0..4 of 0.5 (< 3.7), 1..7 of 4.2
    assert got["recall"] == pytest.approx(8 / 10)
    with pytest.raises(ValueError, match="more than 5"):
        prdc(real[:5], fake, k=5)


def test_vendi_matches_the_vendi_score_package():
    vs = pytest.importorskip("vendi_score.vendi")
    rng = np.random.default_rng(3)
    for n, d in [(4, 8), (10, 16), (30, 5)]:
        x = rng.standard_normal((n, d))
        xn = l2_normalize(x)
        want = vs.score_K(xn @ xn.T)
        assert vendi_score(x) == pytest.approx(float(want), rel=1e-9)
        assert vendi_score(x) == pytest.approx(float(vs.score_dual(x, normalize=True)), rel=1e-6)


def test_vendi_and_cosine_distance_hand_cases():
    same = np.ones((4, 3))
    ortho = np.eye(4)
    assert vendi_score(same) == pytest.approx(1.0)
    assert vendi_score(ortho) == pytest.approx(4.0)
    # two identical pairs of orthogonal vectors: 2 distinct samples
    assert vendi_score(np.array([[1, 0], [1, 0], [0, 1], [0, 1]])) == pytest.approx(2.0)
    assert mean_cosine_distance(same) == pytest.approx(0.0)
    assert mean_cosine_distance(ortho) == pytest.approx(1.0)
    x = np.random.default_rng(4).standard_normal((6, 5))
    xn = l2_normalize(x)
    pairs = [1 - xn[i] @ xn[j] for i, j in itertools.combinations(range(6), 2)]
    assert mean_cosine_distance(x) == pytest.approx(np.mean(pairs), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        mean_cosine_distance(x[:1])


# -- tiny random extractors from config, loaded from folders ---------------------------------------


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory):
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, image_size=224)
    folder = tmp_path_factory.mktemp("dinov2-tiny")
    Dinov2Model(cfg).eval().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(1)
    cfg = CLIPConfig(text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                  "intermediate_size": 64, "vocab_size": 100},
                     vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                    "intermediate_size": 64, "image_size": 32, "patch_size": 8},
                     projection_dim=16)
    folder = tmp_path_factory.mktemp("clip-tiny")
    CLIPModel(cfg).eval().save_pretrained(folder)
    return folder


def _noise(seed, size=48, offset=0):
    a = np.random.default_rng(seed).integers(0, 200, (size, size, 3)) + offset
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _folder(tmp_path, name, n, offset=0):
    d = tmp_path / name
    d.mkdir()
    for i in range(n):
        _noise(1000 + i, offset=offset).save(d / f"{i:03d}.png")
    return d


def _items(images, prompts=None, model="m"):
    return [ScoreInput(key=f"k{i}", model=model, image=im,
                       prompt={"id": prompts[i] if prompts else f"p{i}", "text": "t"})
            for i, im in enumerate(images)]



def test_dinov2_extractor_is_the_layernormed_cls_token(tiny_dinov2):
    from transformers import Dinov2Model

    ex = build_extractor("dinov2", weights=str(tiny_dinov2), device="cpu")
    images = [_noise(s) for s in range(3)]
    got = ex.extract(images)
    m = Dinov2Model.from_pretrained(tiny_dinov2).eval()
    x = np.stack([np.asarray(im.resize((224, 224), Image.BICUBIC)) for im in images])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    t = (t - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        want = m(pixel_values=t).last_hidden_state[:, 0].numpy()  # transformers' last_hidden_state is normed
    assert got.shape == (3, 32) and ex.dim == 32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert ex.weights_id.startswith("sha256:")


def test_fd_and_kid_on_dinov2_features_match_the_formulas(tiny_dinov2, tmp_path):
    from harness.metrics.fid import feature_stats, frechet_distance_sqrtm, kid

    ref = _folder(tmp_path, "ref", 6)
    m = FID(name="fd_dinov2", settings={"features": "dinov2", "weights": str(tiny_dinov2),
                                       "reference": str(ref), "kid_subsets": 3, "device": "cpu"})
    m.cache_dir = tmp_path / "cache"
    gen = [_noise(s, offset=40) for s in range(5)]
    value, extra = m.score_set(_items(gen))
    ex = build_extractor("dinov2", weights=str(tiny_dinov2), device="cpu")
    fg = ex.extract(gen)
    fr = ex.extract([Image.open(p) for p in sorted(ref.glob("*.png"))])
    assert value["fid"] == pytest.approx(frechet_distance_sqrtm(*feature_stats(fg), *feature_stats(fr)),
                                         rel=1e-3)
    assert value["kid"] == pytest.approx(kid(fg, fr, subsets=3)[0], rel=1e-3, abs=1e-6)
    d = m.describe()
    assert d["features"] == "dinov2" and "FD-DINOv2" in d["label"]
    assert d["extractor"]["weights_id"].startswith("sha256:")


def test_cmmd_end_to_end_on_a_tiny_clip(tiny_clip, tmp_path):
    from transformers import CLIPModel

    ref = _folder(tmp_path, "ref", 5)
    m = CMMD(name="cmmd", settings={"weights": str(tiny_clip), "reference": str(ref), "device": "cpu"})
    m.cache_dir = tmp_path / "cache"
    gen = [_noise(s, offset=50) for s in range(4)]
    value, extra = m.score_set(_items(gen))
    # independently: CLIP image embeddings at the model's 32 px, OpenAI mean/std, unit length
    model = CLIPModel.from_pretrained(tiny_clip).eval()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]

    def emb(images):
        x = np.stack([np.asarray(im.convert("RGB").resize((32, 32), Image.BICUBIC)) for im in images])
        t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - mean) / std
        with torch.no_grad():
            out = model.get_image_features(pixel_values=t)
        out = out if isinstance(out, torch.Tensor) else out.pooler_output
        return (out / out.norm(dim=-1, keepdim=True)).numpy()

    want = _cmmd_by_loops(emb(gen).tolist(), emb([Image.open(p) for p in sorted(ref.glob("*.png"))]).tolist())
    assert value == pytest.approx(want, rel=1e-3)
    assert extra["n"] == 4 and extra["n_reference"] == 5
    assert "sigma 10" in reading_notes(m.describe()).line("")


def test_prdc_end_to_end_on_tiny_dinov2(tiny_dinov2, tmp_path):
    ref_pkg = pytest.importorskip("prdc")
    ref = _folder(tmp_path, "ref", 8)
    m = PRDC(name="prdc", settings={"weights": str(tiny_dinov2), "reference": str(ref), "nearest_k": 3,
                                    "device": "cpu"})
    m.cache_dir = tmp_path / "cache"
    gen = [_noise(s, offset=30) for s in range(6)]
    value, extra = m.score_set(_items(gen))
    ex = build_extractor("dinov2", weights=str(tiny_dinov2), device="cpu")
    want = ref_pkg.compute_prdc(real_features=ex.extract([Image.open(p) for p in sorted(ref.glob("*.png"))]),
                                fake_features=ex.extract(gen), nearest_k=3)
    for key in value:
        assert value[key] == pytest.approx(float(want[key]), abs=1e-6), key
    assert any("6 generated vs 8 reference" in n for n in extra["notes"])
    small, why = m.score_set(_items(gen[:3]))
    assert small == dict.fromkeys(m.outputs) and "needs more than 3" in why["skipped"]


def test_diversity_per_prompt_on_a_tiny_clip(tiny_clip, tmp_path):
    vs = pytest.importorskip("vendi_score.vendi")
    m = Diversity(name="diversity", settings={"features": "clip_hf", "weights": str(tiny_clip),
                                              "device": "cpu"})
    m.cache_dir = tmp_path / "cache"
    # prompt a: four different images; prompt b: the same image four times; prompt c: one image
    imgs = [_noise(s) for s in range(4)] + [_noise(9)] * 4 + [_noise(20)]
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"]
    value, extra = m.score_set(_items(imgs, prompts))
    ex = build_extractor("clip_hf", weights=str(tiny_clip), device="cpu")
    fa = l2_normalize(ex.extract(imgs[:4]))
    want_vendi = (float(vs.score_K(fa @ fa.T)) + 1.0) / 2  # prompt b: one distinct sample
    want_dist = (np.mean([1 - fa[i] @ fa[j] for i, j in itertools.combinations(range(4), 2)]) + 0.0) / 2
    assert value["vendi"] == pytest.approx(want_vendi, rel=1e-4)
    assert value["cosine_distance"] == pytest.approx(want_dist, rel=1e-4, abs=1e-6)
    assert extra["n_prompts"] == 2 and extra["samples_per_prompt"] == [4]
    assert any("1 prompt(s) with a single sample" in n for n in extra["notes"])
    one, why = m.score_set(_items(imgs[:3]))
    assert one == {"vendi": None, "cosine_distance": None} and "samples=4" in why["skipped"]


def test_toy_clip_diversity_describes_offline():
    d = Diversity(name="diversity_toy",
                  settings={"features": "clip_hf", "weights": "zoo:toy-clip"}).describe()
    assert d["extractor"]["input_size"] == 64 and d["extractor"]["weights_id"].startswith("sha256:")
    assert "reference_sha256" not in d


# -- weights missing offline: the error says what to provide ----------------------------------------


@pytest.mark.parametrize("cls,name,features,hub", [
    (CMMD, "cmmd", "clip_hf", "openai/clip-vit-large-patch14-336"),
    (FID, "fd_dinov2", "dinov2", "facebook/dinov2-large"),
    (Diversity, "diversity", "dinov2", "facebook/dinov2-base"),
])
def test_missing_weights_offline_name_what_to_provide(cls, name, features, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    ref = _folder(tmp_path, "ref", 3)
    settings = {"features": features, "weights": hub, "device": "cpu"}
    if cls is not Diversity:
        settings["reference"] = str(ref)
    m = cls(name=name, settings=settings)
    m.describe()  # describing needs no weights
    items = _items([_noise(1), _noise(2)], ["a", "a"])
    with pytest.raises(FeatureError) as e:
        m.score_set(items)
    msg = str(e.value)
    assert hub in msg and f"metrics.{name}.settings.weights" in msg
    assert "not in the local Hugging Face cache and the hub can't be reached" in msg
    assert "save_pretrained" in msg and "config.json + model.safetensors" in msg


def test_missing_weights_folder_is_named(tmp_path):
    m = CMMD(name="cmmd", settings={"weights": str(tmp_path / "nope"),
                                    "reference": str(_folder(tmp_path, "r", 2))})
    with pytest.raises(FeatureError,
                       match=r"CLIP weights folder .*nope not found \(metrics.cmmd.settings.weights"):
        m.score_set(_items([_noise(1)]))
