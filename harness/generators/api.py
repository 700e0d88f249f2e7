"""What every closed-API adapter shares above the HTTP layer: the key, one client, a batch sent
concurrently, errors turned into results, prices from the dated table, and the journal.

:class:`APIGenerator` is for one-call APIs (the answer carries the image); :class:`JobGenerator`
for submit-and-poll APIs. Every paid step is recorded through the
:class:`harness.types.Journal` the runner attached (:meth:`Generator.attach_journal`) the
moment it happens, so a killed run never pays for the same image twice:

* a one-call request is recorded as ``sending`` when it leaves and its answer
  (``record_answer``) as it arrives; a resumed run reuses the answer, and reports a request whose
  answer never arrived instead of paying for it again (unless ``options.resubmit_unconfirmed``);
* a submit is recorded as ``sending`` before it goes out and ``submitted`` with the provider's
  job id before the wait, so a resumed run polls the job instead of submitting again;
* a submit whose answer was never recorded (``sending``) is looked for through the provider's
  list or lookup API (:meth:`JobGenerator._recover`): found, it is polled like a submitted job;
  proven absent, it is submitted; where the provider cannot tell, it is reported and not resent
  unless ``options.resubmit_unconfirmed``;
* a job that finished but whose result could not be fetched (an expired URL even after asking
  the provider again) stays in the journal: the next run polls it again instead of paying
  anew, unless ``options.resubmit_expired``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from harness.generators.http import (
    BEFORE_PAID_SEND,
    HTTPClient,
    ProviderError,
    Response,
    default_error,
    run_sync,
    same_host,
    scrub,
    scrub_obj,
)
from harness.types import CIRCUIT_OPEN


class UnreadableAnswer(ValueError):
    """A provider's answer that arrived but cannot be read (no image where one must be): raised
    by an adapter so the paid answer is journaled and reported like any other."""

    def __init__(self, message: str, request_id: str | None = None,
                 info: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.info = dict(info or {})


UNREADABLE = "paid_answer_unreadable"
"""``info`` flag of a result whose paid request was answered but whose answer could not be read:
journaled like any answer, so a later run reports it instead of paying again."""

if TYPE_CHECKING:
    from harness.types import Journal, JournalEntry

log = logging.getLogger(__name__)

class APIGenerator:
    """Mixin for closed-API generators: the key from the environment, one :class:`HTTPClient`,
    a batch sent concurrently, errors turned into results, prices from the dated table, and
    every paid answer recorded in the journal the runner attached the moment it arrives.

    Subclasses (with :class:`harness.generators.base.Generator`) set ``provider``,
    ``auth_header`` and ``key_help``, an ``Options`` dataclass with at least the fields of
    :class:`APIOptions`, and implement ``async _one(http, request) -> GenResult``.
    """

    runs_on_driver = True  # it waits on the network: under Ray a light task, not a model actor

    provider: str = ""
    """Name in errors, logs and the price table."""
    auth_header: tuple[str, str] = ("Authorization", "Bearer {key}")
    """Header that carries the key, and its value's format."""
    key_help: str = "your API key"
    request_id_header: str = "x-request-id"
    also_hosts: tuple[str, ...] = ()
    """Hosts besides base_url's that the key may be sent to (polling URLs on regional hosts)."""

    _http: HTTPClient | None = None
    _journal: Journal | None = None
    _breaker: CircuitBreaker | None = None

    def describe(self) -> dict[str, Any]:
        d = super().describe()  # type: ignore[misc]
        d["api"] = {"provider": self.provider, "base_url": self.options.base_url,  # type: ignore[attr-defined]
                    "api_key_env": self.options.api_key_env}  # type: ignore[attr-defined]
        return d

    def attach_journal(self, journal: Journal | None) -> None:
        """Keep the journal paid calls are recorded in (the runner's; None: record nothing)."""
        self._journal = journal

    def error_parser(self, status: int, body: Any, text: str) -> tuple[str | None, str]:
        return default_error(status, body, text)

    def load(self) -> None:
        """Find the credentials (:meth:`_credentials`) and build the one client and the circuit
        breaker every request of this model goes through."""
        if self._http is not None:
            return
        import importlib.util

        from harness.errors import ConfigError

        name = self.name  # type: ignore[attr-defined]
        if importlib.util.find_spec("httpx") is None:
            raise ConfigError(f"models.{name} ({self.provider}) needs the Python package httpx. "
                              "Install it with: pip install 'harness[api]'")
        headers = self._credentials()
        o = self.options  # type: ignore[attr-defined]
        self._http = HTTPClient(
            provider=self.provider, base_url=o.base_url, headers=headers,
            timeout_s=o.timeout_s, max_retries=o.max_retries, concurrency=o.concurrency,
            rpm=o.rpm, backoff_s=o.backoff_s, request_id_header=self.request_id_header,
            error_parser=self.error_parser)
        self._breaker = CircuitBreaker(getattr(o, "circuit_breaker", 0))

    def _credentials(self) -> dict[str, str]:
        """The headers that carry the key read from ``options.api_key_env`` (an adapter whose
        credentials come another way overrides this, and may set ``options.base_url``).

        Raises:
            ConfigError: the variable is not set, naming it and how to set it.
        """
        import os

        from harness.errors import ConfigError

        name = self.name  # type: ignore[attr-defined]
        env = self.options.api_key_env  # type: ignore[attr-defined]
        key = os.environ.get(env, "").strip()
        if not key:
            raise ConfigError(
                f"models.{name}: the environment variable {env} is not set; it must hold "
                f"{self.key_help} (export {env}=...). models.{name}.options.api_key_env names "
                f"a different variable.")
        header, fmt = self.auth_header
        return {header: fmt.format(key=key)}

    def close(self) -> None:
        self._http = None  # drops the key from memory too

    def _generate(self, requests: list[Any]) -> list[Any]:
        http = self._http
        assert http is not None

        async def batch() -> list[Any]:
            async with http.session():
                return list(await asyncio.gather(*(self._timed(http, r) for r in requests)))

        return run_sync(batch())

    async def _timed(self, http: HTTPClient, r: Any) -> Any:
        from harness.types import GenResult

        t0 = time.perf_counter()
        journal = self._journal
        key = r.key() if journal is not None else ""
        one_call = journal is not None and not isinstance(self, JobGenerator)
        if journal is not None:
            entry = journal.find(key)
            if entry is not None and entry.state == "done" \
                    and not (entry.outcome or {}).get("info", {}).get(UNREADABLE):
                return self._from_journal(journal, entry)
            if one_call and entry is not None and entry.state == "sending" \
                    and not self.options.resubmit_unconfirmed:  # type: ignore[attr-defined]
                return self._unconfirmed(entry)
            if one_call and entry is not None and entry.state == "done" \
                    and (entry.outcome or {}).get("info", {}).get(UNREADABLE) \
                    and not self.options.resubmit_unconfirmed:  # type: ignore[attr-defined]
                return self._from_journal(journal, entry)
        breaker = self._breaker
        token = None
        if one_call:
            # "sending" is written when the paid request leaves (not while it waits for a slot):
            # a run killed before its answer arrives must not pay for the image again.
            j = journal

            def sending() -> None:
                sent.append(True)
                j.record_sending(key, self.provider, r.model)

            token = BEFORE_PAID_SEND.set(sending)
        sent: list[bool] = []
        lost_in_flight = unreadable = False
        try:
            res = await self._one(http, r)
        except ProviderError as e:
            # An answer (any status) means no image was made; a request never sent made none.
            lost_in_flight = not (e.never_reached or e.status is not None)
            res = GenResult(status="error", error=str(e), provider_request_id=e.request_id,
                            info={"attempts": e.attempts, "http_status": e.status, "code": e.code}
                            | ({"final": e.final} if e.final else {})
                            | ({CIRCUIT_OPEN: True} if e.code == CIRCUIT_OPEN else {}))
        except (ValueError, KeyError, TypeError, OSError) as e:  # an answer we cannot read
            # The paid request went out and an answer came back: the provider may have billed
            # it, so the answer is journaled like any other and not sent again by itself.
            unreadable = bool(sent)
            what = str(e) if isinstance(e, UnreadableAnswer) else f"{type(e).__name__}: {e}"
            res = GenResult(status="error", error=f"{self.provider}: unexpected answer ({what})"
                            + (f"; the request was answered and may have been billed, so it is "
                               f"not sent again (set models.{self.name}.options."  # type: ignore[attr-defined]
                               f"resubmit_unconfirmed=true to send it anew)" if unreadable else ""),
                            provider_request_id=getattr(e, "request_id", None),
                            info=getattr(e, "info", {})
                            | ({UNREADABLE: True, "final": True} if unreadable else {}))
        finally:
            if token is not None:
                BEFORE_PAID_SEND.reset(token)
        if res.latency_s is None:
            res.latency_s = time.perf_counter() - t0
        # Whatever an adapter wrote (an exception's text, a provider's message), no key and no
        # signed URL query reaches a record, a log line or the console.
        secrets = http.secrets()
        res.error = scrub(res.error, secrets) if res.error else res.error
        res.info = scrub_obj(res.info, secrets)
        if breaker is not None:
            breaker.record(res, http, self.name)  # type: ignore[attr-defined]
        if one_call:
            assert journal is not None
            if res.status != "error" or unreadable:
                journal.record_answer(key, self.provider, r.model, _outcome(res), res.image,
                                      res.provider_request_id)
            elif not lost_in_flight:
                journal.forget(key)  # no image was made: a later run may send it again
            # else: sent, answer lost mid-flight: stays "sending", reported by the next run
        return res

    def _unconfirmed(self, entry: JournalEntry) -> Any:
        """The result for a paid request a previous run sent without recording its answer."""
        from harness.types import GenResult

        name = self.name  # type: ignore[attr-defined]
        return GenResult(status="error", info={"journal": "sending"}, error=(
            f"{self.provider}: a request for this image was sent at {entry.created_at} but the run "
            "stopped before its answer arrived; the provider may have made and billed the image, "
            "so it is not sent again. Check the provider's usage page, or set "
            f"models.{name}.options.resubmit_unconfirmed=true to send it anew."))

    @staticmethod
    def _from_journal(journal: Journal, entry: JournalEntry) -> Any:
        """The result of a paid call a run killed before storing its record already got."""
        from harness.types import GenResult

        out = dict(entry.outcome or {})
        image = journal.image(entry) if entry.image_sha256 else None
        return GenResult(status=out.get("status", "error"), image=image,
                         refusal_reason=out.get("refusal_reason"), cost_usd=out.get("cost_usd"),
                         latency_s=out.get("latency_s"),
                         provider_request_id=out.get("provider_request_id") or entry.job_id,
                         info=dict(out.get("info") or {}) | {"from_journal": True})

    async def _one(self, http: HTTPClient, r: Any) -> Any:
        raise NotImplementedError

    def _cost(self, model_id: str, size: str, quality: str | None,
              info: dict[str, Any]) -> float | None:
        """Price of one image: the config's ``price_per_image``, else the dated table."""
        from harness.prices import price_per_image

        if self.price_per_image is not None:  # type: ignore[attr-defined]
            info["price_source"] = f"models.{self.name}.price_per_image"  # type: ignore[attr-defined]
            return float(self.price_per_image)  # type: ignore[attr-defined]
        found = price_per_image(self.provider, model_id, size, quality)
        info["price_source"] = found[1] if found else None
        return found[0] if found else None

    # -- preflight (``harness check``): nothing here is paid -------------------------------

    def price_args(self, r: Any) -> tuple[str, str | None]:
        """(size, quality) the price table is read with for one request, as ``_one`` does."""
        return f"{r.width}x{r.height}", None

    def unit_price(self, r: Any, on: Any = None) -> tuple[float, dict[str, str]] | None:
        """USD one request is expected to cost and where that comes from (``as_of``, ``source``,
        ``note``), offline: the config's ``price_per_image``, else the dated table. A request
        that leaves the quality to the provider (none, or ``auto``) is priced at the dearest
        quality the table lists for its size (an upper bound). None: no price known."""
        from harness.prices import load_prices, price_per_image

        name = self.name  # type: ignore[attr-defined]
        if self.price_per_image is not None:  # type: ignore[attr-defined]
            return float(self.price_per_image), {  # type: ignore[attr-defined]
                "source": f"models.{name}.price_per_image", "as_of": ""}
        size, quality = self.price_args(r)
        found = price_per_image(self.provider, r.model_id, size, quality, on=on)
        if found is not None or quality not in (None, "auto"):
            return found
        rows = load_prices().get(self.provider, {}).get(r.model_id) or []
        qualities = {q for row in rows for q in (row.get("prices") or {})}
        priced = [(p, q) for q in sorted(qualities)
                  if (p := price_per_image(self.provider, r.model_id, size, q, on=on))]
        if not priced:
            return None
        (value, src), q = max(priced, key=lambda pq: pq[0][0])
        return value, {**src, "note": f"quality {quality or 'unset'}: priced at the dearest "
                                      f"listed ({q})"}

    def key_check(self) -> PreflightLine:
        """Whether the key's environment variable is set (offline; its value is never shown)."""
        import os

        env = self.options.api_key_env  # type: ignore[attr-defined]
        if os.environ.get(env, "").strip():
            return PreflightLine("key", "ok", f"{env} is set")
        return PreflightLine("key", "missing", f"{env} is not set: export {env}=... "
                             f"({self.key_help}), or name another variable in "
                             f"models.{self.name}.options.api_key_env")  # type: ignore[attr-defined]

    def model_check(self) -> PreflightLine:
        """Ask the provider whether it lists this model, through its free model-list or metadata
        call (loads the client: needs the key). Nothing is generated, nothing is paid."""
        try:
            self.load()
        except Exception as e:  # noqa: BLE001 - a missing key or package: say so, go on
            return PreflightLine("model", "missing", f"not checked: {e}")
        http = self._http
        assert http is not None

        async def ask() -> PreflightLine:
            async with http.session():
                return await self._lookup_model(http)

        try:
            return run_sync(ask())
        except ProviderError as e:
            secrets = http.secrets()
            if e.status == 404:
                return PreflightLine("model", "missing", f"{self.provider} does not list "
                                     f"{self.model_id}: {scrub(str(e), secrets)}")  # type: ignore[attr-defined]
            if e.status in (401, 403) or e.final == "auth":
                return PreflightLine("model", "missing", "the provider refused the key: "
                                     f"{scrub(str(e), secrets)}")
            return PreflightLine("model", "warn", f"could not ask {self.provider}: "
                                 f"{scrub(str(e), secrets)}")
        finally:
            self.close()

    async def _lookup_model(self, http: HTTPClient) -> PreflightLine:
        """The provider's answer about this model (adapters with a free call override this)."""
        return PreflightLine("model", "unchecked", f"not checkable: {self.provider} offers no "
                             "free call that lists its models")


