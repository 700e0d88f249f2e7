"""The generator protocol and the base class every generator extends.

A generator is built from a ``models/<name>.yaml`` entry by Hydra (``_target_``). Construction
must be cheap and must not import torch or open network connections: the runner constructs
every selected model to plan (fingerprints, request parameters) and only calls :meth:`load`
(implicitly, through :meth:`generate`) when there is work to do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from harness.errors import ConfigError, did_you_mean
from harness.types import GenRequest, GenResult, Journal, WorkUnit


class Generator:
    """Base class: holds the model entry, validates options, builds requests.

    Subclasses set :attr:`kind`, optionally an :attr:`Options` dataclass listing the options
    they accept, and implement :meth:`_generate`.
    """

    kind: ClassVar[str] = "base"
    """Short generator kind recorded in every request (``diffusers``, ``openai`` ...)."""
    batch_dependent: ClassVar[bool] = False
    """True when an image's bytes can depend on which requests share its batch (batched
    floating-point kernels round differently with the batch shape). The executor then always
    runs a model's batches exactly as planned, so a resumed run reproduces the same bytes.
    False for APIs: each request stands alone and is never sent twice."""
    runs_on_driver: ClassVar[bool] = False
    """True when the generator needs no model process of its own and works with what the
    driver's machine has (an import folder, the API journal relayed to the driver): under Ray
    it runs as a lightweight task on the driver's node, not in a model actor."""

    @dataclasses.dataclass
    class Options:
        """Generator-specific run options (not part of the cache key)."""

    def __init__(
        self,
        *,
        name: str,
        label: str,
        model_id: str,
        revision: str | None = None,
        family: str = "",
        params: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        batch_size: int = 1,
        price_per_image: float | None = None,
        untrained: bool = False,
        notes: str = "",
        provider: str | None = None,
        open_weights: bool | None = None,
        licence: str | None = None,
        release_date: str | None = None,
        parameters: str | None = None,
    ) -> None:
        self.name = name
        self.label = label
        self.model_id = model_id
        self.revision = revision
        self.family = family
        self.params = dict(params or {})
        self.batch_size = max(1, int(batch_size))
        self.price_per_image = price_per_image
        self.untrained = untrained
        self.notes = notes
        # Facts for reports only (config: models.<name>.provider ...); None where unknown.
        self.facts = {"provider": provider, "open_weights": open_weights, "licence": licence,
                      "release_date": None if release_date is None else str(release_date),
                      "parameters": None if parameters is None else str(parameters)}
        self.options = self._parse_options(dict(options or {}))
        self.calls = 0
        """Number of generate calls made (the resume benchmark counts these)."""

    def _parse_options(self, raw: dict[str, Any]) -> Any:
        valid = [f.name for f in dataclasses.fields(self.Options)]
        for k in raw:
            if k not in valid:
                raise ConfigError(
                    f"models.{self.name}.options: unknown option {k!r} for {self.kind} "
                    f"generators.{did_you_mean(k, valid) if valid else ' This generator takes no options.'}"
                )
        return self.Options(**raw)

    # -- identity -------------------------------------------------------------------------

    def fingerprint(self) -> str | None:
        """Content hash of local weights, or None when the model id (+revision) says it all."""
        return None

    def request_params(self) -> dict[str, Any]:
        """Generator-specific parameters that go into every request (``params.extra``)."""
        return dict(self.params.get("extra") or {})

    def describe(self) -> dict[str, Any]:
        """Model identity for manifests and reports."""
        return {
            "name": self.name,
            "label": self.label,
            "kind": self.kind,
            "model_id": self.model_id,
            "revision": self.revision,
            "family": self.family,
            "untrained": self.untrained,
            "price_per_image": self.price_per_image,
            "notes": self.notes,
            **self.facts,
        }

    # -- running --------------------------------------------------------------------------

    def check_plan(self, units: Sequence[WorkUnit]) -> None:
        """Check this model's planned units before anything runs (an import's manifest against
        the planned prompts); raises :class:`ConfigError` naming the fix. Default: nothing."""

    def attach_journal(self, journal: Journal | None) -> None:
        """Take the journal of paid work that the runner hands over before a model's batches
        (None detaches it). Only closed-API adapters keep it; the default ignores it."""

    def load(self) -> None:
        """Load weights / open clients. Called once before the first batch; idempotent."""

    def generate(self, requests: Sequence[GenRequest]) -> list[GenResult]:
        """Run one batch; returns one result per request, in order."""
        self.calls += 1
        self.load()
        results = self._generate(list(requests))
        if len(results) != len(requests):
            raise RuntimeError(
                f"{type(self).__name__} returned {len(results)} results for {len(requests)} requests"
            )
        return results

    def _generate(self, requests: list[GenRequest]) -> list[GenResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release memory (GPU) and clients; the runner calls it when a model's units are done."""
