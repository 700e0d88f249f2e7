"""Model cards (README.md) for the zoo models: data, recipe, steps, wall time, machine, figures."""

from __future__ import annotations

import json
from typing import Any

WHAT = {
    "toy-vae": ("AutoencoderKL (diffusers): 64x64 RGB <-> 16x16x4 latents, shared by toy-unet and "
                "toy-dit. Loss: L1 + 0.5 L2 + 1e-6 KL. `scaling_factor` gives the latents unit RMS "
                "(`shift_factor` 0, as the SD1.5 pipeline applies none)."),
    "toy-clip": ("CLIPModel (transformers): ViT image tower (8 px patches) and text tower, trained "
                 "contrastively on toy-world images and captions (duplicate captions in a batch "
                 "dropped). The default CLIP-score backbone on the toy world; its text tower is the "
                 "frozen text encoder of both generators."),
    "toy-unet": ("Stable-Diffusion-1.5-format pipeline (StableDiffusionPipeline): "
                 "UNet2DConditionModel on the toy-vae latents, conditioned on the toy-clip text "
                 "tower; v-prediction on a zero-terminal-SNR scaled-linear schedule, EMA weights, "
                 "10% empty captions for classifier-free guidance; DDIM sampling with trailing "
                 "timesteps."),
    "toy-vlm": ("LLaVA-format image-text-to-text model (LlavaForConditionalGeneration with "
                "LlavaProcessor: a CLIP vision tower initialised from toy-clip's, an MLP projector, a "
                "small Llama decoder, a word-level tokenizer of the toy world's words, the "
                "'USER: <image>... ASSISTANT:' template), trained to caption images and to answer "
                "yes or no: atomic questions (is there a shape, its colour, its position, exact "
                "counts, is there a sign, the sign's word) and the VQAScore question on the image's "
                "caption or a near-miss caption, by cross-entropy on the answer tokens. Rows "
                "(`generated_share` in the recipe) come from toy-world renders (half with pixel "
                "noise; answers from the scene; `describe_share` of them caption the image) and from "
                "the zoo generators' images (toy-unet, toy-dit) of other captions, "
                "answered by what the rule-based checker reads from each image "
                "(`harness/zoo/vlm_data.py`): the images the metrics score, held to the checker the "
                "quality benchmark compares with; images whose checker reading hangs on a hair "
                "(`checker.doubts`) are drawn `doubt_weight` times as often; `mirror` adds each "
                "generated image flipped left to right and `warps` copies wobbled by a pixel or "
                "two, each read again by the checker; `position_share` of the rows ask where an "
                "object is (its own place or a mirrored one). Renders and generated "
                "images cover every "
                "colour/shape pair, the pairs the generators never saw included (a judge of "
                "unseen-pair prompts must know them); the quality benchmark's held-out scenes "
                "are never drawn for training. "
                "Loads with AutoModelForImageTextToText / AutoProcessor; the offline default of "
                "vqascore_toy and questions_toy."),
    "toy-dit": ("Stable-Diffusion-3-format pipeline (StableDiffusion3Pipeline): "
                "SD3Transformer2DModel (MMDiT) on the toy-vae latents, the toy-clip text tower as "
                "both CLIP encoders, no T5 (`max_sequence_length: 4` zero tokens); rectified-flow "
                "matching with logit-normal timesteps, EMA weights, 10% empty captions; "
                "FlowMatchEulerDiscreteScheduler."),
}
FIGURES = {
    "eval_psnr_db": "reconstruction PSNR on 512 held-out images (dB)",
    "latent_mean": "latent mean",
    "latent_std": "latent std",
    "latent_rms": "latent RMS (1 / scaling_factor)",
    "retrieval_top1_of_10": "held-out real images: true caption ranked first among 10",
    "clip_matched": "mean cosine, image with its caption",
    "clip_mismatched": "mean cosine, image with another image's caption",
    "colour": "generated images: colour right (checker)",
    "shape": "generated images: shape right (checker)",
    "position": "generated images: position right (checker)",
    "all_three": "generated images: colour, shape and position all right",
    "count": "generated images: count right (count prompts)",
    "n_images": "images in the evaluation above",
    "vlm_question_agreement": "held-out real images: yes/no questions answered right (balanced)",
    "vlm_vqascore_auc": "held-out real images: VQAScore AUC, own caption vs a near-miss caption",
    "vlm_matched": "mean VQAScore, image with its caption",
    "vlm_mismatched": "mean VQAScore, image with a near-miss caption",
    "vlm_left_right": "held-out real images: each object asked about at its own place and at the "
                      "left-right mirror of it, answered right (0.5: blind to left and right)",
}


def card(name: str, recipe: Any, prog: Any) -> str:
    from dataclasses import asdict

    split, seed = recipe.arch.get("renders", ("train", 0))
    renders = (f"training split: {recipe.data:,} rendered 64 px images with templated captions; "
               "colour/shape pairs in `world.UNSEEN` never appear in training" if split == "train" else
               f"the `{split}` split, seed {seed}: {recipe.data:,} rendered 64 px images with templated "
               "captions, every colour/shape pair")
    lines = [f"# {name}", "", WHAT.get(name, ""), "",
             f"Trained by this project on its procedural toy world (`harness/zoo/world.py`, {renders}). "
             "Reproduce or continue with:", "",
             "```", f"harness zoo train {name}            # continues from these weights",
             f"harness zoo train {name} --fresh    # from scratch", "```", "",
             "## Training", "",
             f"- steps: {prog.step:,} (recipe target {recipe.steps:,}), batch {recipe.batch}, "
             f"AdamW lr {recipe.lr:g}" + (f", EMA {recipe.ema}" if recipe.ema else ""),
             f"- wall time: {prog.seconds / 60:.1f} min in total",
             "- final training loss (mean of the last 200 steps): "
             + (f"{prog.loss:.4f}" if prog.loss is not None else "n/a"), "", "Sessions:", ""]
    lines += [f"- steps {s['steps'][0]:,} -> {s['steps'][1]:,} on {s['device']}, "
              f"{s.get('threads', '?')} threads, {s['seconds'] / 60:.1f} min ({s['date']})"
              + (f"; {s['note']}" if s.get("note") else "")  # what differed from the recipe below
              for s in prog.sessions]
    lines += ["", "Recipe:", "", "```json", json.dumps(asdict(recipe), indent=1), "```", ""]
    if prog.figures:
        lines += ["## Figures", "", "| figure | value |", "|---|---|"]
        lines += [f"| {FIGURES.get(k, k)} | {v} |" for k, v in prog.figures.items()]
        lines.append("")
    lines += ["## Limits", "",
              "A toy: 64 px images of up to three flat shapes or a one-word sign, captions from a "
              "few templates and a vocabulary of about 60 words. It exists so the harness runs a "
              "real comparison offline; its figures say nothing about real-world models.", ""]
    return "\n".join(lines)
