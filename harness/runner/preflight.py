"""Before anything is paid: what a run will send, what it will cost, and whether it can go.

``harness check`` (:func:`check`) reports, for each closed-API model of a run, whether its key is
there, whether the provider lists the model (free metadata calls only), whether a price is known
and how old it is, and the run's estimate: the units not stored yet (as ``harness run`` would
find them) times each model's price. ``harness run`` makes the offline part of it first
(:func:`before_run`): a missing key, or an estimate past ``run.max_cost_usd``, stops it before
any request. :class:`Budget` then holds the run to the cap as it goes.

How the cap counts (``run.max_cost_usd``): what this run's stored records already cost, plus
each new result's ``cost_usd``; a result stored without a price (an ``ok`` or ``refused`` one)
counts at its model's estimated price, an error at its own ``cost_usd`` or nothing. With a cap
set, a model whose price is not known at all is refused before the run (there would be nothing
to count it by): set ``models.<name>.price_per_image`` to run it under a cap.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.generators.base import Generator
    from harness.store import Store
    from harness.types import GenResult, WorkUnit

log = logging.getLogger(__name__)


def is_api(gen: Generator) -> bool:
    """A closed-API model: it has a price per request and a key to check."""
    return callable(getattr(gen, "unit_price", None)) and callable(getattr(gen, "key_check", None))


@dataclass
class ModelEstimate:
    """What one model of the run will send and cost."""

    name: str
    api: bool
    planned: int
    to_send: int
    """Units not stored yet (finished keys as ``harness run`` finds them)."""
    unit_price: float | None = None
    """USD per request; None: not known (or a local model)."""
    price_from: dict[str, str] = field(default_factory=dict)
    """``as_of``, ``source`` (and a ``note``) of the price."""
    spent: float = 0.0
    """What this model's stored records of the run cost (unpriced ones at ``unit_price``)."""

    @property
    def cost(self) -> float:
        return (self.unit_price or 0.0) * self.to_send


@dataclass
class Estimate:
    """The run's estimate: per model, and the totals over the API models."""

    models: dict[str, ModelEstimate]

    @property
    def requests(self) -> int:
        return sum(m.to_send for m in self.models.values() if m.api)

    @property
    def cost(self) -> float:
        return sum(m.cost for m in self.models.values() if m.api)

    @property
    def spent(self) -> float:
        return sum(m.spent for m in self.models.values() if m.api)

    @property
    def unpriced(self) -> list[str]:
        """API models with requests to send and no known price."""
        return [m.name for m in self.models.values()
                if m.api and m.to_send and m.unit_price is None]

    def prices(self) -> dict[str, float]:
        return {n: m.unit_price for n, m in self.models.items() if m.api and m.unit_price}


def estimate(store: Store | None, generators: Mapping[str, Generator], units: Sequence[WorkUnit],
             *, retry_errors: bool = True, today: dt.date | None = None) -> Estimate:
    """Per model: units planned, units still to send (``store`` None: all), the price of one
    request (offline) and what the stored ones cost."""
    by_model: dict[str, list[WorkUnit]] = {}
    for u in units:
        by_model.setdefault(u.request.model, []).append(u)
    api = {n for n in by_model if is_api(generators[n])}
    keys = [u.key for n in api for u in by_model[n]]
    done = store.finished_keys(keys, retry_errors=retry_errors) if store is not None and keys \
        else set()
    out: dict[str, ModelEstimate] = {}
    for name, mine in by_model.items():
        gen = generators[name]
        est = ModelEstimate(name, name in api, len(mine), sum(u.key not in done for u in mine))
        if est.api:
            found = gen.unit_price(mine[0].request, on=today)  # type: ignore[attr-defined]
            if found is not None:
                est.unit_price, est.price_from = float(found[0]), dict(found[1])
            if store is not None:
                stored = [u.key for u in mine if u.key in done]
                for rec in store.records_for_keys(stored):
                    if rec.cost_usd is not None:
                        est.spent += float(rec.cost_usd)
                    elif rec.status in ("ok", "refused"):
                        est.spent += est.unit_price or 0.0
        out[name] = est
    return Estimate(out)


def usd(value: float) -> str:
    """$1,234.56 from a dollar up; three significant digits below ($0.011, $0.0035)."""
    return f"${value:,.2f}" if value >= 1 or value == 0 else f"${value:.3g}"


