"""The shipped zoo: its vocabulary, its zoo: paths, and the toy CLIP's held-out retrieval."""

import pytest

from harness.toyworld import paths, vocab, world
from harness.zoo.train import ZOO_DIR


def test_every_caption_word_is_one_token(tmp_path):
    tok = vocab.toy_tokenizer(tmp_path)
    for word in vocab.caption_words():
        assert len(tok.tokenize(word)) == 1, word
    captions = [c for s in world.scenes("eval", 300) for c in world.captions(s)]
    longest = max(len(tok(c).input_ids) for c in captions)
    assert longest <= vocab.MAX_TOKENS
    # Any other text still tokenizes (characters), it is just longer.
    assert len(tok.tokenize("zebra")) > 1


def test_zoo_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_ZOO_CACHE", str(tmp_path))
    assert paths.resolve_path("zoo:toy-clip") == ZOO_DIR / "toy-clip"
    assert paths.resolve_path("~/x") == paths.Path.home() / "x"
    ref = paths.resolve_path("zoo:reference-12")
    files = sorted(ref.glob("*.png"))
    assert len(files) == 12
    again = paths.resolve_path("zoo:reference-12")  # rendered once, then reused
    assert again == ref and sorted(again.glob("*.png")) == files


@pytest.mark.skipif(not (ZOO_DIR / "toy-clip" / "training.json").exists(), reason="toy-clip not trained")
def test_shipped_toy_clip_finds_the_true_caption_among_ten():
    from harness.zoo.evaluate import clip_retrieval

    res = clip_retrieval(ZOO_DIR / "toy-clip", "cpu", n=100)
    assert res["retrieval_top1_of_10"] >= 0.9
    assert res["clip_matched"] > res["clip_mismatched"] + 0.3


def test_zoo_cli_errors_are_clear(capsys):
    from harness import cli

    assert cli.main(["zoo", "train", "toy-unte"]) == 2
    assert "Did you mean 'toy-unet'" in capsys.readouterr().err
    assert cli.main(["zoo", "eval", "toy-vae"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert cli.main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    assert "toy-clip" in out and "toy-unet" in out
