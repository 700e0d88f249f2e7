"""A synthetic run with images, scores, latencies, prices and votes: for trying the leaderboard
renderers (HTML, the Streamlit page) without generating anything, and for their tests.

Everything is drawn from a seeded generator, so the same arguments build the same store.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.store import Store
from harness.types import GenRequest, GenResult, Prompt

RUN_ID = "synthetic"
SUITE = "synthetic-suite"
STRENGTHS = {"alpha": 0.8, "beta": 0.2, "gamma": -0.2, "delta": -0.8}
"""True Bradley-Terry log-strengths the votes are drawn from."""
COLOURS = {"alpha": (214, 64, 48), "beta": (40, 120, 200), "gamma": (60, 170, 90), "delta": (150, 90, 180)}
SHARPNESS = {"alpha": 0.7, "beta": 0.55, "gamma": 0.5, "delta": 0.3}
"""Mean of the synthetic per-image metric 'sharpness' (higher is better)."""

SHARPNESS_SETTINGS = {"metric": "sharpness", "per": "image", "higher_is_better": True, "version": 1}
NOISE_SETTINGS = {"metric": "noise", "per": "image", "higher_is_better": False, "version": 1}
FID_SETTINGS = {"metric": "fid", "per": "set", "features": "toy-features-v1", "resize": "bicubic",
                "image_size": 32, "label": "toy FID (not comparable to published FID)",
                "outputs": [["fid", False], ["kid", False]], "version": 1,
                # reading notes as a FID metric stores them (harness.metrics.base.ReadingNotes)
                "how_to_read": {"table_title": "FID / KID", "min_images": 2000,
                                "table_note": "toy FID (not comparable to published FID); features "
                                              "`toy-features-v1`, bicubic resize to 32 px.",
                                "few_images": "FID rests on N={n} images (< {min_images:,}): biased "
                                              "upward and noisy; compare KID = {kid} (unbiased)."}}


def _png(model: str, i: int, size: tuple[int, int] = (48, 32)) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, COLOURS.get(model, (128, 128, 128)))
    d = ImageDraw.Draw(img)
    x = 4 + (i * 7) % (size[0] - 16)
    d.ellipse((x, 6, x + 12, 18), fill=(250, 250, 250))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_store(root: str | Path, *, models: Sequence[str] = ("alpha", "beta", "gamma"), prompts: int = 6,
               votes_per_pair: int = 40, raters: int = 3, excluded_rater: bool = True,
               refuse_all: Sequence[str] = (), never_compared: Sequence[tuple[str, str]] = (),
               api_price: dict[str, float] | None = None, seed: int = 0) -> Store:
    """Build the run ``synthetic`` in a new store at ``root``.

    Args:
        models: model names (strengths from STRENGTHS, 0 for others).
        prompts: prompts p00.. with tags ``category:animals`` / ``category:text`` alternating.
        votes_per_pair: votes for each compared pair (0: no votes, no raters).
        raters: honest raters (votes follow the true strengths, sides random).
        excluded_rater: add a rater who always picks the left image, marked excluded.
        refuse_all: models whose every request is refused (no images, so never voted on).
        never_compared: pairs of models that get no votes.
        api_price: model -> USD per image (stored as cost on each record, as API adapters do).
    """
    rng = np.random.default_rng(seed)
    store = Store(root)
    plist = [Prompt(id=f"p{i:02d}", text=f"a {['red fox', 'sign saying OPEN'][i % 2]} #{i}",
                    tags=(f"category:{['animals', 'text'][i % 2]}",)) for i in range(prompts)]
    units = [(f"{m}-{p.id}", m, p.id, 0) for m in models for p in plist]
    manifest = {"suite": {"name": SUITE, "version": "1", "prompts": prompts,
                          "description": "Synthetic run for the leaderboard renderers."},
                "samples": 1, "seed": seed}
    infos = {m: {"label": m.capitalize(), "kind": "api" if api_price and m in api_price else "local"}
             for m in models}
    store.save_run(RUN_ID, SUITE, manifest, plist, "synthetic-hash", infos, units)
    scores = []
    for i, (key, model, pid, _) in enumerate(units):
        req = GenRequest(model=model, generator="synthetic", model_id=model, revision=None, weights=None,
                         prompt_id=pid, prompt=pid, negative_prompt=None, sample=0, seed=seed, width=48,
                         height=32)
        if model in refuse_all:
            store.put_result(req, key, GenResult(status="refused", refusal_reason="content filter"))
            continue
        cost = (api_price or {}).get(model)
        latency = float(0.5 + 0.1 * list(models).index(model) + rng.gamma(2.0, 0.05))
        store.put_result(req, key, GenResult(status="ok", image=_png(model, i), latency_s=latency,
                                             cost_usd=cost))
        sharp = float(np.clip(SHARPNESS.get(model, 0.5) + rng.normal(0, 0.1), 0, 1))
        scores.append((key, "sharpness", "sh1", sharp, SHARPNESS_SETTINGS, {}))
        scores.append((key, "noise", "no1", float(rng.uniform(0, 1)), NOISE_SETTINGS, {}))
    store.put_scores(scores)
    for j, m in enumerate(models):
        if m not in refuse_all:
            store.put_set_score(RUN_ID, m, "fid.fid", "fid1", 40.0 + 10 * j, prompts, FID_SETTINGS, {})
            store.put_set_score(RUN_ID, m, "fid.kid", "fid1", 0.01 + 0.005 * j, prompts, FID_SETTINGS, {})
    if votes_per_pair:
        _votes(store, rng, [m for m in models if m not in refuse_all], [p.id for p in plist], votes_per_pair,
               raters, excluded_rater, {tuple(sorted(p)) for p in never_compared})
    return store


def _votes(store: Store, rng: np.random.Generator, models: list[str], prompt_ids: list[str], per_pair: int,
           raters: int, excluded_rater: bool, skip: set[tuple[str, str]]) -> None:
    ids = [store.rater_for_token(store.add_rater(f"rater{r}")).rater_id for r in range(raters)]
    clicker = store.rater_for_token(store.add_rater("clicker")).rater_id if excluded_rater else None
    n = 0
    for a_i, a in enumerate(models):
        for b in models[a_i + 1:]:
            if tuple(sorted((a, b))) in skip:
                continue
            for k in range(per_pair):
                pid = prompt_ids[k % len(prompt_ids)]
                left, right = (a, b) if rng.random() < 0.5 else (b, a)
                d = STRENGTHS.get(left, 0.0) - STRENGTHS.get(right, 0.0)
                u = rng.random()
                choice = ("tie" if u < 0.08 else "both_bad" if u < 0.11
                          else "left" if rng.random() < 1 / (1 + math.exp(-d)) else "right")
                # raters take turns, so each comparison (prompt, pair) is seen by several of them
                who = [ids[(k + j) % len(ids)] for j in range(min(2, len(ids)))] if ids else []
                for rater in who:
                    vote = choice if rater == who[0] else (choice if rng.random() < 0.7 else
                                                           str(rng.choice(["left", "right", "tie"])))
                    store.put_vote(dict(vote_id=f"v{n:05d}", run_id=RUN_ID, rater_id=rater, prompt_id=pid,
                                        left_key=f"{left}-{pid}", right_key=f"{right}-{pid}",
                                        left_model=left, right_model=right, choice=vote))
                    n += 1
                if clicker and k % 2 == 0:  # always picks the left image: quality control excludes them
                    store.put_vote(dict(vote_id=f"v{n:05d}", run_id=RUN_ID, rater_id=clicker, prompt_id=pid,
                                        left_key=f"{left}-{pid}", right_key=f"{right}-{pid}",
                                        left_model=left, right_model=right, choice="left"))
                    n += 1
    if clicker:
        store.set_rater_excluded(clicker, True)
