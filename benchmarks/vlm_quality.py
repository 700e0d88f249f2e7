"""Quality and speed bars of the toy VLM (harness/data/zoo/toy-vlm) behind vqascore_toy and
questions_toy, on the zoo generators' images of held-out toy captions.

Bars (each printed as `NAME: VALUE (target OP VALUE) ok|FAIL`):

- agreement: the toy VLM's yes/no (P(yes) >= 0.5) against the rule-based checker's reading of
  the same image, over every question the checker can answer (the prompt's DSG questions plus as
  many balanced near-miss questions: other colours, shapes, positions, counts); >= 0.90. Word
  questions are left out: the checker reads shapes, not letters.
- vqascore_auc: VQAScore through the metric, image with its own caption vs with another image's
  caption; >= 0.95 (the AUC against near-miss captions, one attribute changed, is printed too).
- questions_gap: per model, |mean questions_toy soft score - the same DSG questions answered by the
  checker (gated the same way)|, object and count prompts; <= 0.05 for every model.
- speed: VQAScore through the metric (PIL images in, values out) vs the bare path on the same
  inputs (processor + model forward + softmax over the two ids, same batch size), interleaved,
  median of per-round ratios of images/s; >= 0.9, and every value equal to 1e-5 (checked, not
  assumed: a mismatch fails the bar whatever the speed).

`--self-test` runs the value check on 64 images clean (it must hold) and with the answer ids
swapped inside the metric's loaded judge (a plausible bug: yes and no crossed; it must print
FAIL); it exits 0 only when both hold, like the other benchmarks' self-tests.

    python benchmarks/vlm_quality.py                    # 96 captions x 2 models (~10 min on 2 cores)
    python benchmarks/vlm_quality.py --captions 32      # a quick look
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.metrics.base import ScoreInput  # noqa: E402
from harness.metrics.questions import QuestionScore, gate, normalise_questions  # noqa: E402
from harness.metrics.vqa import DEFAULT_TEMPLATE, VQAScore  # noqa: E402
from harness.toyworld import questions as Q  # noqa: E402
from harness.toyworld import world  # noqa: E402
from harness.zoo import evaluate as E  # noqa: E402
from harness.zoo.train import ZOO_DIR  # noqa: E402

KINDS = ("single", "pair", "count")
GENERATORS = ("toy-unet", "toy-dit")


def bar(name: str, value: float, op: str, target: float, fmt: str = ".4f") -> bool:
    ok = value >= target if op == ">=" else value <= target
    print(f"{name}: {value:{fmt}} (target {op} {target}) {'ok' if ok else 'FAIL'}")
    return ok


def held_out(n: int) -> list[world.Scene]:
    rng = random.Random(world.SPLIT_SEEDS["eval"] + 404)
    return [world.sample_scene(rng, "eval", kind=KINDS[i % len(KINDS)]) for i in range(n)]


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", type=int, default=None, help="held-out captions (default 96; 32 "
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
        args.captions = 32 if args.self_test else 96
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
        args.skip_quality = True  # the self-test judges the value check only

    if not args.skip_quality:
        vqa = VQAScore(name="vqascore_toy", settings={"checkpoint": str(folder), "dtype": "float32",
                                                      "device": "cpu", "batch_size": 32})
        qs_metric = QuestionScore(name="questions_toy", settings={
            "checkpoint": str(folder), "dtype": "float32", "device": "cpu", "batch_size": 64})
        judge = vqa.judge()
        rng = random.Random(5)
        agree, total = 0, 0
        matched, other, near = [], [], []
        for name, images in gen.items():
            contents = [Q.image_content(im) for im in images]
            # Questions: the DSG set of each prompt plus as many balanced near-miss ones.
            asks: list[tuple[int, str, bool]] = []
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
                        asks.append((i, Q.phrase(c), truth))
            p = []
            for s in range(0, len(asks), 64):
                chunk = asks[s:s + 64]
                p += judge.p_yes([images[i] for i, _, _ in chunk], [q for _, q, _ in chunk])[0]
            agree += sum((pv >= 0.5) == t for pv, (_, _, t) in zip(p, asks, strict=True))
            total += len(asks)
            # VQAScore: own caption vs another image's caption vs a near-miss caption.
            others = prompts[1:] + prompts[:1]
            nears = [world.caption(Q.near_miss(rng, sc)) for sc in scenes]
            for texts, into in ((prompts, matched), (others, other), (nears, near)):
                items = [ScoreInput(f"k{i}", name, im, {"text": t})
                         for i, (im, t) in enumerate(zip(images, texts, strict=True))]
                into += [v for v, _ in vqa.score_images(items)]
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
            oks.append(bar(f"questions_gap[{name}]", gap, "<=", 0.05))
        print(f"questions the checker can answer: {total}")
        oks.append(bar("agreement", agree / total, ">=", 0.90))
        print(f"mean VQAScore: own caption {np.mean(matched):.4f}, another image's {np.mean(other):.4f}, "
              f"near miss {np.mean(near):.4f}; AUC vs near miss {E.auc(matched, near):.4f} (no target)")
        oks.append(bar("vqascore_auc", E.auc(matched, other), ">=", 0.95))

    images = [im for ims in gen.values() for im in ims]
    if args.self_test:
        return self_test(folder, images, prompts * len(gen))
    ratio, diff = speed(folder, images, prompts * len(gen), 32, args.rounds, False)
    print(f"VQAScore metric vs bare, {len(images)} images, batch 32: max |diff| {diff:.2e}")
    oks.append(bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e"))
    oks.append(bar("speed_ratio", ratio, ">=", 0.9, ".3f"))
    n_ok = sum(oks)
    verdict = "ok" if n_ok == len(oks) else "FAIL"
    print(f"vlm_quality: {n_ok} of {len(oks)} bars (target >= {len(oks)}) {verdict}")
    return 0 if n_ok == len(oks) else 1


def self_test(folder: Path, images, prompts) -> int:
    """The value check on 64 images, one round: clean it must hold; with yes and no crossed
    inside the metric's judge it must print FAIL. Exit 0 only then (the quality bars are not
    judged here)."""
    images, prompts = images[:64], prompts[:64]
    print("== clean")
    _, diff = speed(folder, images, prompts, 32, 1, False)
    clean = bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e")
    print("== fault yes_no_crossed")
    _, diff = speed(folder, images, prompts, 32, 1, True)
    caught = not bar("values_max_abs_diff", diff, "<=", 1e-5, ".2e")
    print(f"self-test yes_no_crossed: {'FAIL (caught)' if caught else 'ok (NOT caught)'}")
    good = clean and caught
    print(f"vlm_quality self-test: {int(caught)} of 1 faults caught, clean checks "
          f"{'ok' if clean else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
