"""Figures for the zoo models: attribute accuracy of generated images (by the rule-based checker),
caption retrieval by the toy CLIP, and generation helpers shared with the quality benchmark."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from harness.toyworld import checker, world

SAMPLING = {"toy-unet": {"steps": 25, "guidance": 3.0}, "toy-dit": {"steps": 20, "guidance": 3.0}}
"""Default sampling settings (the model configs in conf/models/zoo_*.yaml use the same)."""
T5_TOKENS = 4


def eval_scenes(n: int, kinds: tuple[str, ...] = ("single", "pair"), seed: int = 0) -> list[world.Scene]:
    """``n`` held-out scenes of the given kinds (the eval split: its own seed, unseen pairs allowed)."""
    rng = random.Random(world.SPLIT_SEEDS["eval"] + 31 * seed)
    return [world.sample_scene(rng, "eval", kind=kinds[i % len(kinds)]) for i in range(n)]


def load_pipeline(folder: str | Path, device: str = "cpu"):
    import torch
    from diffusers import DiffusionPipeline

    from harness.generators.diffusers_loading import null_components

    pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32, local_files_only=True,
                                             **null_components(Path(folder)))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def generate(pipe, prompts: list[str], seeds: list[int], *, steps: int, guidance: float,
             batch: int = 32, size: int = 64) -> list[Any]:
    """One image per (prompt, seed), each from its own seeded CPU generator."""
    import torch

    out = []
    extra = {"max_sequence_length": T5_TOKENS} if type(pipe).__name__.startswith("StableDiffusion3") else {}
    for i in range(0, len(prompts), batch):
        ps, ss = prompts[i:i + batch], seeds[i:i + batch]
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in ss]
        with torch.no_grad():
            res = pipe(ps, num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                       height=size, width=size, **extra)
        out.extend(res.images)
    return out


def score_attributes(images: list[Any], scenes: list[world.Scene]) -> dict[str, float]:
    """Mean checker scores over images of object scenes (count scenes give 'count')."""
    acc: dict[str, list[float]] = {}
    for im, sc in zip(images, scenes, strict=False):
        for k, v in checker.check(im, sc.attributes()).items():
            acc.setdefault("all_three" if k == "all" else k, []).append(v)
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(acc.items())}


def attribute_accuracy(folder: str | Path, *, n: int = 200, seeds: tuple[int, ...] = (0,),
                       device: str = "cpu", steps: int | None = None, guidance: float | None = None,
                       pipe=None) -> dict[str, Any]:
    """Colour / shape / position / all-three accuracy of a pipeline on ``n`` held-out captions x seeds."""
    folder = Path(folder)
    cfg = SAMPLING.get(folder.name, {"steps": 20, "guidance": 3.0})
    pipe = pipe or load_pipeline(folder, device)
    scenes = eval_scenes(n)
    prompts = [world.caption(s) for s in scenes] * len(seeds)
    all_seeds = [1000 * s + i for s in seeds for i in range(n)]
    images = generate(pipe, prompts, all_seeds, steps=steps or cfg["steps"],
                      guidance=cfg["guidance"] if guidance is None else guidance)
    out: dict[str, Any] = score_attributes(images, scenes * len(seeds))
    out["n_images"] = len(images)
    return out


def _features(out):
    """transformers 5 wraps projected features in an output object (``pooler_output``)."""
    return out if hasattr(out, "norm") else out.pooler_output


def clip_retrieval(folder: str | Path, device: str = "cpu", n: int = 500, k: int = 10) -> dict[str, float]:
    """Held-out real images: share whose true caption ranks first among ``k`` (itself + k-1 others),
    and the mean cosine of matched vs mismatched pairs."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(str(folder)).to(device).eval()
    tok = CLIPTokenizer.from_pretrained(str(folder))
    proc = CLIPImageProcessor.from_pretrained(str(folder))
    rng = random.Random(7)
    scenes = [world.sample_scene(rng, "eval") for _ in range(n)]
    caps = [world.caption(s) for s in scenes]
    images = [world.render(s, 64) for s in scenes]
    with torch.no_grad():
        px = proc(images=images, return_tensors="pt").pixel_values.to(device)
        img = torch.nn.functional.normalize(_features(model.get_image_features(pixel_values=px)), dim=-1)
        uniq = sorted(set(caps))
        t = tok(uniq, padding="max_length", truncation=True, return_tensors="pt").to(device)
        txt = torch.nn.functional.normalize(_features(model.get_text_features(**t)), dim=-1)
    row = {c: i for i, c in enumerate(uniq)}
    sims = img @ txt.T
    hits, matched, mismatched = 0, [], []
    for i, c in enumerate(caps):
        others = [j for j in range(len(uniq)) if uniq[j] != c]
        pick = rng.sample(others, k - 1)
        true = sims[i, row[c]].item()
        hits += all(true > sims[i, j].item() for j in pick)
        matched.append(true)
        mismatched.extend(sims[i, j].item() for j in pick)
    return {"retrieval_top1_of_10": round(hits / n, 4), "clip_matched": round(float(np.mean(matched)), 4),
            "clip_mismatched": round(float(np.mean(mismatched)), 4)}


