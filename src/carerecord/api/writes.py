"""Group commit for the writes of concurrent requests.

A commit costs more than a small write (on SQLite, writing every touched B-tree page to the
WAL: about 0.5 ms against 0.1-0.2 ms of inserts for a Patient), so committing each request's
write on its own caps single creates well below what the database can take. Requests hand
their write to :class:`WriteQueue`; one worker thread runs everything queued so far in a
single unit, each job under its own savepoint (so one job failing undoes only its own writes
and answers only its own request), commits once, then answers them all. While it runs, the
event loop keeps parsing and validating new requests, which queue for the next batch.

Nothing is answered before its commit, so a 201 still means the write is durable. A batch of
small jobs is first tried all together, without savepoints, and job by job only if that fails
(:meth:`WriteQueue._execute`).

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
        self.retried = 0  # batches whose all-or-none try failed and ran job by job (tests)
        self._doubt = 0  # batches to run job by job before trying all-or-none again

    async def run(self, job: Callable[[Unit], T], *, small: bool = False) -> T:
        """Run ``job`` on a unit shared with other queued jobs; return its result or raise its
        error once the batch has committed. ``small``: a write of one resource with no search
        inside and nothing done outside its unit, which may run on the event loop, and may be
        run twice when a batch tried all together fails (see the module's docstring and
        :meth:`_execute`)."""
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
                        outcomes = await off_loop(self._execute, jobs, self._all_small(batch))
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
        if not self.inline or not self._all_small(batch):
            return None
        lock = writer_lock(self.repo.engine)
        if lock is not None and not lock.acquire(blocking=False):
            return None
        try:
            outcomes = self._execute([j for j, _, _ in batch], True)
        finally:
            if lock is not None:
                lock.release()
        self.batches_on_loop += 1
        return outcomes

    @staticmethod
    def _all_small(batch: list[Pending]) -> bool:
        return all(small for _, _, small in batch)

    def _execute(self, jobs: list[Job], small: bool = False) -> list[tuple[bool, Any]]:
        """Run the batch in one unit. Small jobs (one resource each) are first tried all
        together without savepoints; if any of them fails, that unit is rolled back and the
        batch runs again job by job, each under its own savepoint, so one job's failure
        answers only its own request. A savepoint made SQLite copy every page a job touched
        first (to be able to undo it): database CPU per create in a batch of 8, 436-452 us
        with savepoints against 272-293 us without, alternating (2026-11-24). A small job
        only reads and writes through its unit, and nothing of a rolled-back try remains,
        so running it twice is safe. After a failed try the next batches run job by job for
        a while, so a stream of failing requests (stale If-Match, say) is not paid twice."""
        if small and len(jobs) > 1:
            if self._doubt:
                self._doubt -= 1
            else:
                try:
                    with self.repo.unit() as unit:
                        values = [job(unit) for job in jobs]
                    return [(True, v) for v in values]
                except Exception:  # noqa: BLE001 - each job on its own below, with its own outcome
                    self.retried += 1
                    self._doubt = 16
        return self._each(jobs)

    def _each(self, jobs: list[Job]) -> list[tuple[bool, Any]]:
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
