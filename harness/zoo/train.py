"""Training the embedded models on the toy world: ``harness zoo train NAME``.

Five models, trained in this order because each later one uses the earlier ones:

``toy-vae``   an ``AutoencoderKL`` (64 px RGB <-> 16x16x4 latents), shared by both generators.
``toy-clip``  a ``CLIPModel`` trained contrastively on captions; the default CLIP-score backbone,
              and its text tower is the (frozen) text encoder of both generators.
``toy-unet``  a Stable-Diffusion-1.5-format pipeline: ``UNet2DConditionModel``, v-prediction on a
              zero-terminal-SNR schedule, DDIM sampling.
``toy-dit``   a Stable-Diffusion-3-format pipeline: ``SD3Transformer2DModel`` (MMDiT) trained by
              flow matching, two CLIP text encoders (the toy one twice), no T5.
``toy-vlm``   a LLaVA-format image-text-to-text model (vision tower from toy-clip) answering yes/no
              questions about toy images: the VLM behind vqascore_toy and questions_toy.

Each is saved as a standard diffusers / transformers folder under ``harness/data/zoo/<name>``
(shared parts are relative symlinks, so the weights are stored once) with a model card. Training
resumes from the saved weights plus an optimizer state kept in the cache, so minutes on a CPU
now and more later (or on a GPU, where minutes do the work of hours) add up.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.toyworld import data as zdata
from harness.toyworld.paths import ZOO_DIR
from harness.toyworld.vocab import MAX_TOKENS, toy_tokenizer

IMAGE_SIZE = 64
T5_TOKENS = 4
"""Zero 'T5' tokens the SD3 pipeline appends without a T5 (its ``max_sequence_length``)."""


@dataclass
class Recipe:
    kind: str
    """vae | clip | unet | dit."""
    steps: int
    """Optimizer steps in total (a resumed run continues up to this)."""
    batch: int
    lr: float
    warmup: int = 200
    ema: float = 0.999
    data: int = 60_000
    """Training images (rendered once, cached)."""
    cond_drop: float = 0.1
    """Share of captions replaced by the empty prompt (for classifier-free guidance)."""
    arch: dict[str, Any] = field(default_factory=dict)
    lr_floor: float | None = None
    """Cosine-decay the learning rate over the step count, from ``lr`` at step 0 to
    ``lr * lr_floor`` at the run's target (``steps``, or ``--steps``; a resumed run picks the
    curve up where it is, a later target restarts it higher); None keeps it constant after
    warmup."""


RECIPES: dict[str, Recipe] = {
    "toy-vae": Recipe("vae", steps=2500, batch=16, lr=1e-3, ema=0.0, data=20_000, arch=dict(
        block_out_channels=[16, 32, 64], latent_channels=4, kl_weight=1e-6)),
    "toy-clip": Recipe("clip", steps=2500, batch=64, lr=1e-3, ema=0.0, arch=dict(
        text_hidden=96, hidden=64, layers=3, heads=4, projection=64, patch=8)),
    "toy-unet": Recipe("unet", steps=40_000, batch=32, lr=3e-4, arch=dict(
        block_out_channels=[32, 64, 128], attention_head_dim=16, layers_per_block=1)),
    "toy-dit": Recipe("dit", steps=40_000, batch=64, lr=4e-4, arch=dict(
        layers=6, heads=4, head_dim=32, patch=2)),
    "toy-vlm": Recipe("vlm", steps=60_000, batch=32, lr=1e-3, ema=0.0, data=8000, lr_floor=0.02, arch=dict(
        family="llava", hidden=128, layers=4, heads=4, vision_from="toy-clip",
        renders=("reference", 1), generated={"toy-unet": {"train": 1024, "all": 3000},
                                             "toy-dit": {"train": 2048, "all": 6000}},
        mirror=True, warps=0, shifts=0, generated_share=0.75, doubt_weight=4.0, position_share=0.15,
        describe_share=0.25, grow=None)),
}
NEEDS = {"toy-unet": ("toy-vae", "toy-clip"), "toy-dit": ("toy-vae", "toy-clip"), "toy-clip": (),
         "toy-vae": (), "toy-vlm": ("toy-clip", "toy-unet", "toy-dit")}


class ZooError(Exception):
    pass


def pick_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


# -- building blocks ------------------------------------------------------------------------------

def to_tensor(images: np.ndarray, device: str):
    import torch

    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def new_vae(arch: dict[str, Any]):
    from diffusers import AutoencoderKL

    n = len(arch["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(arch["block_out_channels"]),
        layers_per_block=1, latent_channels=arch["latent_channels"], norm_num_groups=16,
        mid_block_add_attention=False,
        sample_size=IMAGE_SIZE, scaling_factor=1.0, shift_factor=0.0)


def new_clip(arch: dict[str, Any], vocab_size: int):
    from transformers import CLIPConfig, CLIPModel

    h, n_layers, heads = arch["hidden"], arch["layers"], arch["heads"]
    th = arch.get("text_hidden", h)
    text = dict(vocab_size=vocab_size, hidden_size=th, intermediate_size=4 * th, num_hidden_layers=n_layers,
                num_attention_heads=heads, max_position_embeddings=MAX_TOKENS,
                projection_dim=arch["projection"], bos_token_id=vocab_size - 2,
                eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    vision = dict(hidden_size=h, intermediate_size=4 * h, num_hidden_layers=n_layers,
                  num_attention_heads=heads, image_size=IMAGE_SIZE, patch_size=arch["patch"],
                  projection_dim=arch["projection"])
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=arch["projection"]))


def image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                              crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                              do_convert_rgb=True)


def clip_pixels(x, proc):
    """[-1, 1] images -> the processor's normalisation (same numbers as at scoring time)."""
    import torch

    mean = torch.tensor(proc.image_mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(proc.image_std, device=x.device).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def text_encoder_from_clip(clip, with_projection: bool):
    """The CLIP text tower as a standalone ``CLIPTextModel[WithProjection]``."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(**clip.config.text_config.to_dict())
    cfg.projection_dim = clip.config.projection_dim
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg)
    src = clip.state_dict()
    # The tower's keys carry a "text_model." prefix in some transformers versions, not in others.
    state = {}
    for k in model.state_dict():
        for cand in (k, "text_model." + k, k.removeprefix("text_model.")):
            if cand in src:
                state[k] = src[cand]
                break
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise ZooError(f"text tower conversion: missing {missing}, unexpected {unexpected}")
    return model


def unet_scheduler(kind: str = "ddpm"):
    from diffusers import DDIMScheduler, DDPMScheduler

    cfg = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
               beta_end=0.012, prediction_type="v_prediction", clip_sample=False,
               rescale_betas_zero_snr=True, timestep_spacing="trailing")
    if kind == "ddim":
        return DDIMScheduler(**cfg, set_alpha_to_one=False, steps_offset=1)  # trailing: offset unused
    return DDPMScheduler(**cfg)


def new_unet(arch: dict[str, Any], cross_dim: int, latent_channels: int):
    from diffusers import UNet2DConditionModel

    ch = tuple(arch["block_out_channels"])
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4, in_channels=latent_channels, out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")[:len(ch)],
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")[-len(ch):],
        block_out_channels=ch, layers_per_block=arch["layers_per_block"], cross_attention_dim=cross_dim,
        attention_head_dim=arch["attention_head_dim"], norm_num_groups=32)


def new_transformer(arch: dict[str, Any], joint_dim: int, pooled_dim: int, latent_channels: int):
    from diffusers import SD3Transformer2DModel

    heads, head_dim = arch["heads"], arch["head_dim"]
    return SD3Transformer2DModel(
        sample_size=IMAGE_SIZE // 4, patch_size=arch["patch"], in_channels=latent_channels,
        out_channels=latent_channels, num_layers=arch["layers"], attention_head_dim=head_dim,
        num_attention_heads=heads, joint_attention_dim=joint_dim, caption_projection_dim=heads * head_dim,
        pooled_projection_dim=pooled_dim, pos_embed_max_size=IMAGE_SIZE // 4 // arch["patch"] * 2)


# -- the training loop, shared ----------------------------------------------------------------------

class EMA:
    def __init__(self, model, decay: float) -> None:
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def update(self, model, step: int) -> None:
        import torch

        d = min(self.decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(self.model.parameters(), model.parameters(), strict=False):
                e.lerp_(p.detach(), 1 - d)


@dataclass
class Progress:
    name: str
    step: int = 0
    seconds: float = 0.0
    """Training wall time so far, over every session."""
    sessions: list[dict[str, Any]] = field(default_factory=list)
    loss: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)


def state_path(name: str) -> Path:
    return zdata.cache_root() / f"{name}.train-state.pt"


def load_progress(folder: Path, name: str) -> Progress:
    p = folder / "training.json"
    if p.exists():
        raw = json.loads(p.read_text())
        return Progress(**raw)
    return Progress(name=name)


def save_progress(folder: Path, prog: Progress) -> None:
    (folder / "training.json").write_text(json.dumps(asdict(prog), indent=1) + "\n")


def _lr_lambda(warmup: int, recipe: Recipe | None = None, prog: Progress | None = None,
               total: int = 0, start: int = 0, peak: float = 1.0, span: int | None = None):
    """Warmup over the scheduler's own steps (a fresh optimizer needs it again), times the
    recipe's cosine decay over the model's steps (``prog.step``, read live) from ``start`` to the
    floor at ``total`` (or ``span`` steps after ``start``), times ``peak`` (a later stage's own
    peak, as a share of the recipe's ``lr``)."""
    if recipe is None or recipe.lr_floor is None or prog is None or total <= 0:
        return lambda step: peak * min(1.0, (step + 1) / warmup)
    floor = recipe.lr_floor
    length = max(1, span if span else total - start)

    def factor(step: int) -> float:
        done = min(1.0, max(0, prog.step - start) / length)
        # A stage that keeps the optimizer (a restart) warms up from its own first step too.
        warm = min(step, max(0, prog.step - start)) if start else step
        return min(1.0, (warm + 1) / warmup) * peak * (
            floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done)))

    return factor


