"""Stores for the rating app tests: a synthetic one (fast, with refusals and tell-tale metadata)
and a small real run of the two tiny toy models."""

import io

import pytest

from harness.store import Store
from harness.types import GenRequest, GenResult, Prompt

MODELS = ("alpha", "beta", "gamma")
PROMPTS = ("p1", "p2", "p3")


def tagged_png(model: str, colour: tuple[int, int, int], size=(48, 32)) -> bytes:
    """A PNG that names its model in a text chunk and in EXIF, as some generators' files do."""
    from PIL import Image, PngImagePlugin

    img = Image.new("RGB", size, colour)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"model: {model}")
    exif = Image.Exif()
    exif[0x0131] = model  # Software
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info, exif=exif)
    return buf.getvalue()


def make_synthetic_store(root, *, samples: int = 2, refuse=(("gamma", "p1"),)) -> Store:
    """Run 'syn': three models x three prompts x ``samples``; gamma refuses p1 (both samples)."""
    s = Store(root)
    units = []
    for mi, model in enumerate(MODELS):
        for prompt_id in PROMPTS:
            for sample in range(samples):
                r = GenRequest(model=model, generator="fake", model_id=f"{model}-id", revision=None,
                               weights=None, prompt_id=prompt_id, prompt=f"text of {prompt_id}",
                               negative_prompt=None, sample=sample, seed=sample, width=48, height=32)
                if (model, prompt_id) in refuse:
                    res = GenResult("refused", refusal_reason="content filter")
                else:
                    res = GenResult("ok", image=tagged_png(model, (40 * mi, 10 * sample, 200)))
                s.put_result(r, r.key(), res)
                units.append((r.key(), model, prompt_id, sample))
    prompts = [Prompt(id=p, text=f"text of {p}") for p in PROMPTS]
    s.save_run("syn", "syn-suite", {}, prompts, "h", {m: {"label": m.title()} for m in MODELS}, units)
    return s


@pytest.fixture
def syn_store(tmp_path) -> Store:
    return make_synthetic_store(tmp_path / "store")


def build_toy_run(root, *, prompts: int = 5, samples: int = 2) -> str:
    """Generate a small real run ('rate') with the tiny toy models into the store at ``root``."""
    from harness import cli

    res = cli.dispatch(cli.compose(["command=generate", "experiment=untrained", "progress=false",
                                    f"suite.limit={prompts}",
                                    f"samples={samples}", "run.name=rate", f"store.root={root}"]))
    return res["run_id"]

