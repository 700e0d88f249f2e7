"""A word-level CLIP BPE vocabulary for the toy world's captions.

CLIP's tokenizer splits lower-cased text into words and each word into characters (the last one
marked ``</w>``), then applies merges in rank order. Here the vocabulary holds every character
(so any text tokenizes), plus merges that rebuild each word of the toy world's captions into one
token: a caption like ``a red circle in the top left`` is 7 tokens instead of 28. The text
encoders stay small (a few hundred embedding rows) and ``CLIPTokenizer.from_pretrained(folder)``
loads it like any other CLIP tokenizer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.toyworld import world

MAX_TOKENS = 24
"""Tokenizer length (start and end tokens included); toy captions use at most 18."""
_SPLIT = re.compile(r"[a-z]+|[0-9]|[^\sa-z0-9]+")


def caption_words() -> list[str]:
    """Every lower-case word that occurs in a toy-world caption, sorted."""
    texts = []
    for split in ("train", "eval"):
        for scene in world.scenes(split, 3000, seed=0):
            texts.extend(world.captions(scene))
    texts += [w.lower() for w in world.WORDS] + list(world.NUMBERS.values())
    words = set()
    for t in texts:
        words.update(m for m in _SPLIT.findall(t.lower()) if m.isalpha())
    return sorted(words)


def byte_chars() -> list[str]:
    """CLIP/GPT-2 byte-to-unicode table: the 256 printable stand-ins BPE uses for raw bytes."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + n)
            n += 1
    return [chars[b] for b in range(256)]


def write_vocab(folder: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` for the toy world's words into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars]
    merges = _learn_merges(caption_words())
    seen = set(tokens)
    for a, b in merges:
        if a + b not in seen:
            seen.add(a + b)
            tokens.append(a + b)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return folder


def _learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """BPE merges learnt on ``words`` until each is one token (most frequent pair first).

    Encoding replays merges by rank, so every word seen here comes back as a single token."""
    from collections import Counter

    segs = {w: [*w[:-1], w[-1] + "</w>"] for w in words}
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(p for seg in segs.values() for p in zip(seg, seg[1:], strict=False))
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        for w, seg in segs.items():
            out, i = [], 0
            while i < len(seg):
                if i + 1 < len(seg) and (seg[i], seg[i + 1]) == best:
                    out.append(seg[i] + seg[i + 1])
                    i += 2
                else:
                    out.append(seg[i])
                    i += 1
            segs[w] = out


def toy_tokenizer(folder: str | Path):
    """The toy ``CLIPTokenizer``, written into and loaded from ``folder``."""
    from transformers import CLIPTokenizer

    write_vocab(folder)
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=MAX_TOKENS)
    tok.save_pretrained(str(folder))
    return tok
