"""Quality and speed bars of the toy VLM (harness/data/zoo/toy-vlm) behind vqascore_toy and
questions_toy, on the zoo generators' images of held-out toy captions.

Bars (each printed as `NAME: VALUE (target OP VALUE) ok|FAIL`):

- agreement: the toy VLM's yes/no (P(yes) >= 0.5) against the rule-based checker's reading of
  the same image, over every question the checker can answer (the prompt's DSG questions plus as
  many balanced near-miss questions: other colours, shapes, positions, counts); >= 0.90. Word
  questions are left out: the checker reads shapes, not letters. Printed beside it (no target):
  the agreement on images the checker reads clearly and on those where its reading hangs on a
  hair (:func:`harness.toyworld.checker.doubts`), where a disagreeing judge may see what a person
  would; the agreement per kind of question (shape, colour, position, count); and a 95% interval
  that resamples images (their questions stand or fall together), for how far the captions pin
  the figure down (288 by default: on 96, two sets of held-out captions gave the same judge
  0.878 and 0.934).
- vqascore_auc: VQAScore through the metric, matched vs mismatched captions, as the checker reads
  the image: matched = the image with its own caption where the checker confirms every DSG
  question of it (the generator drew it), mismatched = the image with another image's caption
  the checker does not confirm in full; >= 0.95. An own caption the generator missed is not a
  match: counting it as one measures the generators (the checker itself, a perfect judge of its
  own reading, scores 0.91-0.94 that way on these images), so that figure is printed beside it,
  with the checker's, and the AUC against near-miss captions (one attribute changed).
- questions_gap: per model, |mean questions_toy soft score - the same DSG questions answered by the
  checker (gated the same way)|, object and count prompts; <= 0.05 for every model.
- speed: VQAScore through the metric (PIL images in, values out) vs the bare path on the same
  inputs (processor + model forward + softmax over the two ids, same batch size), interleaved,
  median of per-round ratios of images/s; >= 0.9, and every value equal to 1e-5 (checked, not
  assumed: a mismatch fails the bar whatever the speed).

`--self-test` (32 held-out captions) checks that each bar the shipped model meets holds clean and
prints FAIL under a fault that touches it, each a plausible bug inside the metrics' judge: yes and
no crossed (the value check), questions answered about the next image of the batch (the AUC),
answers biased toward yes (the questions gap); it exits 0 only when every fault is
caught and the clean checks hold, like the other benchmarks' self-tests.

    python benchmarks/vlm_quality.py                    # 288 captions x 2 models (~1 min, images cached)
    python benchmarks/vlm_quality.py --captions 32      # a quick look
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.metrics.base import ScoreInput  # noqa: E402
from harness.metrics.questions import QuestionScore, gate, normalise_questions  # noqa: E402
from harness.metrics.vqa import DEFAULT_TEMPLATE, VQAScore  # noqa: E402
from harness.toyworld import checker, world  # noqa: E402
from harness.toyworld import questions as Q  # noqa: E402
from harness.zoo import evaluate as E  # noqa: E402
from harness.zoo.train import ZOO_DIR, caption_share  # noqa: E402

KINDS = ("single", "pair", "count")
GENERATORS = ("toy-unet", "toy-dit")


def bar(name: str, value: float, op: str, target: float, fmt: str = ".4f") -> bool:
    ok = value >= target if op == ">=" else value <= target
    print(f"{name}: {value:{fmt}} (target {op} {target}) {'ok' if ok else 'FAIL'}")
    return ok


def held_out(n: int) -> list[world.Scene]:
    rng = random.Random(world.SPLIT_SEEDS["eval"] + 404)
    return [world.sample_scene(rng, "eval", kind=KINDS[i % len(KINDS)]) for i in range(n)]


def question_kind(check: dict) -> str:
    """What an atomic question asks about: ``count``, ``position`` (colour, shape and place),
    ``colour`` (colour and shape) or ``shape``."""
    if "count" in check:
        return "count"
    e = check["exists"]
    return "position" if e.get("position") else "colour" if e.get("colour") else "shape"


def speed(folder: Path, images, prompts, batch: int, rounds: int, self_test: bool) -> tuple[float, float]:
    """(median ratio of images/s metric / bare, max |metric - bare|)."""
    import torch

    metric = VQAScore(name="vqascore_toy", settings={"checkpoint": str(folder), "dtype": "float32",
                                                     "device": "cpu", "batch_size": batch, "workers": 1})
    judge = metric.judge()
    if self_test:
        judge.yes_id, judge.no_id = judge.no_id, judge.yes_id
    from transformers import AutoModelForImageTextToText, AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    proc.tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    vocab = proc.tokenizer.get_vocab()
    yes, no = vocab["Yes"], vocab["No"]
    items = [ScoreInput(f"k{i}", "m", im, {"text": p})
             for i, (im, p) in enumerate(zip(images, prompts, strict=True))]

    def bare() -> list[float]:
        out: list[float] = []
        for s in range(0, len(images), batch):
            texts = []
            for p in prompts[s:s + batch]:
                q = DEFAULT_TEMPLATE.replace("{prompt}", p)
                msg = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
                texts.append(proc.apply_chat_template(msg, add_generation_prompt=True, tokenize=False))
            enc = proc(text=texts, images=images[s:s + batch], padding=True, return_tensors="pt")
            with torch.inference_mode():
                last = model(**enc).logits[:, -1].float()
            out += torch.softmax(last[:, [yes, no]], -1)[:, 0].tolist()
        return out

    ratios, diff = [], 0.0
    for _ in range(rounds):
        t = time.perf_counter()
        ours = [v for v, _ in metric.score_images(items)]
        t_ours = time.perf_counter() - t
        t = time.perf_counter()
        ref = bare()
        t_bare = time.perf_counter() - t
        ratios.append(t_bare / t_ours)
        diff = max(diff, max(abs(a - b) for a, b in zip(ours, ref, strict=True)))
    return statistics.median(ratios), diff


def quality(folder: Path, scenes: list, prompts: list[str], gen: dict[str, list]) -> dict[str, bool]:
    """The quality bars (questions gap per model, agreement, VQAScore AUC), printed; bar -> ok."""
    oks: dict[str, bool] = {}
    vqa = VQAScore(name="vqascore_toy", settings={"checkpoint": str(folder), "dtype": "float32",
                                                  "device": "cpu", "batch_size": 32})
    qs_metric = QuestionScore(name="questions_toy", settings={
        "checkpoint": str(folder), "dtype": "float32", "device": "cpu", "batch_size": 64})
    judge = vqa.judge()
    rng = random.Random(5)
    agree, total = 0, 0
    by_doubt = {False: [0, 0], True: [0, 0]}  # checker's reading hangs on a hair -> [agree, n]
    by_kind: dict[str, list[int]] = {}  # question kind -> [agree, n]
    per_image: list[list[int]] = []  # [agree, n] of each image's questions (for the interval)
    # VQAScore and the checker's share of each caption's DSG questions, per pair kind.
    pairs: dict[str, list[tuple[float, float]]] = {"own": [], "other": [], "near": []}
    for name, images in gen.items():
        contents = [Q.image_content(im) for im in images]
        # Questions: the DSG set of each prompt plus as many balanced near-miss ones.
        asks: list[tuple[int, str, bool, str]] = []
        for i, (sc, ct) in enumerate(zip(scenes, contents, strict=True)):
            checks = [q["check"] for q in Q.questions_for(sc.attributes())]
            for _ in range(len(checks)):
                for _ in range(50):
                    c = Q.random_check(rng, sc)
                    if "sign" not in c and "word" not in c:
                        break
                checks.append(c)
            for c in checks:
                truth = Q.answer(c, ct)
                if truth is not None:
                    asks.append((i, Q.phrase(c), truth, question_kind(c)))
        p = []
        for s in range(0, len(asks), 64):
            chunk = asks[s:s + 64]
            p += judge.p_yes([images[i] for i, *_ in chunk], [q for _, q, *_ in chunk])[0]
        agree += sum((pv >= 0.5) == t for pv, (_, _, t, _) in zip(p, asks, strict=True))
        total += len(asks)
        doubtful = [bool(checker.doubts(im)) for im in images]
        mine = [[0, 0] for _ in images]
        per_image += mine
        for pv, (i, _, t, kind) in zip(p, asks, strict=True):
            for tally in (by_doubt[doubtful[i]], by_kind.setdefault(kind, [0, 0]), mine[i]):
                tally[0] += (pv >= 0.5) == t
                tally[1] += 1
        # VQAScore: own caption vs another image's caption vs a near-miss caption.
        near_scenes = [Q.near_miss(rng, sc) for sc in scenes]
        for kind, sc_of in (("own", scenes), ("other", scenes[1:] + scenes[:1]), ("near", near_scenes)):
            items = [ScoreInput(f"k{i}", name, im, {"text": world.caption(sc)})
                     for i, (im, sc) in enumerate(zip(images, sc_of, strict=True))]
            values = [v for v, _ in vqa.score_images(items)]
            pairs[kind] += [(v, caption_share(sc, ct))
                            for v, sc, ct in zip(values, sc_of, contents, strict=True)]
        # Question-based score vs the checker answering the same questions.
        items = [ScoreInput(f"k{i}", name, im, {"id": f"p{i}", "text": t,
                                                 "meta": {"attributes": sc.attributes()}})
                 for i, (im, t, sc) in enumerate(zip(images, prompts, scenes, strict=True))]
        soft = [v["soft"] for v, _ in qs_metric.score_images(items)]
        ref = []
        for sc, ct in zip(scenes, contents, strict=True):
            qs = Q.questions_for(sc.attributes())
            g = gate(normalise_questions(qs, "p"), [1.0 if Q.answer(q["check"], ct) else 0.0 for q in qs])
            ref.append(sum(v for v, _ in g) / len(g))
        gap = abs(float(np.mean(soft)) - float(np.mean(ref)))
        print(f"{name}: questions_toy soft {np.mean(soft):.4f}, checker {np.mean(ref):.4f}")
        oks[f"questions_gap[{name}]"] = bar(f"questions_gap[{name}]", gap, "<=", 0.05)
    print(f"questions the checker can answer: {total}")
    (a0, n0), (a1, n1) = by_doubt[False], by_doubt[True]
    print(f"agreement on images the checker reads clearly: {a0 / max(n0, 1):.4f} ({n0} questions); "
          f"on images where its reading hangs on a hair (checker.doubts: a shape overlap near "
          f"its threshold, or two shapes overlapping alike): {a1 / max(n1, 1):.4f} ({n1}); no target")
    print("agreement by question: " + ", ".join(
        f"{k} {a / n:.3f} ({n})" for k, (a, n) in sorted(by_kind.items())) + "; no target")
    # Questions about one image stand or fall together: the interval resamples images.
    tallies = np.array([t for t in per_image if t[1]], dtype=np.float64)
    draws = np.random.default_rng(0).integers(len(tallies), size=(2000, len(tallies)))
    boot = tallies[draws, 0].sum(1) / tallies[draws, 1].sum(1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"agreement, 95% interval resampling the {len(tallies)} images: {lo:.3f}-{hi:.3f}; no target")
    oks["agreement"] = bar("agreement", agree / total, ">=", 0.90)
    own, other, near = ([v for v, _ in pairs[k]] for k in ("own", "other", "near"))
    share = {k: [c for _, c in pairs[k]] for k in pairs}
    pos = [v for v, c in pairs["own"] if c == 1.0]
    neg = [v for v, c in pairs["other"] if c < 1.0]
    neg_near = [v for v, c in pairs["near"] if c < 1.0]
    print(f"mean VQAScore: own caption {np.mean(own):.4f}, another image's {np.mean(other):.4f}, "
          f"near miss {np.mean(near):.4f}")
    print(f"own captions the checker confirms in full (the generator drew them): {len(pos)} of "
          f"{len(own)}; other images' captions it does not: {len(neg)} of {len(other)}")
    print(f"every own caption counted as matched (generator misses too): AUC {E.auc(own, other):.4f}; "
          f"the checker's own reading scores {E.auc(share['own'], share['other']):.4f} that way "
          "(no target)")
    print(f"AUC matched vs near-miss captions the checker does not confirm: {E.auc(pos, neg_near):.4f} "
          "(no target)")
    oks["vqascore_auc"] = bar("vqascore_auc", E.auc(pos, neg), ">=", 0.95)
    return oks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", type=int, default=None, help="held-out captions (default 288; 32 "
                    "for --self-test)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--self-test", action="store_true", help="swap yes/no inside the metric: must print FAIL")
    ap.add_argument("--skip-quality", action="store_true", help="only the speed and value bar")
    ap.add_argument("--generate-only", action="store_true", help="generate (and cache) the images, then stop")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (more thrash on a shared CPU)")
    ap.add_argument("--folder", type=Path, default=ZOO_DIR / "toy-vlm",
                    help="the VLM folder to measure (default: the shipped one)")
    args = ap.parse_args()
    if args.captions is None:
        args.captions = 32 if args.self_test else 288
    import torch

    torch.set_num_threads(args.threads)
    folder = args.folder
    scenes = held_out(args.captions)
    prompts = [world.caption(s) for s in scenes]
    print(f"toy-vlm {folder}; {args.captions} held-out captions ({', '.join(KINDS)}), "
          f"generators {', '.join(GENERATORS)}, CPU, {torch.get_num_threads()} threads")
    oks: list[bool] = []
    gen: dict[str, list] = {}
    from PIL import Image

    from harness.generators.diffusers_loading import folder_fingerprint
    from harness.toyworld.data import cache_root

    for name in GENERATORS:
        # The generators' images are a pure function of (weights, prompts, seeds, settings):
        # cached, so a rerun measures the VLM, not the sampling.
        tag = folder_fingerprint(ZOO_DIR / name)[:12]
        cache = cache_root() / f"vlm-bench-{name}-{tag}-{len(prompts)}.npz"
        if cache.exists():
            gen[name] = [Image.fromarray(a) for a in np.load(cache)["images"]]
            print(f"{len(prompts)} images of {name} from {cache}")
            continue
        pipe = E.load_pipeline(ZOO_DIR / name, "cpu")
        cfg = E.SAMPLING[name]
        t = time.perf_counter()
        gen[name] = E.generate(pipe, prompts, list(range(len(prompts))), steps=cfg["steps"],
                               guidance=cfg["guidance"])
        print(f"generated {len(prompts)} images with {name} in {time.perf_counter() - t:.1f} s")
        np.savez(cache, images=np.stack([np.asarray(im) for im in gen[name]]))
        del pipe
    if args.generate_only:
        return 0
    if args.self_test:
        return self_test(folder, scenes, prompts, gen)
    if not args.skip_quality:
        oks += list(quality(folder, scenes, prompts, gen).values())

    images = [im for ims in gen.values() for im in ims]
    ratio, diff = speed(folder, images, prompts * len(gen), 32, args.rounds, False)
    print(f"VQAScore metric vs bare, {len(images)} images, batch 32: max |diff| {diff:.2e}")
    oks.append(bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e"))
    oks.append(bar("speed_ratio", ratio, ">=", 0.9, ".3f"))
    n_ok = sum(oks)
    verdict = "ok" if n_ok == len(oks) else "FAIL"
    print(f"vlm_quality: {n_ok} of {len(oks)} bars (target >= {len(oks)}) {verdict}")
    return 0 if n_ok == len(oks) else 1


@contextmanager
def fault(kind: str):
    """A plausible bug inside the metrics' judge (every VQAScore / questions call goes through it):
    ``wrong_image``, each question answered about the next image of its batch (an off-by-one in
    batching); ``yes_bias``, every answer's log-odds of yes raised by 2 (a miscalibrated readout)."""
    from harness.metrics.vqa import VLMJudge

    inputs, forward = VLMJudge.inputs, VLMJudge.forward

    def rolled(self, images, questions):
        return inputs(self, list(images[1:]) + list(images[:1]), questions)

    def biased(self, enc):
        two, full = forward(self, enc)
        return [1 / (1 + math.exp(-(math.log(max(p, 1e-9) / max(1 - p, 1e-9)) + 2))) for p in two], full

    if kind == "wrong_image":
        VLMJudge.inputs = rolled
    else:
        VLMJudge.forward = biased
    try:
        yield
    finally:
        VLMJudge.inputs, VLMJudge.forward = inputs, forward