def auc(pos: list[float], neg: list[float]) -> float:
    """Area under the ROC curve: the chance a positive scores above a negative (ties count half)."""
    p, q = np.asarray(pos, dtype=np.float64)[:, None], np.asarray(neg, dtype=np.float64)[None, :]
    return float((p > q).mean() + 0.5 * (p == q).mean())


def vlm_quality(folder: str | Path, device: str = "cpu", n: int = 300, batch: int = 64) -> dict[str, float]:
    """The toy VLM on held-out real images (eval split): share of balanced yes/no questions
    answered right, the VQAScore AUC of matching vs near-miss captions, and whether it tells left
    from right (each object off the centre asked about at its own place and at its left-right
    mirror: a judge blind to left and right scores 0.5)."""
    from harness.metrics.vqa import DEFAULT_TEMPLATE, load_judge
    from harness.toyworld import questions

    judge = load_judge("toy-vlm", {"checkpoint": str(folder), "dtype": "float32", "answers": ["Yes", "No"],
                                   "chat": True}, device)
    rng = random.Random(11)
    scenes = [world.sample_scene(rng, "eval") for _ in range(n)]
    images = [world.render(s, 64) for s in scenes]
    qa = [questions.training_question(rng, s, caption_share=0.0) for s in scenes]

    def p_yes(qs: list[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, n, batch):
            out += judge.p_yes(images[i:i + batch], qs[i:i + batch])[0]
        return out

    answers = p_yes([q for q, _ in qa])
    agree = float(np.mean([(p >= 0.5) == y for p, (_, y) in zip(answers, qa, strict=True)]))
    ask = DEFAULT_TEMPLATE.replace
    matched = p_yes([ask("{prompt}", world.caption(s)) for s in scenes])
    mismatched = p_yes([ask("{prompt}", world.caption(questions.near_miss(rng, s))) for s in scenes])
    placed = [(images[i], t) for i, s in enumerate(scenes) if s.kind in ("single", "pair")
              for t in s.things if t.position != "centre"]
    asks = [(im, questions.phrase({"exists": {"shape": t.shape, "colour": t.colour, "position": where}}), yes)
            for im, t in placed
            for where, yes in ((t.position, True), (world.mirror_position(t.position), False))]
    sided = []
    for i in range(0, len(asks), batch):
        chunk = asks[i:i + batch]
        sided += judge.p_yes([a[0] for a in chunk], [a[1] for a in chunk])[0]
    left_right = float(np.mean([(p >= 0.5) == yes for p, (_, _, yes) in zip(sided, asks, strict=True)]))
    return {"vlm_question_agreement": round(agree, 4), "vlm_vqascore_auc": round(auc(matched, mismatched), 4),
            "vlm_matched": round(float(np.mean(matched)), 4),
            "vlm_mismatched": round(float(np.mean(mismatched)), 4),
            "vlm_left_right": round(left_right, 4)}
