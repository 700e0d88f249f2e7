"""Quality bars of the embedded zoo models (the default comparison of `make run`).

Prints, for toy-unet, toy-dit and an untrained model of the U-Net's architecture (random weights,
same VAE and text encoder):

- attribute accuracy by the rule-based checker (colour, shape, position, all three; count) over
  CAPTIONS held-out captions x SEEDS seeds, with bootstrap 95% CIs;
- OCR exact-word accuracy on generated word images (rapidocr), beside its ceiling on real toy
  word images;
- FID (EfficientNet-Lite0 features) against 1000 held-out real images;
- the toy CLIP: caption retrieval (true caption first among 10) on held-out real images, and
  CLIP-score of matched vs mismatched captions on generated images;
- `harness run` end to end (both models, the whole default suite, every default metric, the
  leaderboard) in a fresh store, timed.

The last line is the headline: how many of the issue's bars hold; the exit status is 1 when
any bar fails. ``--self-test`` runs a small case twice (12 captions, 1 seed, 200 reference
images, no `harness run`): as it is, and with a known fault (the trained models sample with one
denoising step instead of their recipe's), and exits 0 only if the fault turns the attribute
bars that held into FAIL and the faulty run prints FAIL and returns non-zero.

    python benchmarks/zoo_quality.py                 # CAPTIONS=200, SEEDS=3 (about 15 min on 2 cores)
    python benchmarks/zoo_quality.py --captions 50 --seeds 1 --skip-run     # a quick look
    python benchmarks/zoo_quality.py --self-test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.toyworld import world  # noqa: E402
from harness.zoo import evaluate as E  # noqa: E402
from harness.zoo.train import ZOO_DIR, pick_device  # noqa: E402

KINDS_WEIGHTS = {"single": 4, "pair": 2, "count": 2, "word": 2}


def captions_mix(n: int, seed: int = 0) -> list[world.Scene]:
    """``n`` held-out scenes in the training mix of kinds (single 40%, pair/count/word 20% each)."""
    rng = random.Random(world.SPLIT_SEEDS["eval"] + 101 + seed)
    kinds = list(KINDS_WEIGHTS)
    return [world.sample_scene(rng, "eval", kind=rng.choices(kinds, list(KINDS_WEIGHTS.values()))[0])
            for _ in range(n)]


def boot_ci(x: list[float], n: int = 1000, seed: int = 0) -> tuple[float, float]:
    a = np.asarray(x, dtype=float)
    if len(a) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = a[rng.integers(0, len(a), size=(n, len(a)))].mean(1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def untrained_pipeline(device: str):
    """toy-unet's pipeline with the U-Net replaced by random weights of the same architecture."""
    import torch
    from diffusers import UNet2DConditionModel

    pipe = E.load_pipeline(ZOO_DIR / "toy-unet", device)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel.from_config(pipe.unet.config).to(device)
    return pipe


def per_image_checks(images, scenes) -> dict[str, list[float]]:
    from harness.toyworld import checker

    acc: dict[str, list[float]] = {}
    for im, sc in zip(images, scenes, strict=True):
        for k, v in checker.check(im, sc.attributes()).items():
            acc.setdefault("all_three" if k == "all" else k, []).append(v)
    return acc


def ocr_hits(images, words) -> list[float]:
    from harness.metrics.ocr import OCRScore

    m = OCRScore(name="ocr")
    return [float(m.normalize(m.read(m.prepare(im))) == m.normalize(w))
            for im, w in zip(images, words, strict=True)]


def ocr_accuracy(images, words) -> float:
    hits = ocr_hits(images, words)
    return float(np.mean(hits)) if hits else float("nan")


def fid_against_reference(feats: np.ndarray, ref: np.ndarray) -> float:
    from harness.metrics.fid import frechet_distance

    return float(frechet_distance(feats.mean(0), np.cov(feats, rowvar=False),
                                  ref.mean(0), np.cov(ref, rowvar=False)))


LAST_BARS: list[tuple[str, bool, str]] = []
"""The bars of the last evaluation (label, held, value), for the self-test."""
FAULTS = ("", "one_step")