@dataclass
class PreflightLine:
    """One finding of a preflight check of one model."""

    what: str
    """``key``, ``model`` or ``price``."""
    status: str
    """``ok``; ``warn`` (worth a look, the run can go); ``missing`` (the run cannot go);
    ``unchecked`` (the provider offers no way to check it)."""
    message: str


class CircuitBreaker:
    """Counts a model's failed requests in a row; at ``limit`` it sets the client's
    :attr:`HTTPClient.halt`, so the rest of the model's paid requests in this run fail at once
    with the reason (no more paid or doomed calls; polls of jobs already paid for go on)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit or 0))
        self.failures = 0
        """Failed requests in a row, now."""

    def record(self, res: Any, http: HTTPClient, name: str) -> None:
        """Count one result: an error adds one, anything else (an image, a refusal) resets."""
        if res.status != "error":
            self.failures = 0
            return
        info = res.info or {}
        if info.get(CIRCUIT_OPEN) or info.get("code") == CIRCUIT_OPEN \
                or info.get("journal") == "sending":
            return  # not a provider failure: held back here, or left for the user to check
        self.failures += 1
        if self.limit and self.failures >= self.limit and http.halt is None:
            last = str(res.error or "")
            last = last if len(last) <= 300 else last[:297] + "..."
            http.halt = (f"the circuit breaker opened after {self.failures} failed requests in "
                         f"a row (the last: {last}), so the rest of models.{name} is not sent "
                         "in this run; fix the cause and run again (the run resumes with them). "
                         f"models.{name}.options.circuit_breaker sets how many failures in a "
                         "row open it (0: never)")
            log.warning("%s: %s", name, http.halt)


@dataclass
class APIOptions:
    """Options every closed-API adapter takes (subclass it to add more or change defaults)."""

    base_url: str = ""
    """API root (a proxy or the test fake)."""
    api_key_env: str = ""
    """Environment variable holding the key (the key itself never goes into config)."""
    timeout_s: float = 120.0
    """Seconds to wait for one answer."""
    max_retries: int = 4
    """Retries after the first attempt (rate limits, 5xx of reads, connection failures)."""
    concurrency: int = 4
    """Requests in flight at once."""
    rpm: float | None = None
    """Requests started per minute at most; None: no limit."""
    backoff_s: float = 1.0
    """First retry delay (doubles per retry, jittered) when no Retry-After is given."""
    circuit_breaker: int = 5
    """Failed requests in a row after which the rest of this model's requests in this run are
    not sent (error results that say why; the other models go on, and a later run tries these
    again). An auth or billing refusal stops them at once. 0: never stop."""
    resubmit_unconfirmed: bool = False
    """Send again a paid request that a previous run sent but was stopped before its answer was
    recorded (killed mid-request), when the provider cannot tell whether it made the image: it
    may have, and billed it. False reports such images instead of paying twice."""


@dataclass
class JobOptions(APIOptions):
    """Options of submit-and-poll adapters."""

    poll_interval_s: float = 1.0
    """Seconds between status polls of one job."""
    deadline_s: float = 600.0
    """Seconds from submit after which a job still running becomes an error result; it stays
    in the submit journal, so the next run polls it again instead of paying anew."""
    resubmit_expired: bool = False
    """Forget a finished job whose result could not be downloaded (its URL expired and the
    provider gave no fresh one), so the next run pays for a new image; False keeps it in the
    journal and reports it."""
    recover_window_s: float = 300.0
    """Seconds before a lost submit's journal time from which the provider's list of jobs is
    searched for it (allows for clock skew between this machine and the provider)."""


@dataclass
class Job:
    """A provider job being waited for."""

    id: str
    poll_url: str
    result_url: str | None = None
    resumed: bool = False
    """Found in the submit journal (a previous run submitted it)."""


@dataclass
class Recovery:
    """What the provider's list or lookup API says about a submit a killed run sent but never
    saw answered (its journal entry is ``sending``)."""

    job: Job | None = None
    """The job that submit made: polled, never submitted again."""
    absent: bool = False
    """The provider's list proves no job was made: submitting is not paying twice."""
    note: str = ""
    """How it was found, or why the provider cannot tell (for the result and the log)."""


