"""Test helpers that ship with the package: tiny random-weight pipelines built offline.

Importing this package does not import torch.
"""

from harness.testing.tiny import ARCHS, build_tiny_pipeline, ensure_tiny_pipeline

__all__ = ["ARCHS", "build_tiny_pipeline", "ensure_tiny_pipeline"]