def main(argv: list[str] | None = None, fault: str = "") -> int:
    """Evaluate, print every bar and the headline; 0 when every bar holds, else 1.
    ``fault="one_step"``: the trained models sample with one step (self-test only)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--captions", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-run", action="store_true", help="do not time `harness run`")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--ref-n", type=int, default=1000, help="real reference images for FID")
    ap.add_argument("--clip-n", type=int, default=500, help="real images for the CLIP retrieval")
    ap.add_argument("--ceiling-n", type=int, default=100, help="real word images for the OCR ceiling")
    ap.add_argument("--self-test", action="store_true", help="a small case with a known fault")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    assert fault in FAULTS, fault
    import torch

    from harness.runtime import tune_allocator

    print(f"allocator: {tune_allocator()}")  # as the harness command runs

    from harness.metrics.features import build_extractor
    from harness.toyworld.paths import reference_folder

    dev = pick_device(args.device)
    torch.set_num_threads(os.cpu_count() or 2)
    scenes = captions_mix(args.captions)
    prompts = [world.caption(s) for s in scenes]
    all_scenes = scenes * args.seeds
    all_prompts = prompts * args.seeds
    all_seeds = [1000 * s + i for s in range(args.seeds) for i in range(args.captions)]
    print(f"{args.captions} held-out captions x {args.seeds} seeds on {dev}; "
          f"kinds: { {k: sum(s.kind == k for s in scenes) for k in KINDS_WEIGHTS} }")

    ext = build_extractor("efficientnet_lite0")
    from PIL import Image

    ref_files = sorted(reference_folder(args.ref_n).glob("*.png"))
    ref_feats = ext.extract([Image.open(p).convert("RGB") for p in ref_files])

    figures: dict[str, dict] = {}
    gen_images: dict[str, list] = {}
    models = {"toy-unet": None, "toy-dit": None, "untrained": None}
    for name in models:
        t0 = time.perf_counter()
        if name == "untrained":
            pipe, cfg = untrained_pipeline(dev), E.SAMPLING["toy-unet"]
        else:
            pipe, cfg = E.load_pipeline(ZOO_DIR / name, dev), E.SAMPLING[name]
        steps = 1 if fault == "one_step" and name != "untrained" else cfg["steps"]
        images = E.generate(pipe, all_prompts, all_seeds, steps=steps, guidance=cfg["guidance"])
        secs = time.perf_counter() - t0
        gen_images[name] = images
        checks = per_image_checks(images, all_scenes)
        f: dict = {k: (float(np.mean(v)), *boot_ci(v), len(v)) for k, v in sorted(checks.items())}
        words = [(im, s.word) for im, s in zip(images, all_scenes, strict=True) if s.kind == "word"]
        hits = ocr_hits([w[0] for w in words], [w[1] for w in words])
        f["ocr_exact_ci"] = (float(np.mean(hits)) if hits else float("nan"), *boot_ci(hits), len(hits))
        f["ocr_exact"] = f["ocr_exact_ci"][0]
        f["fid"] = fid_against_reference(ext.extract(images), ref_feats)
        f["images_per_s"] = len(images) / secs
        figures[name] = f
        print(f"\n{name}: {len(images)} images in {secs:.0f} s")
        for k, v in f.items():
            if isinstance(v, tuple):
                print(f"  {k:10s} {v[0]:.3f}  [{v[1]:.3f}, {v[2]:.3f}]  n={v[3]}")
            else:
                print(f"  {k:10s} {v:.3f}")

    # OCR ceiling: the same engine on real toy word images.
    real_words = [s for s in world.scenes("eval", 4 * args.ceiling_n) if s.kind == "word"][:args.ceiling_n]
    ceiling = ocr_accuracy([world.render(s, 64) for s in real_words], [s.word for s in real_words])
    print(f"\nOCR ceiling (rapidocr on {len(real_words)} real 64 px toy word images): {ceiling:.3f}")

    clip = E.clip_retrieval(ZOO_DIR / "toy-clip", dev, n=args.clip_n)
    print(f"toy CLIP on {args.clip_n} held-out real images: {clip}")
    better, wins = pick_better(figures)
    other = "toy-dit" if better == "toy-unet" else "toy-unet"
    print(f"better model: {better} (wins {', '.join(wins)} of all_three, count, ocr_exact, fid)")
    matched, mismatched = clip_on_generated(gen_images[better], all_prompts, dev)
    print(f"toy CLIP-score on {better}'s images: matched {matched:.2f} vs mismatched {mismatched:.2f}")

    run_s = None
    if not args.skip_run:
        run_s = time_harness_run()
        print(f"harness run (default suite, both models, every default metric, leaderboard): {run_s:.0f} s")

    b, o, u = figures[better], figures[other], figures["untrained"]
    differ = [f"{k} {b[k][0]:.3f} vs {o[k][0]:.3f}"
              for k in ("colour", "shape", "position", "all_three", "count", "ocr_exact_ci")
              if k in b and k in o and (b[k][1] > o[k][2] or o[k][1] > b[k][2])]
    bars = [
        ("better colour >= 0.80", b["colour"][0] >= 0.80, f"{b['colour'][0]:.3f}"),
        ("better shape >= 0.80", b["shape"][0] >= 0.80, f"{b['shape'][0]:.3f}"),
        ("better position >= 0.60", b["position"][0] >= 0.60, f"{b['position'][0]:.3f}"),
        ("better all three >= 0.40", b["all_three"][0] >= 0.40, f"{b['all_three'][0]:.3f}"),
        ("other model measurably different (95% CIs disjoint on some metric)", bool(differ),
         ", ".join(differ) or "no metric with disjoint CIs"),
        ("untrained near chance (all three <= 0.10)", u["all_three"][0] <= 0.10, f"{u['all_three'][0]:.3f}"),
        ("toy CLIP retrieval >= 0.90", clip["retrieval_top1_of_10"] >= 0.90,
         f"{clip['retrieval_top1_of_10']:.3f}"),
        ("CLIP-score matched > mismatched (generated)", matched > mismatched,
         f"{matched:.1f} > {mismatched:.1f}"),
        ("OCR exact word >= 0.30 (better model)", b["ocr_exact"] >= 0.30,
         f"{b['ocr_exact']:.3f} (ceiling {ceiling:.3f})"),
        ("FID better < worse < untrained", b["fid"] < o["fid"] < u["fid"],
         f"{b['fid']:.1f} < {o['fid']:.1f} < {u['fid']:.1f}"),
    ]
    if run_s is not None:
        bars.append(("harness run <= 600 s", run_s <= 600, f"{run_s:.0f} s"))
    for label, ok, value in bars:
        print(f"  [{'ok' if ok else 'FAIL'}] {label}: {value}")
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "clip": clip, "ocr_ceiling": ceiling,
                                         "run_seconds": run_s, "better": better,
                                         "bars": [[lbl, ok, v] for lbl, ok, v in bars]},
                                        indent=1, default=str))
    LAST_BARS[:] = bars
    held = sum(ok for _, ok, _ in bars)
    print(f"zoo_quality_bars_met: {held}/{len(bars)} (target >= {len(bars)}/{len(bars)}) "
          f"{'ok' if held == len(bars) else 'FAIL'}")
    return 0 if held == len(bars) else 1


def self_test() -> int:
    """Small case, clean then faulty: the attribute bars that held must fail under the fault,
    and the faulty run must print FAIL and return 1."""
    small = ["--captions", "12", "--seeds", "1", "--skip-run", "--ref-n", "200", "--clip-n", "50",
             "--ceiling-n", "10"]
    print("== clean (a small case: some bars may fail by chance; the attribute bars are compared)")
    main(small)
    clean = {label: ok for label, ok, _ in LAST_BARS}
    print("== fault one_step: the trained models sample with one denoising step")
    code = main(small, fault="one_step")
    faulty = {label: ok for label, ok, _ in LAST_BARS}
    attrs = [lb for lb in clean if lb.startswith("better ")]
    turned = [lb for lb in attrs if clean[lb] and not faulty[lb]]
    caught = code == 1 and bool(turned)
    print(f"self-test one_step: {'FAIL (caught)' if caught else 'ok (NOT caught)'}; exit {code}; "
          f"bars that held and now fail: {', '.join(turned) or 'none'}")
    print(f"zoo_quality self-test: {int(caught)} of 1 faults caught {'ok' if caught else 'FAIL'}")
    return 0 if caught else 1


def pick_better(figures: dict) -> tuple[str, list[str]]:
    """The model that wins most headline comparisons: attribute all-three, count and OCR
    accuracy (higher wins) and FID (lower wins); all-three breaks a tie."""
    def val(m, k):
        v = figures[m][k]
        return v[0] if isinstance(v, (tuple, list)) else v

    wins: dict[str, list[str]] = {"toy-unet": [], "toy-dit": []}
    for k, higher in (("all_three", True), ("count", True), ("ocr_exact", True), ("fid", False)):
        a, b = val("toy-unet", k), val("toy-dit", k)
        if a != b:
            wins["toy-unet" if (a > b) == higher else "toy-dit"].append(k)
    better = max(wins, key=lambda m: (len(wins[m]), val(m, "all_three")))
    return better, wins[better]


def clip_on_generated(images, prompts, dev) -> tuple[float, float]:
    """Toy-CLIP score (100 * max(cos, 0)) of each image with its caption vs a shuffled caption."""
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = ZOO_DIR / "toy-clip"
    model = CLIPModel.from_pretrained(str(folder)).to(dev).eval()
    tok = CLIPTokenizer.from_pretrained(str(folder))
    proc = CLIPImageProcessor.from_pretrained(str(folder))
    rng = random.Random(3)
    shuffled = prompts[:]
    while True:
        rng.shuffle(shuffled)
        if all(a != b for a, b in zip(shuffled, prompts, strict=True)) or len(set(prompts)) < 2:
            break
    with torch.no_grad():
        px = proc(images=images, return_tensors="pt").pixel_values.to(dev)
        img = torch.nn.functional.normalize(E._features(model.get_image_features(pixel_values=px)), dim=-1)

        def text(ps):
            t = tok(ps, padding="max_length", truncation=True, return_tensors="pt").to(dev)
            return torch.nn.functional.normalize(E._features(model.get_text_features(**t)), dim=-1)

        m = (img * text(prompts)).sum(-1).clamp(min=0) * 100
        mm = (img * text(shuffled)).sum(-1).clamp(min=0) * 100
    return float(m.mean()), float(mm.mean())


def time_harness_run() -> float:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "HARNESS_STORE": str(Path(d) / "store")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "harness.cli", "run", "progress=false",
                        f"report.dir={Path(d) / 'reports'}"], cwd=d, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