def summary(est: Estimate, cap: float | None) -> str:
    """``this run sends 1,240 requests, about $49.60; run.max_cost_usd stops at $50``."""
    text = f"this run sends {est.requests:,} request{'s' * (est.requests != 1)}, about {usd(est.cost)}"
    if est.unpriced:
        text += f" (and {', '.join(est.unpriced)} at an unknown price)"
    if est.spent:
        text += f", after {usd(est.spent)} already spent by its stored images"
    text += (f"; run.max_cost_usd stops at {usd(cap)}" if cap is not None
             else "; no run.max_cost_usd cap is set")
    return text


def _cap_problems(est: Estimate, cap: float | None) -> list[str]:
    """Why the run cannot go under ``cap``: models without a price (nothing to count them by),
    and an estimate past the cap (of the priced part)."""
    if cap is None:
        return []
    out = []
    if est.unpriced:
        out.append(f"run.max_cost_usd is set but the price of {', '.join(est.unpriced)} is not "
                   "known (no row in harness/data/prices.yaml for its model, size and quality), "
                   "so the cap could not be kept: set models.<name>.price_per_image=<USD per "
                   "image>, or unset the cap (run.max_cost_usd=null)")
    total = est.spent + est.cost
    if total > cap + 1e-9:
        out.append(f"the estimate, {usd(est.cost)} for {est.requests:,} requests"
                   + (f" after {usd(est.spent)} already spent" if est.spent else "")
                   + f", passes run.max_cost_usd={cap:g} ({usd(cap)}): raise it "
                     f"(run.max_cost_usd={suggest_cap(total)}) or send fewer requests "
                     "(suite.limit, samples, models)")
    return out


def suggest_cap(total: float) -> str:
    """A round cap above ``total``."""
    for step in (1, 5, 10, 50, 100, 500, 1000):
        if total < step * 20:
            return f"{(int(total / step) + 1) * step:g}"
    return f"{int(total) + 1}"


def before_run(store: Store | None, generators: Mapping[str, Generator],
               units: Sequence[WorkUnit], *, cap: float | None,
               retry_errors: bool = True) -> Estimate | None:
    """The offline checks ``harness run`` makes before anything is sent: each API model with
    work has its key, and the estimate stays under ``run.max_cost_usd``. Returns the estimate
    (None when the run has no API model: nothing to do, nothing read).

    Raises:
        ConfigError: every problem found, each with its fix.
    """
    if not any(is_api(generators[n]) for n in {u.request.model for u in units}):
        return None
    est = estimate(store, generators, units, retry_errors=retry_errors)
    problems = []
    for m in est.models.values():
        if m.api and m.to_send:
            line = generators[m.name].key_check()  # type: ignore[attr-defined]
            if line.status == "missing":
                problems.append(f"models.{m.name}: {line.message}")
    problems += _cap_problems(est, cap)
    if problems:
        raise ConfigError("the run cannot start; nothing was sent:\n  - " + "\n  - ".join(problems))
    log.info("preflight: %s", summary(est, cap))
    return est


def check(store: Store | None, generators: Mapping[str, Generator], units: Sequence[WorkUnit],
          *, cap: float | None, max_price_age_days: int = 180, online: bool = True,
          retry_errors: bool = True, today: dt.date | None = None,
          echo: Callable[[str], None] = print) -> list[str]:
    """``harness check``: print what each model needs and what the run would cost; return
    what is missing (empty: the run can go). Sends only free metadata calls (``online``)."""
    day = today or dt.date.today()
    est = estimate(store, generators, units, retry_errors=retry_errors, today=day)
    missing: list[str] = []
    for m in est.models.values():
        gen = generators[m.name]
        if not m.api:
            echo(f"{m.name}: local, no API cost ({m.to_send} of {m.planned} images to generate)")
            continue
        echo(f"{m.name} ({getattr(gen, 'provider', gen.kind)} {gen.model_id}):")
        lines = [gen.key_check()]  # type: ignore[attr-defined]
        if online and m.to_send:
            lines.append(gen.model_check())  # type: ignore[attr-defined]
        elif not m.to_send:
            lines.append(_line("model", "ok", "not asked: every image is already stored"))
        else:
            lines.append(_line("model", "unchecked", "not asked (check.online=false)"))
        lines.append(_price_line(m, cap, max_price_age_days, day))
        for line in lines:
            echo(f"  {line.status:<9} {line.what:<5}  {line.message}")
            if line.status == "missing":
                missing.append(f"models.{m.name}: {line.what}: {line.message}")
        cost = f"about {usd(m.cost)}" if m.unit_price is not None else "price unknown"
        echo(f"  {m.to_send:,} of {m.planned:,} images to generate: {cost}")
    echo(summary(est, cap))
    # Unpriced models are listed above, each as a missing price.
    missing += _cap_problems(est, cap)[1 if est.unpriced else 0:]
    return missing


