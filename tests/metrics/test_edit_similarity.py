"""Edit similarity (DINO / CLIP-I cosine of edit and source) on tiny random transformers models
built from config and loaded by folder, against an independent computation: the bare model's
forward on hand-preprocessed pixels and scikit-learn's cosine similarity."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from harness.errors import ConfigError
from harness.metrics.base import ScoreInput

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.metrics.edit_similarity import EditSimilarity  # noqa: E402

MEAN = {"dinov2": (0.485, 0.456, 0.406), "clip_hf": (0.48145466, 0.4578275, 0.40821073)}
STD = {"dinov2": (0.229, 0.224, 0.225), "clip_hf": (0.26862954, 0.26130258, 0.27577711)}


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """folder and input size of a tiny random Dinov2Model and CLIPModel."""
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    dino = tmp_path_factory.mktemp("dinov2")
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       patch_size=16, image_size=224)
    Dinov2Model(cfg).eval().save_pretrained(dino)
    clip = tmp_path_factory.mktemp("clip")
    CLIPModel(CLIPConfig(text_config={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                      "intermediate_size": 64, "vocab_size": 100},
                         vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                        "intermediate_size": 64, "image_size": 32, "patch_size": 8},
                         projection_dim=16)).eval().save_pretrained(clip)
    return {"dinov2": (dino, 224), "clip_hf": (clip, 32)}


def _bare(features, folder, size, images):
    """Embeddings by hand: PIL bicubic to the input size, mean/std, the model's own forward."""
    from transformers import CLIPModel, Dinov2Model

    x = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)) for im in images])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    t = (t - torch.tensor(MEAN[features])[:, None, None]) / torch.tensor(STD[features])[:, None, None]
    with torch.no_grad():
        if features == "dinov2":
            return Dinov2Model.from_pretrained(folder).eval()(pixel_values=t).pooler_output.numpy()
        m = CLIPModel.from_pretrained(folder).eval()
        v = m.vision_model(pixel_values=t).pooler_output
        return m.visual_projection(v).numpy()


def _scene(tmp_path, seed=0, size=40):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "src.png")
    mask = np.zeros((size, size), np.uint8)
    mask[10:30, 5:25] = 255
    Image.fromarray(mask).save(tmp_path / "region.png")
    prompt = {"id": "p", "text": "make it red", "meta": {"edit_region": "region.png"},
              "controls": [{"kind": "edit_image", "path": str(tmp_path / "src.png"), "sha256": "x",
                            "params": {}}]}
    return src, mask, prompt


def _edits(src, n=3):
    rng = np.random.default_rng(7)
    out = []
    for k in range(n):
        e = src.astype(int).copy()
        e[10:30, 5:25] = rng.integers(0, 256, (20, 20, 3))  # inside the region
        e += rng.integers(-10 * k, 10 * k + 1, e.shape)  # and some noise everywhere
        out.append(Image.fromarray(np.clip(e, 0, 255).astype(np.uint8)))
    out.append(Image.fromarray(src).resize((56, 56), Image.BICUBIC))  # another size
    return out


@pytest.mark.parametrize("features", ["dinov2", "clip_hf"])
def test_cosine_matches_the_bare_models(towers, tmp_path, features):
    from sklearn.metrics.pairwise import cosine_similarity

    folder, size = towers[features]
    src, _, prompt = _scene(tmp_path)
    edits = _edits(src)
    m = EditSimilarity(name="s", settings={"features": features, "weights": str(folder), "device": "cpu",
                                           "batch_size": 2})
    out = m.score_images([ScoreInput(f"k{i}", "m", e, prompt) for i, e in enumerate(edits)])
    srcim = Image.fromarray(src)
    at_source = [e if e.size == srcim.size else e.resize(srcim.size, Image.BICUBIC) for e in edits]
    fe, fs = _bare(features, folder, size, at_source), _bare(features, folder, size, [srcim])
    want = cosine_similarity(fe.astype(np.float64), fs.astype(np.float64))[:, 0]
    assert [v for v, _ in out] == pytest.approx(list(want), abs=1e-5)
    assert len({round(v, 6) for v, _ in out}) == len(edits)  # each edit its own number
    assert out[0][1]["region"] == "whole" and out[0][1]["weights_id"].startswith("sha256:")
    # The untouched source is the same embedding.
    (same, _), = m.score_images([ScoreInput("s", "m", Image.open(tmp_path / "src.png"), prompt)])
    assert same == pytest.approx(1.0, abs=1e-6)