def train(name: str, *, steps: int | None = None, minutes: float | None = None, device: str = "auto",
          out: Path | None = None, threads: int | None = None, fresh: bool = False,
          save_every_min: float = 5.0, evaluate: bool = True, data: int | None = None,
          log=print) -> Path:
    """Train (or continue training) one zoo model; returns its folder.

    ``evaluate`` adds the figures of the model card at the end (minutes for the generators);
    ``data`` overrides the number of training images (tests use a few hundred)."""
    import torch
    from tqdm import tqdm

    if name not in RECIPES:
        from harness.errors import did_you_mean

        raise ZooError(f"no zoo model {name!r}.{did_you_mean(name, list(RECIPES))}")
    recipe = RECIPES[name]
    if data is not None:
        from dataclasses import replace

        recipe = replace(recipe, data=data)
    root = out or ZOO_DIR
    folder = root / name
    for need in NEEDS[name]:
        if not (root / need / "training.json").exists():
            raise ZooError(f"{name} needs {need} first: harness zoo train {need}")
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    torch.manual_seed(0)
    target = steps if steps is not None else recipe.steps
    prog = Progress(name=name) if fresh else load_progress(folder, name)
    trainer = TRAINERS[recipe.kind](name, recipe, root, dev, resume=not fresh and folder.exists())
    changed = trainer.begin(prog.step, log)
    opt = torch.optim.AdamW([p for p in trainer.model.parameters() if p.requires_grad], lr=recipe.lr,
                            weight_decay=0.01 if recipe.kind != "vae" else 0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe=recipe, prog=prog, total=target,
                                                              **trainer.schedule(prog.step)))
    ema = EMA(trainer.model, recipe.ema) if recipe.ema else None
    sp = state_path(name)
    if changed:  # the saved optimizer state is the old model's shapes
        log(f"{name}: model changed at step {prog.step} (fresh optimizer)")
    elif not fresh and sp.exists() and folder.exists():
        st = torch.load(sp, map_location=dev, weights_only=False)
        if st.get("step") == prog.step:
            trainer.model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            for group, base, f in zip(opt.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
                group["lr"] = base * f(sched.last_epoch)  # this stage's curve, not the saved rate
            if ema is not None and "ema" in st:
                ema.model.load_state_dict(st["ema"])
            log(f"{name}: resuming at step {prog.step} with optimizer state")
        else:
            log(f"{name}: resuming at step {prog.step} from the saved weights (fresh optimizer)")
    elif prog.step:
        log(f"{name}: resuming at step {prog.step} from the saved weights (fresh optimizer)")
    rng = np.random.default_rng(prog.step + 12345)
    started = time.time()
    deadline = started + minutes * 60 if minutes else None
    last_save = started
    session_start = prog.step
    # A stage boundary (the model or its lr curve changes there) ends the session; the next
    # one starts it.
    stage_end = trainer.stage_end(prog.step)
    end = min(target, stage_end) if stage_end is not None else target
    losses: list[float] = []
    bar = tqdm(total=target, initial=min(prog.step, target), desc=f"train {name}", unit="step",
               mininterval=5.0, dynamic_ncols=True)

    def checkpoint() -> None:
        nonlocal last_save
        now = time.time()
        prog.seconds += now - checkpoint.t0
        checkpoint.t0 = now
        prog.loss = float(np.mean(losses[-200:])) if losses else prog.loss
        trainer.save(folder, ema.model if ema else trainer.model)
        torch.save({"step": prog.step, "model": trainer.model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), **({"ema": ema.model.state_dict()} if ema else {})},
                   sp.with_suffix(".tmp"))
        os.replace(sp.with_suffix(".tmp"), sp)
        save_progress(folder, prog)
        last_save = now

    checkpoint.t0 = started
    trainer.model.train()
    import signal

    def stop(signum, frame):  # SIGTERM (and SIGINT in background jobs) save and stop cleanly
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        while prog.step < end and (deadline is None or time.time() < deadline):
            loss = trainer.loss(rng, recipe.batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update(trainer.model, prog.step)
            prog.step += 1  # before the scheduler: its curve reads the step about to be taken
            sched.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            if prog.step % 50 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
            if time.time() - last_save > save_every_min * 60:
                checkpoint()
    except KeyboardInterrupt:
        log(f"{name}: interrupted at step {prog.step}; saving")
    finally:
        signal.signal(signal.SIGTERM, old)
    bar.close()
    prog.sessions.append({"steps": [session_start, prog.step], "device": _device_name(dev),
                          "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
                          "seconds": round(time.time() - started, 1)})
    checkpoint()
    more = (stage_end is not None and prog.step == stage_end < target
            and (deadline is None or time.time() < deadline))
    if (evaluate and not more) or recipe.kind == "vae":  # the VAE's finish sets its scaling factor
        trainer.finish(folder, ema.model if ema else trainer.model, prog)
    save_progress(folder, prog)
    write_card(folder, name, recipe, prog)
    log(f"{name}: step {prog.step}, loss {prog.loss:.4f}, {prog.seconds / 60:.1f} min in total -> {folder}")
    if more:  # on into the next stage, with what is left of the time
        left = None if deadline is None else (deadline - time.time()) / 60
        return train(name, steps=steps, minutes=left, device=device, out=out, threads=threads,
                     save_every_min=save_every_min, evaluate=evaluate, data=data, log=log)
    return folder


def _device_name(dev: str) -> str:
    import torch

    if dev.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


# -- the four trainers --------------------------------------------------------------------------------

class _Trainer:
    def __init__(self, name: str, recipe: Recipe, root: Path, dev: str, resume: bool) -> None:
        self.name, self.recipe, self.root, self.dev = name, recipe, root, dev
        split, seed = recipe.arch.get("renders", ("train", 0))
        self.data = zdata.load(split, recipe.data, IMAGE_SIZE, seed=seed)

    def finish(self, folder: Path, model, prog: Progress) -> None:
        """Last touches after training (statistics, figures for the card)."""

    def begin(self, step: int, log=print) -> bool:
        """Bring the model to the recipe's stage at ``step`` (before the optimizer is made); True
        when it changed shape, so the saved optimizer state no longer fits."""
        return False

    def stage_end(self, step: int) -> int | None:
        """The step where the next stage begins (the model or its learning-rate curve changes;
        a session stops there), or None."""
        return None

    def schedule(self, step: int) -> dict[str, Any]:
        """The learning-rate curve in force at ``step`` (:func:`_lr_lambda`'s ``warmup``,
        ``start``, ``peak``, ``span``)."""
        return {"warmup": self.recipe.warmup}


class VAETrainer(_Trainer):
    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        from diffusers import AutoencoderKL

        folder = self.root / self.name
        self.model = (AutoencoderKL.from_pretrained(folder) if resume else new_vae(self.recipe.arch))
        self.model.to(self.dev)

    def loss(self, rng, n):
        import torch.nn.functional as F

        imgs, _, _ = self.data.batch(rng, n)
        x = to_tensor(imgs, self.dev)
        post = self.model.encode(x).latent_dist
        rec = self.model.decode(post.sample()).sample
        # L1 keeps edges (letters) sharper than L2; the KL term only keeps latents bounded.
        return F.l1_loss(rec, x) + 0.5 * F.mse_loss(rec, x) + self.recipe.arch["kl_weight"] * post.kl().mean()

    def save(self, folder: Path, model) -> None:
        model.save_pretrained(folder)

    def finish(self, folder: Path, model, prog: Progress) -> None:
        """Set the scaling factor so latents have unit RMS (shift 0: the SD1.5 pipeline has no shift,
        so both generators see the same latents); PSNR on held-out images."""
        import torch
        from diffusers import AutoencoderKL

        model.eval()
        ev = zdata.load("eval", 512, IMAGE_SIZE)
        with torch.no_grad():
            x = to_tensor(ev.images, self.dev)
            z = torch.cat([model.encode(x[i:i + 64]).latent_dist.mean for i in range(0, len(x), 64)])
            rec = torch.cat([model.decode(z[i:i + 64]).sample for i in range(0, len(z), 64)]).clamp(-1, 1)
        mse = float(((rec - x) / 2).pow(2).mean())
        shift, std, rms = float(z.mean()), float(z.std()), float(z.pow(2).mean().sqrt())
        vae = AutoencoderKL.from_pretrained(folder)
        vae.register_to_config(scaling_factor=round(1.0 / rms, 5), shift_factor=0.0)
        vae.save_pretrained(folder)
        prog.figures.update({"eval_psnr_db": round(10 * math.log10(1.0 / max(mse, 1e-10)), 2),
                             "latent_mean": round(shift, 4), "latent_std": round(std, 4),
                             "latent_rms": round(rms, 4)})


class CLIPTrainer(_Trainer):
    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        from transformers import CLIPModel

        folder = self.root / self.name
        self.tok = toy_tokenizer(zdata.cache_root() / "toy-tokenizer")
        self.proc = image_processor()
        self.model = (CLIPModel.from_pretrained(folder) if resume
                      else new_clip(self.recipe.arch, len(self.tok))).to(self.dev)

    def loss(self, rng, n):
        imgs, caps, idx = self.data.batch(rng, n)
        # Identical captions in one batch are not negatives of each other: keep one of each.
        keep, seen = [], set()
        for i, c in enumerate(caps):
            if c not in seen:
                seen.add(c)
                keep.append(i)
        imgs, caps = imgs[keep], [caps[i] for i in keep]
        x = clip_pixels(to_tensor(imgs, self.dev), self.proc)
        t = self.tok(caps, padding="max_length", truncation=True, return_tensors="pt").to(self.dev)
        return self.model(input_ids=t.input_ids, attention_mask=t.attention_mask, pixel_values=x,
                          return_loss=True).loss

    def save(self, folder: Path, model) -> None:
        model.save_pretrained(folder)
        self.tok.save_pretrained(folder)
        self.proc.save_pretrained(folder)

    def finish(self, folder: Path, model, prog: Progress) -> None:
        from harness.zoo.evaluate import clip_retrieval

        prog.figures.update(clip_retrieval(folder, self.dev))


class _DiffusionTrainer(_Trainer):
    """Shared: VAE latents of the whole dataset (posterior mean and std, computed once)."""

    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        import torch
        from diffusers import AutoencoderKL
        from transformers import CLIPModel, CLIPTokenizer

        self.vae = AutoencoderKL.from_pretrained(self.root / "toy-vae").to(self.dev).eval()
        self.clip = CLIPModel.from_pretrained(self.root / "toy-clip").eval()
        self.tok = CLIPTokenizer.from_pretrained(self.root / "toy-clip")
        cache = zdata.cache_root() / f"latents-{self.recipe.data}-{_sha(self.root / 'toy-vae')[:12]}.pt"
        if cache.exists():
            self.mean, self.std = torch.load(cache).values()
        else:
            from tqdm import tqdm

            means, stds = [], []
            with torch.no_grad():
                for i in tqdm(range(0, len(self.data), 256), desc="encode latents", mininterval=5):
                    d = self.vae.encode(to_tensor(self.data.images[i:i + 256], self.dev)).latent_dist
                    means.append(d.mean.cpu().half())
                    stds.append(d.std.cpu().half())
            self.mean, self.std = torch.cat(means), torch.cat(stds)
            torch.save({"mean": self.mean, "std": self.std}, cache)
        self.scale = float(self.vae.config.scaling_factor)
        self.shift = float(self.vae.config.shift_factor or 0.0)

    def latents(self, idx):
        import torch

        i = torch.from_numpy(idx)
        m, s = self.mean[i].float(), self.std[i].float()
        return (m + s * torch.randn_like(m)).to(self.dev)

    def captions(self, rng, caps: list[str]) -> list[str]:
        drop = rng.random(len(caps)) < self.recipe.cond_drop
        return ["" if d else c for c, d in zip(caps, drop, strict=False)]

    def link_shared(self, folder: Path, parts: dict[str, str]) -> None:
        """Replace saved copies of shared parts with relative symlinks to the shared folders."""
        for sub, target in parts.items():
            p = folder / sub
            if p.is_symlink() or p.exists():
                if p.is_symlink() or p.is_file():
                    p.unlink()
                else:
                    shutil.rmtree(p)
            p.symlink_to(Path("..") / target, target_is_directory=True)

    def finish(self, folder: Path, model, prog: Progress) -> None:
        from harness.zoo.evaluate import attribute_accuracy

        prog.figures.update(attribute_accuracy(folder, n=96, device=self.dev))


class UNetTrainer(_DiffusionTrainer):
    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        from diffusers import UNet2DConditionModel

        self.text = text_encoder_from_clip(self.clip, with_projection=False).to(self.dev).eval()
        self.noise = unet_scheduler("ddpm")
        folder = self.root / self.name
        self.model = (UNet2DConditionModel.from_pretrained(folder / "unet") if resume else
                      new_unet(self.recipe.arch, self.text.config.hidden_size,
                               self.vae.config.latent_channels)).to(self.dev)
        self.acp = self.noise.alphas_cumprod.to(self.dev)

    def encode(self, caps: list[str]):
        import torch

        t = self.tok(caps, padding="max_length", truncation=True, return_tensors="pt").to(self.dev)
        with torch.no_grad():
            return self.text(t.input_ids)[0]

    def loss(self, rng, n):
        import torch
        import torch.nn.functional as F

        _, caps, idx = self.data.batch(rng, n)
        z0 = self.latents(idx) * self.scale
        ctx = self.encode(self.captions(rng, caps))
        t = torch.randint(0, 1000, (n,), device=self.dev)
        eps = torch.randn_like(z0)
        a = self.acp[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - self.acp[t]).sqrt().view(-1, 1, 1, 1)
        zt = a * z0 + s * eps
        v = a * eps - s * z0
        pred = self.model(zt, t, encoder_hidden_states=ctx).sample
        return F.mse_loss(pred, v)

    def save(self, folder: Path, model) -> None:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text, tokenizer=self.tok, unet=model,
                                       scheduler=unet_scheduler("ddim"), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(folder)
        self.link_shared(folder, {"vae": "toy-vae", "tokenizer": "toy-clip-text/tokenizer",
                                  "text_encoder": "toy-clip-text/text_encoder"})
        _save_text_towers(self.root, self.clip, self.tok)


class DiTTrainer(_DiffusionTrainer):
    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

        self.text = text_encoder_from_clip(self.clip, with_projection=True).to(self.dev).eval()
        folder = self.root / self.name
        h, p = self.text.config.hidden_size, self.text.config.projection_dim
        self.model = (SD3Transformer2DModel.from_pretrained(folder / "transformer") if resume else
                      new_transformer(self.recipe.arch, 2 * h, 2 * p,
                                      self.vae.config.latent_channels)).to(self.dev)
        self.pipe = StableDiffusion3Pipeline(
            transformer=self.model, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=self.vae,
            text_encoder=self.text, tokenizer=self.tok, text_encoder_2=self.text, tokenizer_2=self.tok,
            text_encoder_3=None, tokenizer_3=None)

    def loss(self, rng, n):
        import torch
        import torch.nn.functional as F

        _, caps, idx = self.data.batch(rng, n)
        z0 = (self.latents(idx) - self.shift) * self.scale
        with torch.no_grad():
            ctx, _, pooled, _ = self.pipe.encode_prompt(
                self.captions(rng, caps), None, None, device=self.dev, do_classifier_free_guidance=False,
                max_sequence_length=T5_TOKENS)
        # Logit-normal timesteps, as in SD3 training.
        sigma = torch.sigmoid(torch.randn(n, device=self.dev)).view(-1, 1, 1, 1)
        eps = torch.randn_like(z0)
        zt = (1 - sigma) * z0 + sigma * eps
        pred = self.model(hidden_states=zt, timestep=sigma.flatten() * 1000, encoder_hidden_states=ctx,
                          pooled_projections=pooled).sample
        return F.mse_loss(pred, eps - z0)

    def save(self, folder: Path, model) -> None:
        from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

        pipe = StableDiffusion3Pipeline(
            transformer=model, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=self.vae,
            text_encoder=self.text, tokenizer=self.tok, text_encoder_2=self.text, tokenizer_2=self.tok,
            text_encoder_3=None, tokenizer_3=None)
        pipe.save_pretrained(folder)
        shared = "toy-clip-text/text_encoder_with_projection"
        self.link_shared(folder, {"vae": "toy-vae", "tokenizer": "toy-clip-text/tokenizer",
                                  "tokenizer_2": "toy-clip-text/tokenizer", "text_encoder": shared,
                                  "text_encoder_2": shared})
        _save_text_towers(self.root, self.clip, self.tok)


def _save_text_towers(root: Path, clip, tok) -> None:
    """The toy CLIP's text tower as the generators' text encoders (stored once, linked)."""
    d = root / "toy-clip-text"
    stamp = d / ".source"
    src = _sha(root / "toy-clip")
    if stamp.exists() and stamp.read_text() == src:
        return
    shutil.rmtree(d, ignore_errors=True)
    text_encoder_from_clip(clip, False).save_pretrained(d / "text_encoder")
    text_encoder_from_clip(clip, True).save_pretrained(d / "text_encoder_with_projection")
    tok.save_pretrained(d / "tokenizer")
    stamp.write_text(src)


def _sha(folder: Path) -> str:
    from harness.generators.diffusers_loading import folder_fingerprint

    return folder_fingerprint(folder)


class VLMTrainer(_Trainer):
    """The toy VLM (a LLaVA-format model by default) taught to answer yes or no to questions
    about toy-world images (atomic questions and the VQAScore question on matching and near-miss
    captions), by cross-entropy on the answer token: the number VQAScore and the question-based
    scores read; and to caption renders (many target tokens per image: grounding).

    Rows come from two sources: renders (answers from the scene) and, a ``generated_share`` of
    them, the zoo generators' images of other captions (:mod:`harness.zoo.vlm_data`), answered by
    what the rule-based checker reads from the image: the metrics score generated images, and the
    checker is what their answers are held to. Both cover every colour/shape pair (``renders``:
    a split and seed of its own; the ``all`` pool of generated images): the generators' training
    split leaves some pairs out to test *them* on unseen pairs, and the judge of that test must
    know those pairs. The quality benchmark's held-out scenes are drawn from neither."""

    def __init__(self, *a, resume: bool, **kw) -> None:
        super().__init__(*a, resume=resume, **kw)
        from harness.toyworld import questions
        from harness.zoo import vlm

        folder = self.root / self.name
        arch = dict(self.recipe.arch)
        family = arch.pop("family")
        arch.pop("renders", None)
        counts = dict(arch.pop("generated", {}))
        self.generated_share = float(arch.pop("generated_share", 0.0)) if counts else 0.0
        self.describe_share = float(arch.pop("describe_share", 0.25))
        doubt_weight = float(arch.pop("doubt_weight", 1.0))
        self.position_share = float(arch.pop("position_share", 0.0))
        mirror = bool(arch.pop("mirror", False))
        warps = int(arch.pop("warps", 0))
        shifts = int(arch.pop("shifts", 0))
        self.grow = dict(arch.pop("grow")) if arch.get("grow") else None
        arch.pop("grow", None)
        self.restarts = sorted((dict(r) for r in arch.pop("restarts", ()) or ()), key=lambda r: r["at"])
        from harness.zoo import vlm_data

        if counts and self.recipe.data < 1000:
            # A test-sized run (a few hundred renders) draws a test-sized generated set too.
            counts = {g: dict.fromkeys(vlm_data.pools(spec), max(2, self.recipe.data // 32))
                      for g, spec in counts.items()}
        self.gen, self.by_source = None, []
        if counts:
            self.gen = vlm_data.load(self.root, counts, self.dev, mirror=mirror, warps=warps,
                                     shifts=shifts)
            # Each generator equally often, whatever its number of images; within one, images
            # whose checker reading hangs on a hair ``doubt_weight`` times as often as the rest
            # (where the judge's answers and the checker's part most).
            self.by_source = [np.flatnonzero(np.array(self.gen.sources) == g) for g in counts]
            w = np.where(self.gen.doubtful, doubt_weight, 1.0)
            self.source_p = [w[ix] / w[ix].sum() for ix in self.by_source]
        if resume:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.model = AutoModelForImageTextToText.from_pretrained(folder)
            self.proc = AutoProcessor.from_pretrained(folder)
        else:
            source = arch.pop("vision_from", None)
            clip = None
            if source:  # start from the trained toy CLIP's image tower: grounding for free
                from transformers import CLIPModel

                clip = CLIPModel.from_pretrained(self.root / source)
                arch["vision_config"] = {k: v for k, v in clip.config.vision_config.to_dict().items()
                                         if k not in ("model_type", "transformers_version")}
            self.model, self.proc = vlm.build(family, vlm.words_of(questions.all_question_texts()),
                                              image_size=IMAGE_SIZE, **arch)
            if clip is not None:
                self.model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
        self.model.to(self.dev)
        tok = self.proc.tokenizer
        self.yes, self.no = tok.convert_tokens_to_ids("Yes"), tok.convert_tokens_to_ids("No")
        if self.model.config.model_type == "qwen2_vl":
            self.batcher = vlm.QwenBatcher(self.proc)
            import random

            r = random.Random(0)
            sample = [questions.training_question(r, s)[0] for s in self.data.scenes[:8]]
            try:
                self.batcher.verify(self.data.images[:8], sample)
            except ValueError as e:
                raise ZooError(f"toy-vlm: {e}; the processor changed, update vlm.QwenBatcher") from None
        else:
            self.batcher = vlm.ProcessorBatcher(self.proc)

    def vision_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    GROW_SIZES = {"vision_layers": ("vision_config", "num_hidden_layers"),
                  "vision_mlp": ("vision_config", "intermediate_size"),
                  "text_layers": ("text_config", "num_hidden_layers"),
                  "text_mlp": ("text_config", "intermediate_size")}
    """``grow`` keys of :func:`vlm.deepen` -> where the model's config holds each."""

    def to_grow(self) -> dict[str, int]:
        """What of ``grow`` the model does not have yet: ``size`` (px) and :data:`GROW_SIZES`'
        keys, each its target."""
        g = self.grow or {}
        cfg = self.model.config
        todo = {k: int(g[k]) for k, (part, attr) in self.GROW_SIZES.items()
                if g.get(k) is not None and int(getattr(getattr(cfg, part), attr)) < int(g[k])}
        if g.get("size") and self.vision_size() < int(g["size"]):
            todo["size"] = int(g["size"])
        return todo

    def begin(self, step: int, log=print) -> bool:
        """``grow`` (``at``, and ``size`` and/or :data:`GROW_SIZES`' keys): from step ``at`` on,
        the vision tower reads images at ``size`` px (:func:`vlm.resize_vision`: more, smaller
        patches; position embeddings interpolated), and the model has more blocks and wider MLPs
        (:func:`vlm.deepen`: the same function at first); its own learning-rate curve: warmup
        ``warmup``, peak ``lr``, cosine to the floor over ``span`` steps."""
        todo = self.to_grow()
        if not todo or step < self.grow["at"]:
            return False
        from harness.zoo import vlm

        if "size" in todo:
            old = self.vision_size()
            self.model, self.proc = vlm.resize_vision(self.model, self.proc, todo.pop("size"))
            self.batcher = vlm.ProcessorBatcher(self.proc)
            log(f"{self.name}: vision tower grown from {old} to {self.vision_size()} px at step {step}")
        if todo:
            self.model = vlm.deepen(self.model, **todo, seed=step)
            log(f"{self.name}: deepened to {todo} at step {step}")
        self.model.to(self.dev)
        return True

    def stage_end(self, step: int) -> int | None:
        """The next step where a stage begins: ``grow`` (while the model has not grown yet) or a
        restart; ``None`` when none is ahead."""
        g = self.grow
        ahead = [int(r["at"]) for r in getattr(self, "restarts", ()) if step < r["at"]]
        if g and step < g["at"] and self.to_grow():
            ahead.append(int(g["at"]))
        return min(ahead) if ahead else None

    def schedule(self, step: int) -> dict[str, Any]:
        """The learning-rate curve in force at ``step``: the latest stage begun by then (``grow``
        or one of ``restarts``: ``at``, ``lr``, ``warmup``, ``span``; a restart keeps the model
        and its optimizer state, and warms up again to its own peak), else the recipe's."""
        stages = [r for r in getattr(self, "restarts", ()) if step >= r["at"]]
        if self.grow and step >= self.grow["at"]:
            stages.append(self.grow)
        if stages:
            g = max(stages, key=lambda r: r["at"])
            return {"warmup": int(g.get("warmup", self.recipe.warmup)), "start": int(g["at"]),
                    "peak": float(g["lr"]) / self.recipe.lr, "span": g.get("span")}
        return {"warmup": self.recipe.warmup}

    def loss(self, rng, n):
        import random

        import torch
        import torch.nn.functional as F

        from harness.toyworld import questions

        r = random.Random(int(rng.integers(1 << 31)))
        from_gen = rng.random(n) < self.generated_share
        qs, ans, describe, imgs, p_yes = [], [], [], [], []
        for g in from_gen:
            if g:
                j = int(rng.integers(len(self.by_source)))
                k = int(rng.choice(self.by_source[j], p=self.source_p[j]))
                q, t = generated_question(r, self.gen, k, self.position_share)
                qs.append(q)
                ans.append("Yes" if t >= 0.5 else "No")
                p_yes.append(t)
                describe.append(False)
                imgs.append(self.gen.images[k])
                continue
            i = int(rng.integers(len(self.data)))
            # Caption rows: many target tokens per image (the grounding signal); the rest
            # answer a yes/no question (one target token: the number the metrics read).
            d = bool(rng.random() < self.describe_share)
            if d:
                qs.append(questions.DESCRIBE)
                ans.append(r.choice(self.data.captions[i]))
                p_yes.append(0.0)
            else:
                q, y = questions.training_question(r, self.data.scenes[i],
                                                   position_share=self.position_share)
                qs.append(q)
                ans.append("Yes" if y else "No")
                p_yes.append(float(y))
            describe.append(d)
            img = self.data.images[i]
            if rng.random() < 0.5:  # renders are cleaner than anything a generator draws
                noise = rng.normal(0, rng.uniform(2, 12), size=img.shape)
                img = np.clip(img + noise, 0, 255).astype(np.uint8)
            imgs.append(img)
        enc = {k: v.to(self.dev) for k, v in self.batcher(np.stack(imgs), qs, ans).items()}
        mask = enc.pop("answer_mask")[:, 1:]
        logits = self.model(**enc).logits[:, :-1]
        target = enc["input_ids"][:, 1:]
        d = torch.tensor(describe, device=self.dev).unsqueeze(1)
        # Yes/no rows: one answer token each, its target a probability of "Yes" (0 or 1, or a
        # share for captions a generated image partly shows), cross-entropy over the vocabulary.
        rows = ~d.squeeze(1)
        logp = F.log_softmax(logits[mask & ~d], -1)
        t = torch.tensor(p_yes, device=self.dev)[rows]
        loss = -(t * logp[:, self.yes] + (1 - t) * logp[:, self.no]).mean()
        if any(describe):
            loss = loss + 0.5 * F.cross_entropy(logits[mask & d], target[mask & d])
        return loss

    def save(self, folder: Path, model) -> None:
        model.save_pretrained(folder)
        self.proc.save_pretrained(folder)

    def finish(self, folder: Path, model, prog: Progress) -> None:
        from harness.zoo.evaluate import vlm_quality

        prog.figures.update(vlm_quality(folder, self.dev))


def generated_question(r, gen, k: int, position_share: float = 0.0) -> tuple[str, float]:
    """A question about generated image ``k`` and the checker's answer to it (a probability of
    "Yes"): as the quality benchmark asks them, the prompt's own DSG questions and near-miss
    atomic questions (no sign or word questions: the checker reads shapes only), 0 or 1; or the
    VQAScore question on the prompt's caption, a near-miss caption or another image's caption,
    the share of that caption's DSG questions the checker's reading confirms (gated as
    questions_toy gates them). A drawing is judged by how much of its caption it shows, so a
    nearly right one still ranks above an unrelated caption, as VQAScore should rank them.
    With probability ``position_share`` (drawn first), a :func:`questions.position_check`
    question about an object the checker reads."""
    from harness.toyworld import questions
    from harness.toyworld import world as W

    scene, content = gen.scenes[k], gen.contents[k]
    if position_share and r.random() < position_share:
        check = questions.position_check(r, content)
        if check is not None:
            return questions.phrase(check), float(bool(questions.answer(check, content)))
    u = r.random()
    if u < 0.3:
        v = r.random()
        other = (scene if v < 0.45 else questions.near_miss(r, scene) if v < 0.75
                 else gen.scenes[r.randrange(len(gen))])
        if other.kind == "word":  # a near miss may be a sign: the checker cannot read one
            other = gen.scenes[r.randrange(len(gen))]
        return questions.VQA_TEMPLATE.replace("{prompt}", W.caption(other, r)), caption_share(other, content)
    if u < 0.65:
        check = r.choice(questions.questions_for(scene.attributes()))["check"]
    else:
        for _ in range(50):
            check = questions.random_check(r, scene)
            if "sign" not in check and "word" not in check:
                break
    return questions.phrase(check), float(bool(questions.answer(check, content)))


def caption_share(scene, content) -> float:
    """Share of a scene's DSG questions true in ``content``, a child counting only when its
    parents are true (the gating of questions_toy)."""
    from harness.toyworld import questions

    qs = questions.questions_for(scene.attributes())
    ok: dict[str, bool] = {}
    for q in qs:
        ok[q["id"]] = bool(questions.answer(q["check"], content)) and all(ok[p] for p in q["parents"])
    return sum(ok.values()) / len(qs) if qs else 0.0


TRAINERS = {"vae": VAETrainer, "clip": CLIPTrainer, "unet": UNetTrainer, "dit": DiTTrainer,
            "vlm": VLMTrainer}


def write_card(folder: Path, name: str, recipe: Recipe, prog: Progress) -> None:
    from harness.zoo.cards import card

    (folder / "README.md").write_text(card(name, recipe, prog))