def self_test(folder: Path, scenes, prompts, gen) -> int:
    """Each bar the shipped model meets must hold clean and print FAIL under a fault that touches
    it: the value check on 64 images (yes and no crossed inside the metric's judge), the VQAScore
    AUC (questions answered about the wrong image) and the questions gap (answers biased to yes),
    on the held-out captions given (32 by default). Exit 0 only when every fault is caught and
    the clean checks hold. Agreement is not judged clean: the shipped model does not meet it yet."""
    images = [im for ims in gen.values() for im in ims][:64]
    flat_prompts = (prompts * len(gen))[:64]
    print("== clean")
    _, diff = speed(folder, images, flat_prompts, 32, 1, False)
    clean = bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e")
    res = quality(folder, scenes, prompts, gen)
    gaps = [k for k in res if k.startswith("questions_gap")]
    clean = clean and res["vqascore_auc"] and all(res[k] for k in gaps)
    caught: dict[str, bool] = {}
    print("== fault yes_no_crossed")
    _, diff = speed(folder, images, flat_prompts, 32, 1, True)
    caught["yes_no_crossed"] = not bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e")
    print("== fault wrong_image")
    with fault("wrong_image"):
        res = quality(folder, scenes, prompts, gen)
    caught["wrong_image"] = not res["vqascore_auc"]
    print("== fault yes_bias")
    with fault("yes_bias"):
        res = quality(folder, scenes, prompts, gen)
    caught["yes_bias"] = not all(res[k] for k in gaps)
    for k, v in caught.items():
        print(f"self-test {k}: {'FAIL (caught)' if v else 'ok (NOT caught)'}")
    good = clean and all(caught.values())
    print(f"vlm_quality self-test: {sum(caught.values())} of {len(caught)} faults caught, clean checks "
          f"{'ok' if clean else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