def test_outside_region_greys_the_region_in_both(towers, tmp_path):
    from sklearn.metrics.pairwise import cosine_similarity

    folder, size = towers["clip_hf"]
    src, mask, prompt = _scene(tmp_path, seed=3)
    edits = _edits(src, 2)[:2]
    m = EditSimilarity(name="s", settings={"features": "clip_hf", "weights": str(folder), "device": "cpu",
                                           "region": "outside"})
    out = m.score_images([ScoreInput(f"k{i}", "m", e, prompt) for i, e in enumerate(edits)])

    def grey(a):
        a = np.asarray(a).copy()
        a[mask >= 128] = 128
        return Image.fromarray(a)

    fe = _bare("clip_hf", folder, size, [grey(e) for e in edits])
    fs = _bare("clip_hf", folder, size, [grey(src)])
    want = cosine_similarity(fe.astype(np.float64), fs.astype(np.float64))[:, 0]
    assert [v for v, _ in out] == pytest.approx(list(want), abs=1e-5)
    assert out[0][1]["region"] == "outside"
    whole = EditSimilarity(name="s", settings={"features": "clip_hf", "weights": str(folder),
                                               "device": "cpu"})
    assert whole.settings_hash() != m.settings_hash()
    # The change lies inside the region only for the first edit: outside, only noise differs.
    assert out[0][0] == pytest.approx(1.0, abs=1e-6)


def test_skips_say_why_and_settings_are_checked(tmp_path):
    _, _, prompt = _scene(tmp_path)
    m = EditSimilarity(name="edit_similarity")
    img = Image.new("RGB", (40, 40))
    (v, e), (v2, e2) = m.score_images([ScoreInput("a", "m", img, prompt),
                                       ScoreInput("b", "m", img, {"id": "q", "text": "a cat"})])
    assert v is None and "metrics.edit_similarity.settings.weights" in e["skipped"]
    assert v2 is None and "no edit_image" in e2["skipped"]
    assert m.describe()["extractor"] is None and "how_to_read" in m.describe()
    with pytest.raises(ConfigError, match="Did you mean 'dinov2'"):
        EditSimilarity(name="s", settings={"features": "dinov"})
    with pytest.raises(ConfigError, match="region"):
        EditSimilarity(name="s", settings={"region": "inside"})
    # A missing weights folder is a recorded skip naming the setting, not a crash of the stage.
    bad = EditSimilarity(name="s", settings={"weights": str(tmp_path / "nope")})
    (v3, e3), = bad.score_images([ScoreInput("a", "m", img, prompt)])
    assert v3 is None and "metrics.s.settings.weights" in e3["skipped"]
    with pytest.raises(ConfigError, match="metrics.s.settings.weights"):
        bad.preflight()  # and a run stops before generating anything
    m.preflight()  # no weights: nothing to check, every value a recorded skip


def test_toy_config_runs_offline_on_the_zoo_clip(tmp_path):
    from harness.toyworld.paths import resolve_path

    if not resolve_path("zoo:toy-clip").is_dir():
        pytest.skip("zoo toy-clip not present")
    src, _, prompt = _scene(tmp_path, seed=5)
    m = EditSimilarity(name="edit_similarity_toy", settings={"features": "clip_hf", "weights": "zoo:toy-clip",
                                                             "device": "cpu"})
    (v, e), = m.score_images([ScoreInput("a", "m", _edits(src, 1)[0], prompt)])
    assert -1 <= v < 1 and e["weights_id"].startswith("sha256:")
