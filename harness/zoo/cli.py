"""``harness zoo``: train, list and evaluate the embedded toy-world models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness zoo", description=(
        "The embedded toy world and the small models the project trains on it. Train in order: "
        "toy-vae, toy-clip, then toy-unet, toy-dit and toy-vlm. Training continues from "
        "the saved weights."))
    sub = p.add_subparsers(dest="action", required=True)
    t = sub.add_parser("train", help="train (or continue training) one model")
    t.add_argument("name", help="toy-vae | toy-clip | toy-unet | toy-dit | toy-vlm")
    t.add_argument("--steps", type=int, help="train up to this many steps in total (default: the recipe's)")
    t.add_argument("--minutes", type=float, help="stop after this many minutes (saved, resumable)")
    t.add_argument("--device", default="auto", help="auto (cuda if present, else cpu), cpu, cuda, cuda:1")
    t.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--fresh", action="store_true", help="start from new random weights")
    t.add_argument("--out", type=Path, help="zoo folder to write into (default: the package's)")
    t.add_argument("--no-eval", action="store_true", help="skip the model card's figures at the end")
    sub.add_parser("list", help="the zoo models with their steps, wall time and figures")
    e = sub.add_parser("eval", help="attribute accuracy (generators), caption retrieval (toy-clip) or "
                                    "question agreement and VQAScore AUC (toy-vlm)")
    e.add_argument("name")
    e.add_argument("-n", type=int, default=200, help="held-out captions")
    e.add_argument("--seeds", type=int, default=1, help="seeds per caption")
    e.add_argument("--device", default="auto")
    return p


def main(argv: list[str]) -> int:
    from harness.errors import UserError
    from harness.zoo import train as T

    args = _parser().parse_args(argv)
    if args.action == "list":
        for name in T.RECIPES:
            f = T.ZOO_DIR / name / "training.json"
            if not f.exists():
                print(f"{name:9s}  not trained (harness zoo train {name})")
                continue
            prog = json.loads(f.read_text())
            figs = ", ".join(f"{k}={v}" for k, v in prog.get("figures", {}).items())
            print(f"{name:9s}  {prog['step']:>6,} steps  {prog['seconds'] / 60:6.1f} min  {figs}")
        return 0
    if args.action == "train":
        try:
            T.train(args.name, steps=args.steps, minutes=args.minutes, device=args.device,
                    threads=args.threads, fresh=args.fresh, out=args.out, evaluate=not args.no_eval)
        except T.ZooError as e:
            raise UserError(str(e)) from None
        return 0
    from harness.zoo import evaluate

    folder = T.ZOO_DIR / args.name
    if not (folder / "training.json").exists():
        raise UserError(f"{args.name} is not trained: harness zoo train {args.name}")
    dev = T.pick_device(args.device)
    if args.name == "toy-clip":
        res = evaluate.clip_retrieval(folder, dev, n=args.n)
    elif args.name == "toy-vlm":
        res = evaluate.vlm_quality(folder, dev, n=args.n)
    elif args.name in ("toy-unet", "toy-dit"):
        res = evaluate.attribute_accuracy(folder, n=args.n, seeds=tuple(range(args.seeds)), device=dev)
    else:
        raise UserError(f"nothing to evaluate for {args.name}; try toy-clip, toy-unet, toy-dit or toy-vlm")
    print(json.dumps(res, indent=1))
    return 0
