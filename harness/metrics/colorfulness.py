"""Colourfulness (Hasler and Suesstrunk, 2003): a cheap, weight-free per-image statistic.

M = sqrt(sigma_rg^2 + sigma_yb^2) + 0.3 * sqrt(mu_rg^2 + mu_yb^2), with rg = R - G and
yb = (R + G) / 2 - B on 0..255 RGB. Around 0 for grey images, 15 "slightly", 33 "moderately",
59 "quite", 82+ "highly" colourful in the authors' perceptual study. Useful to spot washed-out
or collapsed generators; it says nothing about prompt following.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from harness.metrics.base import Metric, ReadingNotes, ScoreInput, as_rgb


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness of an HxWx3 uint8/float RGB array on the 0..255 scale."""
    a = rgb.astype(np.float64)
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


class Colorfulness(Metric):
    kind = "colorfulness"
    higher_is_better = True
    per = "image"
    defaults = {"resize": None}
    """resize: None scores at native size; an int scores a bicubic resize to that square size."""

    def how_to_read(self, identity: Mapping[str, Any]) -> ReadingNotes:
        """The authors' perceptual scale."""
        return ReadingNotes(lines={"": "Hasler-Suesstrunk: ~0 grey, 15 slightly, 33 moderately, 59 quite, "
                                       "82+ highly colourful."})

    def score_images(self, items: Sequence[ScoreInput]) -> list[tuple[float | None, dict[str, Any]]]:
        size = self.settings["resize"]
        out = []
        for it in items:
            img = as_rgb(it.image)
            if size:
                from PIL import Image

                img = img.resize((int(size), int(size)), Image.BICUBIC)
            out.append((colorfulness(np.asarray(img)), {}))
        return out
