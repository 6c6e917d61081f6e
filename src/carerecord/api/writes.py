"""Group commit for the writes of concurrent requests.

A commit costs more than a small write (on SQLite, writing every touched B-tree page to the
WAL: about 0.5 ms against 0.1-0.2 ms of inserts for a Patient), so committing each request's
write on its own caps single creates well below what the database can take. Requests hand
their write to :class:`WriteQueue`; one worker thread runs everything queued so far in a
single unit, each job under its own savepoint (so one job failing undoes only its own writes
and answers only its own request), commits once, then answers them all. While it runs, the
event loop keeps parsing and validating new requests, which queue for the next batch.

Nothing is answered before its commit, so a 201 still means the write is durable.

On SQLite a batch made only of small jobs (a create, update or delete of one resource, with no
search inside: ``run(job, small=True)``) runs on the event loop itself when the file's writer
lock is free at once (another worker process may hold it: then the thread, as before). Such a
batch takes a few hundred microseconds; handing it to a thread cost more than that in the
hop and, above all, in the two threads taking turns with the GIL (server CPU per single
create 885-1,059 us in the thread against 712-763 us on the loop, measured alternately on a
busy machine, session 5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from carerecord.errors import FhirError
from carerecord.store.repository import Repository, Unit
from carerecord.store.threads import off_loop
from carerecord.store.writer_lock import writer_lock

T = TypeVar("T")
Job = Callable[[Unit], Any]
Pending = tuple[Job, "asyncio.Future[Any]", bool]


class WriteQueue:
    """Runs write jobs in batches, one unit (one commit) per batch."""

    def __init__(self, repo: Repository, max_batch: int = 64) -> None:
        self.repo = repo
        self.max_batch = max_batch
        self._pending: list[Pending] = []
        self._draining = False
        self.inline = repo.engine.dialect.name == "sqlite"  # small batches may run on the loop
        self.batches = 0  # (tests)
        self.batches_on_loop = 0  # (tests)

    async def run(self, job: Callable[[Unit], T], *, small: bool = False) -> T:
        """Run ``job`` on a unit shared with other queued jobs; return its result or raise its
        error once the batch has committed. ``small``: a write of one resource with no search
        inside, which may run on the event loop (see the module's docstring)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((job, fut, small))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await fut  # type: ignore[no-any-return]

    async def _drain(self) -> None:
        try:
            # One turn of the loop first: the handlers of requests that arrived together were
            # scheduled before this task, and each reaches the queue on its next step. Taken at
            # once, the batch held the first of them alone (with 8 clients creating, half the
            # batches were of one job and half of seven: 1,238 and 1,238 of 3,300; after one
            # turn 1,701 of 1,800 were of eight, and a lone request waits one turn, 2026-11-23).
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[:self.max_batch]
                del self._pending[:self.max_batch]
                jobs = [j for j, _, _ in batch]
                self.batches += 1
                try:
                    outcomes = self._on_loop(batch)
                    if outcomes is None:
                        outcomes = await off_loop(self._execute, jobs)
                except BaseException as exc:  # the commit itself failed: every job failed
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut, _), (ok, value) in zip(batch, outcomes, strict=True):
                    if fut.done():  # the request went away
                        continue
                    if ok:
                        fut.set_result(value)
                    else:
                        fut.set_exception(value)
        finally:
            self._draining = False

    def _on_loop(self, batch: list[Pending]) -> list[tuple[bool, Any]] | None:
        """The batch's outcomes, run here on the loop, if it is small and the writer lock is
        free now; None if it must go to a thread."""
        if not self.inline or not all(small for _, _, small in batch):
            return None
        lock = writer_lock(self.repo.engine)
        if lock is not None and not lock.acquire(blocking=False):
            return None
        try:
            outcomes = self._execute([j for j, _, _ in batch])
        finally:
            if lock is not None:
                lock.release()
        self.batches_on_loop += 1
        return outcomes

    def _execute(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
        out: list[tuple[bool, Any]] = []
        with self.repo.unit() as unit:
            for job in jobs:
                try:
                    with unit.savepoint():
                        out.append((True, job(unit)))
                except FhirError as err:
                    out.append((False, err))
                except Exception as exc:  # noqa: BLE001 - answered as a 500 to its request only
                    out.append((False, exc))
        return out