KEEP_JOB = "keep_job"
"""``GenResult.info`` flag: an error result whose job stays in the journal (polled again next
run, not paid for again), e.g. a finished job whose result URL expired."""


@dataclass
class JobState:
    """One poll's reading of a job."""

    status: str
    """The provider's status word (``Pending``, ``processing``, ``COMPLETED`` ...)."""
    done: bool
    """Terminal: finished, failed or refused."""
    body: Any = None


class JobGenerator(APIGenerator):
    """Submit, record the job in the journal, poll until done, fetch at once.

    Subclasses implement ``_submit`` (the paid call), ``_poll`` and ``_finish`` (turn a
    terminal state into a result, downloading the image).
    """

    async def _submit(self, http: HTTPClient, r: Any) -> tuple[Job, dict[str, Any]]:
        raise NotImplementedError

    async def _poll(self, http: HTTPClient, job: Job) -> JobState:
        raise NotImplementedError

    async def _finish(self, http: HTTPClient, r: Any, job: Job, state: JobState,
                      info: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _recover(self, http: HTTPClient, r: Any, since: datetime) -> Recovery:
        """Look for the job a lost submit (sent at ``since``, answer never recorded) made,
        through the provider's list or lookup API. The default: the provider has none."""
        return Recovery(note=f"{self.provider} offers no API to find a job whose id was never "
                             "received")

    async def _find_lost(self, http: HTTPClient, r: Any, entry: JournalEntry) -> Recovery:
        """:meth:`_recover` for a ``sending`` entry; a failed look-up proves nothing."""
        try:
            since = datetime.fromisoformat(entry.created_at)
        except (TypeError, ValueError):
            return Recovery(note=f"the journal time {entry.created_at!r} is unreadable")
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        try:
            rec = await self._recover(http, r, since)
        except ProviderError as e:
            return Recovery(note=f"looking for the job failed: {e}")
        except (ValueError, KeyError, TypeError) as e:  # a list answer we cannot read
            return Recovery(note=f"looking for the job failed: unexpected answer "
                                 f"({type(e).__name__}: {scrub(str(e))})")
        if rec.job is not None:
            log.info("%s: found job %s of a submit a killed run sent at %s (%s)", self.provider,
                     rec.job.id, entry.created_at, rec.note)
        return rec

    async def _get_own(self, http: HTTPClient, url: str) -> Response:
        """GET a URL the provider returned (a polling URL), with the key only on its hosts."""
        if not same_host(url, http.base_url, self.also_hosts):
            raise ProviderError(self.provider, None, "untrusted_url", "the provider returned a "
                                f"status URL on another host ({url.split('?')[0]}); the key is "
                                "only sent to its API host")
        return await http.get(url)

    async def _one(self, http: HTTPClient, r: Any) -> Any:
        from harness.types import GenResult

        o = self.options  # type: ignore[attr-defined]
        key, journal = r.key(), self._journal
        entry = journal.find(key) if journal is not None else None
        info: dict[str, Any] = {}
        t0 = time.perf_counter()
        found: Job | None = None
        if entry is not None and entry.state == "sending":
            rec = await self._find_lost(http, r, entry)
            info["recovery"] = rec.note
            if rec.job is not None:
                found = rec.job
                assert journal is not None
                journal.record_submitted(key, found.id, found.poll_url, found.result_url)
            elif not rec.absent and not o.resubmit_unconfirmed:
                return GenResult(status="error", info={"journal": "sending",
                                                       "recovery": rec.note}, error=(
                    f"{self.provider}: a submit for this image was sent at {entry.created_at} "
                    f"but the run stopped before its answer was recorded ({rec.note}); the job "
                    "may exist and be billed, so it is not sent again. Check the provider's "
                    f"dashboard, or set models.{self.name}.options.resubmit_unconfirmed=true "  # type: ignore[attr-defined]
                    "to submit anew."))
        if found is not None:
            job = found
            info["resumed"] = True
        elif entry is not None and entry.state == "submitted" and entry.job_id:
            job = Job(entry.job_id, entry.poll_url or "", entry.result_url, resumed=True)
            info["resumed"] = True
        else:
            token = None
            if journal is not None:
                j = journal
                token = BEFORE_PAID_SEND.set(lambda: j.record_sending(key, self.provider, r.model))
            try:
                job, sub_info = await self._submit(http, r)
            except ProviderError as e:
                # An answer (any status) means the provider refused to make the job; a request
                # never sent made none. Only a submit lost in flight stays 'sending'.
                if journal is not None and (e.never_reached or e.status is not None):
                    journal.forget(key)
                raise
            finally:
                if token is not None:
                    BEFORE_PAID_SEND.reset(token)
            info |= sub_info
            if journal is not None:
                journal.record_submitted(key, job.id, job.poll_url, job.result_url)
        deadline = time.monotonic() + o.deadline_s
        polls = 0
        while True:
            state = await self._poll(http, job)
            polls += 1
            if state.done:
                break
            if time.monotonic() >= deadline:
                return GenResult(
                    status="error", provider_request_id=job.id, info=info | {"polls": polls},
                    error=f"{self.provider}: job {job.id} still {state.status} after "
                          f"{o.deadline_s:g}s (options.deadline_s); it stays in the submit "
                          "journal, so the next run polls it again instead of submitting")
            await asyncio.sleep(o.poll_interval_s)
        info["polls"] = polls
        res = await self._finish(http, r, job, state, info)
        res.provider_request_id = res.provider_request_id or job.id
        res.latency_s = time.perf_counter() - t0
        if journal is not None:
            if res.status == "error" and res.info.pop(KEEP_JOB, False) and not o.resubmit_expired:
                pass  # paid and finished, result not fetched: the next run polls it again
            elif res.status == "error":
                journal.forget(key)  # the job failed: a later run may try again
            else:
                journal.record_answer(key, self.provider, r.model, _outcome(res), res.image,
                                      job.id)
        return res


def _outcome(res: Any) -> dict[str, Any]:
    """What the journal keeps of a result (everything but the image bytes)."""
    return {"status": res.status, "refusal_reason": res.refusal_reason, "cost_usd": res.cost_usd,
            "latency_s": res.latency_s, "provider_request_id": res.provider_request_id,
            "info": res.info}
