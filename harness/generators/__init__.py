"""Generators: one protocol (``generate(requests) -> results``) for local pipelines, closed APIs
and imported folders. Each lives in its own module and imports its heavy libraries lazily."""

from harness.generators.base import Generator

__all__ = ["Generator"]
