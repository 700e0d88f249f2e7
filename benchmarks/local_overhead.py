"""Harness overhead on local diffusers models: DiffusersGenerator.generate vs a bare pipeline call.

Per-image wall time through the harness (requests in, PNG bytes out: seeded generators,
sub-batching, control checks and PNG encoding are the harness's work) against the same loaded
pipeline called directly (PIL images out, no PNG), on the same model, batch, steps and seeds.
Harness and bare calls run in back-to-back pairs (order alternating); the ratio is the median of
the paired ratios, times are medians of repeats, all after a warm-up call.

CPU mode (default): the tiny sd15 and sd3 models at 64 px, batch 1 and the best of 1, 2, 4, 8.
``--gpu``: real-size SD1.5 (512 px, 50 steps) and SD3-medium (1024 px, 28 steps, no T5)
architectures with random weights, built from their published configs (no hub), in float16;
prints images/s, the fraction of the compute-bound limit in ../shared/design/OFFLINE.md, and a
UNet step eager vs torch.compile.

What it timed is checked for every batch, on the warm-up pair: the harness returned one ok
result per request, its PNGs decode to the same pixels as the bare call's images (byte-equal on
the CPU; on CUDA within a stated tolerance, ``PIXEL_TOL``, since kernels may differ between
calls), and the denoiser ran the same number of forward passes in both calls (counted by a hook
on the model itself, so a harness that runs half the steps cannot look fast).

Usage: python benchmarks/local_overhead.py [--gpu [--dry-run] [--no-compile]] [--repeats N] [--steps N]
       python benchmarks/local_overhead.py --self-test
(``--gpu --dry-run`` runs the GPU code on the CPU with scaled-down architectures.)
Last line: ``local_overhead_ratio: X (target <= 1.05) ok|FAIL`` (worse of batch 1 and best batch;
FAIL also when a check fails). ``--self-test`` runs the tiny sd15 model through a harness with a
known fault (half the denoising steps; one image generated and copied to the whole batch) and
exits 0 only if each prints FAIL and the clean run's checks pass.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TARGET = 1.05
BATCHES = (1, 2, 4, 8)
PIXEL_TOL = {"cpu": 0, "cuda": 2}
"""Largest allowed difference of a pixel channel (0-255) between harness and bare images."""
PROBLEMS: list[str] = []
"""What the checks found wrong in this process's measurements."""
COMPUTE_BOUND_S = {"sd15": 0.104, "sd3": 0.64}
"""Seconds per image at 800 TFLOP/s (OFFLINE.md): SD1.5 50 steps, SD3-medium 28 steps."""


def requests(n: int, size: int, steps: int, guidance: float, offset: int = 0) -> list:
    from harness.types import GenRequest

    return [GenRequest(model="bench", generator="diffusers", model_id="bench", revision=None,
                       weights=None, prompt_id=f"p{i}", prompt=f"a red circle number {i}",
                       negative_prompt=None, sample=0, seed=1000 + offset + i, width=size,
                       height=size, steps=steps, guidance=guidance)
            for i in range(n)]


def bare_call(gen, reqs) -> list:
    """The pipeline the generator loaded, called as a user would: PIL images, no PNG."""
    import torch

    r = reqs[0]
    return gen._pipe(prompt=[q.prompt for q in reqs], width=r.width, height=r.height,
                     num_inference_steps=r.steps, guidance_scale=r.guidance, output_type="pil",
                     generator=[torch.Generator("cpu").manual_seed(q.seed) for q in reqs]).images


@contextlib.contextmanager
def count_forwards(gen) -> Iterator[list[int]]:
    """Count the denoiser's forward passes (UNet or transformer) while the block runs."""
    pipe = gen._pipe
    model = getattr(pipe, "unet", None) or pipe.transformer
    box = [0]

    def hook(*_args) -> None:
        box[0] += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


