"""The journal of Ray API tasks, relayed to the driver: the store's only writer.

A task records paid work through a :class:`RelayJournal`. Each ``record_*`` call is put into a
:class:`Mailbox` actor and waits there until the driver has written it through the store's
journal and acknowledged it, so it is durable when it returns, as the local executor's write
is (``sending`` is stored before the paid submit goes out). ``find``, ``pending`` and
``image`` answer from a snapshot of the entries of the task's own units, taken by the driver
when it sends the task and updated with what the task records itself.

The driver's loop waits on the mailbox together with its tasks (:attr:`DriverRelay.waiting`),
so a record is written as soon as it arrives, never after a polling interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from harness.types import Journal, JournalEntry

RECORDS = frozenset({"record_sending", "record_submitted", "record_answer", "forget"})
"""The journal methods a task may ask the driver to run (every one takes the key first)."""


class Mailbox:
    """Actor body: records from tasks, each held until the driver acknowledges its write."""

    def __init__(self) -> None:
        self._queue: list[tuple[int, str, tuple[Any, ...]]] = []
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._seq = 0
        self._arrived: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._arrived is None:  # made on the actor's event loop, not in __init__
            self._arrived = asyncio.Event()
        return self._arrived

    async def record(self, op: str, args: tuple[Any, ...]) -> JournalEntry | None:
        """Called by a task: returns the entry as the driver stored it, once stored."""
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        self._queue.append((self._seq, op, args))
        self._waiting[self._seq] = fut
        self._event().set()
        return await fut

    async def take(self) -> list[tuple[int, str, tuple[Any, ...]]]:
        """Called by the driver: the records waiting to be written (waits for the first)."""
        while not self._queue:
            self._event().clear()
            await self._event().wait()
        out, self._queue = self._queue, []
        return out

    async def ack(self, answers: list[tuple[int, JournalEntry | None]]) -> None:
        """Called by the driver once the records are written: releases their tasks."""
        for seq, entry in answers:
            fut = self._waiting.pop(seq, None)
            if fut is not None and not fut.done():
                fut.set_result(entry)


class RelayJournal:
    """A :class:`harness.types.Journal` for one Ray task: writes go to the driver, reads come
    from the snapshot the driver sent along."""

    def __init__(self, mailbox: Any, entries: Mapping[str, JournalEntry],
                 images: Mapping[str, bytes]) -> None:
        self._mailbox = mailbox
        self._entries = dict(entries)
        self._images = dict(images)
        """Image bytes of ``done`` entries, by key."""

    def _send(self, op: str, key: str, *args: Any) -> None:
        import ray

        entry = ray.get(self._mailbox.record.remote(op, (key, *args)))
        if entry is None:
            self._entries.pop(key, None)
        else:
            self._entries[key] = entry

    def find(self, key: str) -> JournalEntry | None:
        """The entry for a work unit, if any."""
        return self._entries.get(key)

    def record_sending(self, key: str, provider: str, model: str) -> None:
        """The intent to submit, stored by the driver before this returns."""
        self._send("record_sending", key, provider, model)

    def record_submitted(self, key: str, job_id: str, poll_url: str | None,
                         result_url: str | None = None) -> None:
        """The provider's job, stored by the driver before this returns."""
        self._send("record_submitted", key, job_id, poll_url, result_url)

    def record_answer(self, key: str, provider: str, model: str, outcome: Mapping[str, Any],
                      image: bytes | None = None, job_id: str | None = None) -> None:
        """A paid answer, stored (image included) by the driver before this returns."""
        self._send("record_answer", key, provider, model, dict(outcome), image, job_id)
        if image:
            self._images[key] = image
        else:
            self._images.pop(key, None)

    def forget(self, key: str) -> None:
        """Drop the entry, in the driver's store too."""
        self._send("forget", key)
        self._images.pop(key, None)

    def pending(self) -> list[JournalEntry]:
        """This task's entries not yet ``done``, oldest first."""
        return sorted((e for e in self._entries.values() if e.state != "done"),
                      key=lambda e: (e.created_at, e.key))

    def image(self, entry: JournalEntry) -> bytes | None:
        """The bytes of a ``done`` entry's image."""
        return self._images.get(entry.key)


class DriverRelay:
    """The driver's side: the mailbox actor, snapshots for tasks, and the writes.

    Args:
        ray: The ray module.
        journal: The store's journal; the driver is the only one that writes it.
        actor_options: Ray options of the mailbox actor (placement, runtime env).
    """

    def __init__(self, ray: Any, journal: Journal, **actor_options: Any) -> None:
        self.ray = ray
        self.journal = journal
        self.mailbox = ray.remote(Mailbox).options(num_cpus=0, max_restarts=0,
                                                   **actor_options).remote()
        self.waiting = self.mailbox.take.remote()
        """The driver waits on this with its tasks; ready: call :meth:`write`."""

    def journal_for(self, keys: Iterable[str]) -> RelayJournal:
        """A task's journal: the entries of its units (and their images) as stored now."""
        entries: dict[str, JournalEntry] = {}
        images: dict[str, bytes] = {}
        for key in keys:
            entry = self.journal.find(key)
            if entry is None:
                continue
            entries[key] = entry
            if entry.state == "done":
                image = self.journal.image(entry)
                if image is not None:
                    images[key] = image
        return RelayJournal(self.mailbox, entries, images)

    def write(self) -> int:
        """Write the records that arrived, release their tasks, and wait for the next ones.
        Returns how many were written."""
        records = self.ray.get(self.waiting)
        answers = []
        for seq, op, args in records:
            if op not in RECORDS:
                raise ValueError(f"journal relay: {op!r} is not a journal record ({sorted(RECORDS)})")
            getattr(self.journal, op)(*args)
            answers.append((seq, self.journal.find(args[0])))
        self.mailbox.ack.remote(answers)
        self.waiting = self.mailbox.take.remote()
        return len(answers)

    def close(self) -> None:
        """Stop the mailbox (a task still recording then fails: nothing unwritten is lost
        silently, and what was written stays for the next run)."""
        try:
            self.ray.kill(self.mailbox)
        except Exception:  # noqa: BLE001 - already gone, or the cluster went away
            pass
