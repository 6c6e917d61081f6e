"""The audit writer: group commit for the audit records of concurrent requests.

One per worker process (like api/writes.py's WriteQueue). Requests hand their AuditEvents to
:meth:`AuditWriter.record` and wait; one task appends everything queued so far in a single
transaction (one chain lock, one commit) and then wakes them all. A commit costs far more than
the inserts, so batching keeps audit from halving throughput under load, while each request
still waits for the commit that holds its own record: the audit middleware sends no response
before :meth:`record` returns, and answers 503 when it raises (nothing is returned whose audit
record could be lost).

On PostgreSQL a commit is expensive where it matters most: the chain's lock is held until the
commit's WAL flush is done, so the batches of all worker processes are committed one after the
other, a flush each (0.5 ms on a quiet disk, 1.5-2.7 ms while other work writes). Batches must
therefore be large, and a batch waits, up to :attr:`AuditWriter.window`, for the requests of its
process that have begun (:meth:`AuditWriter.expect`, called by the middleware as a request
arrives) to reach :meth:`record` (or :meth:`settle` without recording): it goes as soon as they
all have. Under a steady load that makes the commit serve every request in flight, instead of
whichever had arrived when the previous commit returned (1.6 records a commit with two workers
and eight connections, before).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from carerecord.access.audit_store import AuditStore, NewEvent
from carerecord.store.threads import off_loop

log = logging.getLogger("carerecord.audit")

# How long a PostgreSQL batch may wait for the requests in flight to reach their record (the
# wait ends as soon as they all have): see AuditWriter. SQLite's commit is cheap; it does not wait.
POSTGRES_WINDOW = 0.005


def _wake_up(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Ticket:
    """A request that is expected to record (:meth:`AuditWriter.expect`)."""

    __slots__ = ("settled",)

    def __init__(self) -> None:
        self.settled = False


class AuditUnavailable(Exception):
    """The audit record could not be committed (or the writer is stopped): the request's
    response must not be sent."""


class AuditWriter:
    """Appends audit records in batches, one transaction per batch; ``window`` (seconds) is
    how long a batch may wait for the requests in flight (None: :data:`POSTGRES_WINDOW` on
    PostgreSQL, 0 on SQLite)."""

    def __init__(self, store: AuditStore, max_batch: int = 512, max_turns: int = 16,
                 window: float | None = None) -> None:
        self.store = store
        self.max_turns = max_turns
        self.max_batch = max_batch
        self.window = (POSTGRES_WINDOW if store.postgres else 0.0) if window is None else window
        self._pending: list[tuple[Sequence[NewEvent], asyncio.Future[None]]] = []
        self._draining = False
        self._expected = 0
        self._wake: asyncio.Future[None] | None = None
        self.stopped = False
        self.batches = 0  # appended so far, and the records in them (tests, tuning)
        self.records = 0

    def expect(self) -> Ticket:
        """Say that a request has begun that will call :meth:`record` (or :meth:`settle`): a
        batch waits for such requests, up to :attr:`window` seconds, before it is appended."""
        self._expected += 1
        return Ticket()

    def settle(self, ticket: Ticket) -> None:
        """The request of ``ticket`` will record nothing (more): batches stop waiting for it."""
        if not ticket.settled:
            ticket.settled = True
            self._expected -= 1
            self._nudge()

    def _nudge(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def record(self, events: Sequence[NewEvent], ticket: Ticket | None = None) -> None:
        """Return once ``events`` are committed; AuditUnavailable if they were not."""
        if ticket is not None:
            self.settle(ticket)
        if self.stopped:
            raise AuditUnavailable("the audit writer is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, fut))
        self._nudge()
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        await fut

    def stop(self) -> None:
        """Refuse every later record (what a dead writer looks like to requests)."""
        self.stopped = True

    async def _gather(self) -> None:
        """Let requests being answered on the event loop right now reach :meth:`record` before
        the batch is taken: yield to the loop while the queue still grows (a few turns at most),
        so that one commit serves them all instead of the first one alone."""
        quiet = 0
        for _ in range(self.max_turns):
            before = len(self._pending)
            await asyncio.sleep(0)
            quiet = quiet + 1 if len(self._pending) == before else 0
            if quiet >= 2 or len(self._pending) >= self.max_batch:
                return

    async def _wait_for_expected(self) -> None:
        """Wait, up to :attr:`window` seconds, until every request that has begun has reached
        :meth:`record` (or settled), or a full batch is queued."""
        if self.window <= 0 or self._expected <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while self._expected > 0 and len(self._pending) < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wake = self._wake = loop.create_future()
            timer = loop.call_later(remaining, _wake_up, wake)
            try:
                await wake
            finally:
                timer.cancel()
                self._wake = None

    async def _append_on_loop(self, rows: list[NewEvent]) -> bool:
        """Append on the event loop as soon as no other process holds the SQLite file, trying
        again up to 25 times, a turn of the loop apart; False if it stayed taken. (The sleep
        asks for 0.2 ms, but libuv's timers count whole milliseconds, so under uvloop each try
        comes one turn later, about 4 us when nothing else is ready: another worker's append,
        which holds the file for about half a millisecond, is waited out by other requests'
        work in between. With two workers reading, 0.1% of appends went on to a thread, and
        1 ms sleeps instead measured the same: 4,670-5,814 against 4,690-5,914 reads/s,
        2026-11-24.) Waiting for the lock in a thread instead meant that thread then waited
        for the GIL, which the busy loop hands over only every 5 ms: with two workers p99 was
        17 ms (benchmarks.audit, session 3)."""
        for _ in range(25):
            if self.store.try_append(rows):
                return True
            await asyncio.sleep(0.0002)
        return False

    async def _drain(self) -> None:
        try:
            await self._gather()
            while self._pending:
                await self._wait_for_expected()
                batch: list[tuple[Sequence[NewEvent], asyncio.Future[None]]] = []
                size = 0
                while self._pending and (not batch or size + len(self._pending[0][0]) <= self.max_batch):
                    item = self._pending.pop(0)
                    batch.append(item)
                    size += len(item[0])
                rows = [e for events, _ in batch for e in events]
                try:
                    # A local SQLite append takes about as long as a thread hop, so it runs on
                    # the loop, waiting there briefly for another worker's append; PostgreSQL's
                    # round trip (and its wait for the chain's lock) happens in a thread. (An
                    # asynchronous connection on the loop instead measured the same.)
                    if self.store.postgres or not await self._append_on_loop(rows):
                        await off_loop(self.store.append, rows)
                except Exception as exc:  # noqa: BLE001 - every request of the batch is answered 503
                    log.exception("audit commit failed for %d record(s)", len(rows))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(AuditUnavailable(str(exc)))
                    continue
                self.batches += 1
                self.records += len(rows)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._draining = False