def verify(gen, batch: int, results, bare_images, harness_passes: int, bare_passes: int) -> None:
    """Compare one harness call with the bare call on the same requests; record what differs."""
    import io

    import numpy as np
    from PIL import Image

    where = f"{gen.name} batch {batch}"
    ok = [r for r in results if r.status == "ok" and r.image]
    if len(results) != batch or len(ok) != batch:
        PROBLEMS.append(f"{where}: {len(ok)} ok results of {batch} requests")
        return
    if harness_passes != bare_passes:
        PROBLEMS.append(f"{where}: the denoiser ran {harness_passes} forward passes through the "
                        f"harness, {bare_passes} bare")
    tol = PIXEL_TOL["cuda" if str(getattr(gen._pipe, "device", "cpu")).startswith("cuda") else "cpu"]
    worst = 0
    for r, im in zip(ok, bare_images, strict=True):
        a = np.asarray(Image.open(io.BytesIO(r.image)).convert("RGB"), dtype=np.int16)
        b = np.asarray(im.convert("RGB"), dtype=np.int16)
        if a.shape != b.shape:
            PROBLEMS.append(f"{where}: image {a.shape} through the harness, {b.shape} bare")
            return
        worst = max(worst, int(np.abs(a - b).max()))
    if worst > tol:
        PROBLEMS.append(f"{where}: images differ from the bare call's by up to {worst}/255 "
                        f"(tolerance {tol})")


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def measure(gen, batch: int, size: int, steps: int, guidance: float, repeats: int) -> dict:
    """Per-image seconds through the harness and bare, after a warm-up.

    Each repeat times one harness call and one bare call back to back (their order alternates),
    and the ratio is the median of those paired ratios: on a shared machine the load changes
    between repeats far more than within a pair.
    """
    reqs = requests(batch, size, steps, guidance)
    # Warm-up (allocator, kernels, scheduler tables), and the check of what is timed below.
    with count_forwards(gen) as harness_passes:
        res = gen.generate(reqs)
    with count_forwards(gen) as bare_passes:
        bare = bare_call(gen, reqs)
    verify(gen, batch, res, bare, harness_passes[0], bare_passes[0])

    def harness_once() -> float:
        sync()
        t0 = time.perf_counter()
        res = gen.generate(reqs)
        sync()
        assert all(r.status == "ok" for r in res), res[0].error
        return (time.perf_counter() - t0) / batch

    def bare_once() -> float:
        sync()
        t0 = time.perf_counter()
        bare_call(gen, reqs)
        sync()
        return (time.perf_counter() - t0) / batch

    harness, bare = [], []
    for i in range(repeats):
        if i % 2:
            b = bare_once()
            h = harness_once()
        else:
            h = harness_once()
            b = bare_once()
        harness.append(h)
        bare.append(b)
    ratios = [h / b for h, b in zip(harness, bare, strict=True)]
    return {"batch": batch, "harness_s": statistics.median(harness),
            "bare_s": statistics.median(bare), "ratio": statistics.median(ratios)}


def run_model(name: str, gen, size: int, steps: int, guidance: float, repeats: int,
              batches=BATCHES) -> tuple[dict, dict]:
    rows = []
    for b in batches:
        try:
            row = measure(gen, b, size, steps, guidance, repeats)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory at a large batch
            print(f"  {name} batch {b}: failed ({type(e).__name__}: {e}); stopping here")
            break
        rows.append(row)
        print(f"  {name} batch {b}: harness {row['harness_s'] * 1e3:8.1f} ms/img, bare "
              f"{row['bare_s'] * 1e3:8.1f} ms/img, ratio {row['ratio']:.3f}, "
              f"{1 / row['harness_s']:.2f} img/s")
    one = rows[0]
    best = min(rows, key=lambda r: r["harness_s"])
    return one, best


def cpu_mode(args, archs=("sd15", "sd3"), batches=BATCHES, wrap=None) -> float:
    import torch

    from harness.generators.diffusers_local import DiffusersGenerator
    from harness.generators.tiny import build_tiny_pipeline

    print(f"CPU: torch {torch.__version__}, {torch.get_num_threads()} threads; tiny models, "
          f"64 px, {args.steps} steps, guidance 4.0, {args.repeats} repeats (medians)")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            folder = build_tiny_pipeline(arch, Path(tmp) / arch)
            gen = DiffusersGenerator(name=f"tiny_{arch}", label=arch, model_id=str(folder),
                                     options={"device": "cpu"}, batch_size=8)
            gen.load()
            if wrap is not None:
                wrap(gen)
            one, best = run_model(f"tiny {arch}", gen, 64, args.steps, 4.0, args.repeats, batches)
            print(f"  {arch}: batch 1 ratio {one['ratio']:.3f}; best batch {best['batch']} ratio "
                  f"{best['ratio']:.3f} ({1 / best['harness_s']:.2f} img/s through the harness)")
            worst = max(worst, one["ratio"], best["ratio"])
            gen.close()
    return worst


# -- GPU mode: real-size architectures from their published configs, random weights ------------

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                 attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4,
              block_out_channels=(128, 256, 512, 512), layers_per_block=2,
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
              vocab_size=49408)
CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
              num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu",
              vocab_size=49408)
SD3_MEDIUM = dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                  attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                  caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192)


