"""A real HTTP server on 127.0.0.1 that speaks providers' wire formats, for tests and demos.

::

    with FakeProviders(api_key="sk-test") as fake:
        fake.push("/v1/images/generations", Fault.rate_limit(retry_after=1))
        ... OpenAIImages(options={"base_url": fake.url + "/v1"}) ...
        assert fake.calls["/v1/images/generations"] == 2

One module per provider, each with its routes, tables (models, sizes, aspects), error shapes and
outcomes: :mod:`.openai` (Images), :mod:`.google` (Imagen ``:predict``, Gemini
``:generateContent``), :mod:`.stability` (v2beta stable-image), :mod:`.replicate`
(predictions), :mod:`.fal` (queue) and :mod:`.bfl` (submit, ``polling_url``, expiring sample
URLs). :mod:`.server` is the server they plug into; this package wires them as its default set.
:mod:`.openai_chat` (Chat Completions, for ``harness suite questions``) makes no images and is
installed on request: ``FakeProviders(providers=(openai_chat.install,))``.
``harness fake-providers`` serves them for demos (:mod:`.cli`).

To add a provider: a module here with its routes and a ``PROVIDER``, and one entry in
:data:`PROVIDERS`.
"""

from __future__ import annotations

from harness.testing.fakes import bfl, fal, google, openai, replicate, stability
from harness.testing.fakes.server import (
    Auth,
    FakeProviders,
    Fault,
    Job,
    Provider,
    Reply,
    Request,
    Route,
    prompt_image,
    prompt_png,
    register,
)

PROVIDERS: tuple[Provider, ...] = (openai.PROVIDER, google.PROVIDER, stability.PROVIDER,
                                   replicate.PROVIDER, fal.PROVIDER, bfl.PROVIDER)
"""Every provider, in the order their routes are matched (BFL's ``/v1/{model}`` last)."""
register(*PROVIDERS)

ENV_VARS = {p.name: p.env_var for p in PROVIDERS}
"""The environment variable each provider's model configs read the key from."""
DEMO_MODELS = {p.name: p.demo_model for p in PROVIDERS}
"""A model config per provider, for the demo command's example run."""


def base_urls(url: str) -> dict[str, str]:
    """The ``options.base_url`` each provider's adapter takes, on a fake at ``url``."""
    return {p.name: url + p.base_path for p in PROVIDERS}


__all__ = ["DEMO_MODELS", "ENV_VARS", "PROVIDERS", "Auth", "FakeProviders", "Fault", "Job",
           "Provider", "Reply", "Request", "Route", "base_urls", "prompt_image", "prompt_png"]
