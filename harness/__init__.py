"""harness: compare text-to-image models on your own prompts.

The public surface is small: the frozen spec types in :mod:`harness.types`, the store in
:mod:`harness.store`, the runner stages in :mod:`harness.runner` and the registries of
generators and metrics. Heavy libraries (torch, diffusers) load only inside the providers
that need them, so importing this package is cheap.
"""

__version__ = "0.1.0"