# --gpu --dry-run: the same code on the CPU with the architectures scaled down (float32), to
# check the script before spending GPU time on it.
DRY = {
    "SD15_UNET": dict(SD15_UNET, block_out_channels=(32, 32, 64, 64), cross_attention_dim=64,
                      attention_head_dim=2, sample_size=8),
    "SD_VAE": dict(SD_VAE, block_out_channels=(16, 16, 32, 32), norm_num_groups=8),
    "CLIP_L": dict(CLIP_L, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=2),
    "CLIP_G": dict(CLIP_G, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=2),
    "SD3_MEDIUM": dict(SD3_MEDIUM, num_layers=2, attention_head_dim=16, num_attention_heads=2,
                       joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=128,
                       sample_size=8),
}


def _real_size_folder(arch: str, root: Path, device: str = "cuda", dry: bool = False) -> Path:
    """Build and save a full-size pipeline with random weights (float16); T5 left out of SD3
    (its prompt embedding is then zeros of the same width; the transformer's work is the same)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from harness.generators.tiny import tiny_tokenizer

    folder = root / arch
    tok = tiny_tokenizer(root / f"{arch}-vocab")  # byte-level: ids < 514 fit the real vocab
    cfg = DRY if dry else {"SD15_UNET": SD15_UNET, "SD_VAE": SD_VAE, "CLIP_L": CLIP_L,
                           "CLIP_G": CLIP_G, "SD3_MEDIUM": SD3_MEDIUM}
    torch.manual_seed(0)
    with torch.device(device):
        if arch == "sd15":
            pipe = StableDiffusionPipeline(
                vae=AutoencoderKL(**cfg["SD_VAE"]),
                text_encoder=CLIPTextModel(CLIPTextConfig(**cfg["CLIP_L"])),
                tokenizer=tok, unet=UNet2DConditionModel(**cfg["SD15_UNET"]),
                scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012,
                                        beta_schedule="scaled_linear", clip_sample=False,
                                        set_alpha_to_one=False, steps_offset=1),
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        else:
            vae = AutoencoderKL(**{**cfg["SD_VAE"], "latent_channels": 16}, use_quant_conv=False,
                                use_post_quant_conv=False, shift_factor=0.0609,
                                scaling_factor=1.5035)
            # The pooled projections (CLIP-L + CLIP-G) must add up to pooled_projection_dim.
            pl = cfg["SD3_MEDIUM"]["pooled_projection_dim"] * 768 // 2048
            pg = cfg["SD3_MEDIUM"]["pooled_projection_dim"] - pl
            pipe = StableDiffusion3Pipeline(
                transformer=SD3Transformer2DModel(**cfg["SD3_MEDIUM"]),
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae,
                text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**cfg["CLIP_L"],
                                                                        projection_dim=pl)),
                tokenizer=tok,
                text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**cfg["CLIP_G"],
                                                                          projection_dim=pg)),
                tokenizer_2=tok, text_encoder_3=None, tokenizer_3=None)
    pipe.to(torch.float32 if dry else torch.float16).save_pretrained(str(folder), safe_serialization=True)
    del pipe
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return folder


def unet_step_compile(gen, repeats: int, size: int = 512) -> None:
    """One SD1.5 UNet step at CFG batch 2, 512 px: eager vs torch.compile (compile time too)."""
    import torch

    unet = gen._pipe.unet
    dev = unet.device
    x = torch.randn(2, 4, size // 8, size // 8, device=dev, dtype=unet.dtype)
    t = torch.tensor([500, 500], device=dev)
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, device=dev, dtype=unet.dtype)

    def timed(fn) -> float:
        times = []
        for _ in range(repeats * 4):
            sync()
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(x, t, ctx)
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    eager = timed(unet)
    compiled = torch.compile(unet)
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled(x, t, ctx)
    sync()
    compile_s = time.perf_counter() - t0
    fast = timed(compiled)
    print(f"  SD1.5 UNet step (CFG batch 2, {size} px): eager {eager * 1e3:.1f} ms, compiled "
          f"{fast * 1e3:.1f} ms ({compile_s:.0f} s to compile); OFFLINE.md anchor 51 / 21 ms")


def gpu_mode(args) -> float:
    import torch

    dry = args.dry_run
    if not torch.cuda.is_available() and not dry:
        print("local_overhead.py --gpu needs a CUDA device; this torch "
              f"({torch.__version__}) sees none. Run it on a GPU machine, or drop --gpu for "
              "the CPU figures.", file=sys.stderr)
        raise SystemExit(2)
    from harness.generators.diffusers_local import DiffusersGenerator

    device, dtype = ("cpu", "float32") if dry else ("cuda", "float16")
    where = "CPU dry run, scaled-down architectures" if dry else torch.cuda.get_device_name(0)
    print(f"GPU: {where}, torch {torch.__version__}, {dtype}, random weights, {args.repeats} "
          "repeats (medians)")
    worst = 0.0
    specs = [("sd15", 64 if dry else 512, args.steps or 50, 7.5),
             ("sd3", 64 if dry else 1024, args.steps or 28, 7.0)]
    with tempfile.TemporaryDirectory() as tmp:
        for arch, size, steps, guidance in specs:
            folder = _real_size_folder(arch, Path(tmp), device, dry)
            gen = DiffusersGenerator(name=arch, label=arch, model_id=str(folder),
                                     options={"device": device, "dtype": dtype}, batch_size=8)
            gen.load()
            one, best = run_model(arch, gen, size, steps, guidance, args.repeats,
                                  batches=(1, 2, 4, 8) if arch == "sd15" else (1, 2, 4))
            limit = COMPUTE_BOUND_S[arch] * steps / (50 if arch == "sd15" else 28)
            for label, row in (("batch 1", one), (f"best batch {best['batch']}", best)):
                print(f"  {arch} {label}: {1 / row['harness_s']:.2f} img/s through the harness, "
                      f"{limit / row['harness_s']:.2f} of the compute-bound limit "
                      f"({limit * 1e3:.0f} ms/img), ratio {row['ratio']:.3f}")
            if arch == "sd15" and not args.no_compile:
                unet_step_compile(gen, args.repeats, size)
            worst = max(worst, one["ratio"], best["ratio"])
            gen.close()
            if torch.cuda.is_available():
                print(f"  GPU memory after close: {torch.cuda.memory_allocated() / 2**20:.0f} MiB")
    return worst


def headline(worst: float) -> bool:
    """Print what the checks found and the headline; True when it is ok."""
    for line in PROBLEMS:
        print(f"check failed: {line}")
    ok = worst <= TARGET and not PROBLEMS
    print(f"local_overhead_ratio: {worst:.3f} (target <= {TARGET}) {'ok' if ok else 'FAIL'}")
    return ok


def _half_steps(gen) -> None:
    """Fault: the harness runs half the requested denoising steps."""
    inner = gen.generate
    gen.generate = lambda reqs: inner([dataclasses.replace(r, steps=max(1, r.steps // 2)) for r in reqs])


def _one_image_for_all(gen) -> None:
    """Fault: the harness generates the first request only and hands its image to every one."""
    inner = gen.generate

    def generate(reqs):
        first = inner(list(reqs[:1]))[0]
        return [dataclasses.replace(first) for _ in reqs]

    gen.generate = generate


def self_test(args) -> int:
    """The tiny sd15 model, batches 1 and 2, 4 steps: clean, then each fault must print FAIL."""
    args.steps, args.repeats = 4, 1
    verdicts, clean = {}, False
    for name, wrap in (("clean", None), ("half_steps", _half_steps),
                       ("one_image_for_all", _one_image_for_all)):
        print(f"== {name}")
        PROBLEMS.clear()
        verdicts[name] = headline(cpu_mode(args, archs=("sd15",), batches=(1, 2), wrap=wrap))
        if name == "clean":  # its ratio at 4 steps on a tiny model is not judged, only its checks
            clean = not PROBLEMS
        else:
            print(f"self-test {name}: {'ok (NOT caught)' if verdicts[name] else 'FAIL (caught)'}")
    caught = [not v for k, v in verdicts.items() if k != "clean"]
    good = all(caught) and clean
    print(f"local_overhead self-test: {sum(caught)} of {len(caught)} faults caught, clean checks "
          f"{'ok' if clean else 'FAIL'} {'ok' if good else 'FAIL'}")
    return 0 if good else 1


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gpu", action="store_true", help="real-size SD1.5 and SD3-medium on CUDA")
    ap.add_argument("--dry-run", action="store_true",
                    help="with --gpu: the same code on the CPU, architectures scaled down")
    ap.add_argument("--no-compile", action="store_true", help="with --gpu: skip the compile step")
    ap.add_argument("--repeats", type=int, default=7, help="timed pairs per batch (median)")
    ap.add_argument("--steps", type=int, default=None,
                    help="denoising steps (CPU default 20; GPU: 50 for SD1.5, 28 for SD3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--self-test", action="store_true",
                    help="inject known faults into the harness side; each must print FAIL")
    args = ap.parse_args(argv)
    from harness.runtime import tune_allocator

    # As the harness command does; the bare pipeline runs in this process too, so it gains alike.
    print(f"allocator: {tune_allocator()}")
    if args.self_test:
        return self_test(args)
    if args.gpu:
        worst = gpu_mode(args)
    else:
        args.steps = args.steps or 20
        worst = cpu_mode(args)
    if args.json:
        args.json.write_text(json.dumps({"local_overhead_ratio": worst, "problems": PROBLEMS}))
    return 0 if headline(worst) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