def _line(what: str, status: str, message: str) -> Any:
    from harness.generators.api import PreflightLine

    return PreflightLine(what, status, message)


def _price_line(m: ModelEstimate, cap: float | None, max_age: int, day: dt.date) -> Any:
    if m.unit_price is None:
        if cap is not None and m.to_send:
            return _line("price", "missing", "no price for this model, size and quality in "
                         "harness/data/prices.yaml, so run.max_cost_usd cannot be kept: set "
                         f"models.{m.name}.price_per_image=<USD per image>")
        return _line("price", "warn", "no price for this model, size and quality in "
                     "harness/data/prices.yaml: its cost is recorded as None and left out of "
                     f"the estimate (models.{m.name}.price_per_image sets one)")
    src = m.price_from
    text = f"{usd(m.unit_price)} per image"
    where = ", ".join(x for x in (f"as of {src['as_of']}" if src.get("as_of") else "",
                                  src.get("source", "")) if x)
    text += f" ({where})" if where else ""
    if src.get("note"):
        text += f"; {src['note']}"
    if src.get("as_of"):
        age = (day - dt.date.fromisoformat(src["as_of"])).days
        if age > max_age:
            return _line("price", "warn", f"{text}: {age} days old (check.max_price_age_days="
                         f"{max_age}); check the source and add a dated row to "
                         "harness/data/prices.yaml")
    return _line("price", "ok", text)


class Budget:
    """Holds a run to ``run.max_cost_usd`` while it goes: an executor asks
    :meth:`reserve` before sending a batch (refused: stop cleanly) and :meth:`settle` with its
    results. Local models cost nothing here."""

    def __init__(self, cap: float, spent: float, prices: Mapping[str, float]) -> None:
        self.cap = float(cap)
        self.spent = float(spent)
        """What the run's stored records cost, plus what this session stored since."""
        self.prices = dict(prices)
        self.reserved = 0.0
        self.stopped: str | None = None
        """Why the run stopped (None: it did not)."""

    @classmethod
    def of(cls, est: Estimate | None, cap: float | None) -> Budget | None:
        """The budget of a run with that estimate and cap (None: no cap, or no API model)."""
        if cap is None or est is None:
            return None
        return cls(cap, est.spent, est.prices())

    def reserve(self, model: str, n: int) -> bool:
        """Room for ``n`` more requests of ``model`` at its price? If so, hold it."""
        cost = self.prices.get(model, 0.0) * n
        if not cost:
            return True
        if self.spent + self.reserved + cost > self.cap + 1e-9:
            if self.stopped is None:
                self.stopped = (
                    f"run.max_cost_usd={self.cap:g} reached: {usd(self.spent)} spent"
                    + (f" (and {usd(self.reserved)} in flight)" if self.reserved else "")
                    + f", and the next batch of {model} ({n} "
                    f"image{'s' * (n != 1)}, about {usd(cost)}) would pass it. What is stored "
                    "stays; to continue, run the same command again with a higher cap, e.g. "
                    f"run.max_cost_usd={suggest_cap(self.spent + self.reserved + cost)}")
                log.warning("%s", self.stopped)
            return False
        self.reserved += cost
        return True

    def settle(self, model: str, n: int, results: Sequence[GenResult]) -> None:
        """Release what :meth:`reserve` held for ``n`` requests; count what they cost."""
        self.reserved = max(0.0, self.reserved - self.prices.get(model, 0.0) * n)
        for res in results:
            if res.cost_usd is not None:
                self.spent += float(res.cost_usd)
            elif res.status in ("ok", "refused"):
                self.spent += self.prices.get(model, 0.0)
