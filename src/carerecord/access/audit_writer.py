"""The audit writer: group commit for the audit records of concurrent requests.

One per worker process (like api/writes.py's WriteQueue). Requests hand their AuditEvents to
:meth:`AuditWriter.record` and wait; one thread appends everything queued so far in a single
transaction (one chain lock, one commit) and then wakes them all. A commit costs far more than
the inserts, so batching keeps audit from halving throughput under load, while each request
still waits for the commit that holds its own record: the audit middleware sends no response
before :meth:`record` returns, and answers 503 when it raises (nothing is returned whose audit
record could be lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from carerecord.access.audit_store import AuditStore, NewEvent
from carerecord.store.threads import off_loop

log = logging.getLogger("carerecord.audit")


class AuditUnavailable(Exception):
    """The audit record could not be committed (or the writer is stopped): the request's
    response must not be sent."""


class AuditWriter:
    """Appends audit records in batches, one transaction per batch."""

    def __init__(self, store: AuditStore, max_batch: int = 512, max_turns: int = 16) -> None:
        self.store = store
        self.max_turns = max_turns
        self.max_batch = max_batch
        self._pending: list[tuple[Sequence[NewEvent], asyncio.Future[None]]] = []
        self._draining = False
        self.stopped = False

    async def record(self, events: Sequence[NewEvent]) -> None:
        """Return once ``events`` are committed; AuditUnavailable if they were not."""
        if self.stopped:
            raise AuditUnavailable("the audit writer is stopped")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, fut))
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

    async def _append_on_loop(self, rows: list[NewEvent]) -> bool:
        """Append on the event loop as soon as no other process holds the SQLite file, trying
        again every 0.2 ms for up to about 5 ms (another worker's append holds it for a tenth
        of that); False if it stayed taken. Waiting for the lock in a thread instead meant that
        thread then waited for the GIL, which the busy loop hands over only every 5 ms: with
        two workers p99 was 17 ms (benchmarks.audit, session 3)."""
        for _ in range(25):
            if self.store.try_append(rows):
                return True
            await asyncio.sleep(0.0002)
        return False

    async def _drain(self) -> None:
        try:
            await self._gather()
            while self._pending:
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
                    # round trips (and a long wait) happen in a thread.
                    if self.store.postgres or not await self._append_on_loop(rows):
                        await off_loop(self.store.append, rows)
                except Exception as exc:  # noqa: BLE001 - every request of the batch is answered 503
                    log.exception("audit commit failed for %d record(s)", len(rows))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(AuditUnavailable(str(exc)))
                    continue
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
        finally:
            self._draining = False
