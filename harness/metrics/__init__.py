"""Metrics: per-image (CLIP-score, OCR, ...) and per-set (FID, KID). Each declares its direction
and every setting that changes its number; the settings are stored next to every value."""

from harness.metrics.base import Metric, ScoreInput

__all__ = ["Metric", "ScoreInput"]
