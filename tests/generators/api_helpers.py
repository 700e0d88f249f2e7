"""Helpers shared by the closed-API adapter tests.

A plain module, not a package: pytest's default (prepend) import mode puts this folder on
``sys.path`` when it imports the test modules here, so they ``from api_helpers import ...``."""

import hashlib

from harness.store.journal import StoreJournal
from harness.types import GenRequest


def api_request(gen, prompt="a red cube", *, seed, controls=(), **fields) -> GenRequest:
    """Sample 0 of ``prompt`` for ``gen`` as a run plans it: revision, size, steps and guidance
    from the generator (None where it has none), ``fields`` (negative_prompt, sample, ...) over
    that."""
    base = dict(model=gen.name, generator=gen.kind, model_id=gen.model_id, revision=gen.revision,
                weights=None, prompt_id=hashlib.sha1(prompt.encode()).hexdigest()[:8],
                prompt=prompt, negative_prompt=None, sample=0, seed=seed,
                width=gen.params["width"], height=gen.params["height"],
                steps=gen.params.get("steps"), guidance=gen.params.get("guidance"),
                params=gen.request_params(), controls=tuple(controls))
    return GenRequest(**(base | fields))


def request_helpers(seed):
    """``req(gen, prompt, **fields)``: :func:`api_request` with this module's ``seed``, and
    ``one(gen, prompt, **fields)``: the single result of generating it."""

    def req(gen, prompt="a red cube", **fields):
        return api_request(gen, prompt, seed=seed, **fields)

    def one(gen, prompt="a red cube", **fields):
        return gen.generate([req(gen, prompt, **fields)])[0]

    return req, one


def journaled(gen, store=None):
    """``gen``, with its submit journal in ``store`` when one is given."""
    if store is not None:
        gen.attach_journal(StoreJournal(store))
    return gen
