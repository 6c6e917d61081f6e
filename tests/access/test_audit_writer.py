"""The audit writer's group commit (issue 4, audit): a batch waits, up to its window, for the
requests that have begun to reach their record, so that one commit serves them all; it never
waits longer than the window, nor for a request that settled without recording; a failed
commit fails every request of its batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from carerecord.access.audit_store import NewEvent
from carerecord.access.audit_writer import AuditUnavailable, AuditWriter
from carerecord.access.grants import Grantee
from carerecord.access.tokens import AccessTokens
from carerecord.api.app import create_app
from carerecord.config import Settings
from carerecord.store.repository import Repository


class FakeStore:
    """A PostgreSQL-like store that records the batches it was given."""

    postgres = True

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    def append(self, events: Sequence[NewEvent]) -> int:  # in the writer's thread
        time.sleep(0.001)  # a commit
        if self.fail:
            raise RuntimeError("the commit failed")
        self.batches.append([e.agent for e in events])
        return len(self.batches)


def ev(name: str) -> list[NewEvent]:
    return [NewEvent(1, None, name, "0", "R", "{}")]


def writer(store: FakeStore, window: float) -> AuditWriter:
    return AuditWriter(store, window=window)  # type: ignore[arg-type]


def test_a_batch_waits_for_the_requests_that_have_begun() -> None:
    async def main() -> None:
        store = FakeStore()
        w = writer(store, window=1.0)
        tickets = [w.expect() for _ in range(3)]

        async def request(k: int, delay: float) -> None:
            await asyncio.sleep(delay)
            await w.record(ev(f"r{k}"), tickets[k])

        started = time.monotonic()
        await asyncio.gather(request(0, 0), request(1, 0.01), request(2, 0.02))
        assert store.batches == [["r0", "r1", "r2"]]  # one commit for all three
        assert time.monotonic() - started < 0.5  # not the whole window: it went once all had recorded

    asyncio.run(main())


def test_a_batch_does_not_wait_for_a_request_that_settled_without_recording() -> None:
    async def main() -> None:
        store = FakeStore()
        w = writer(store, window=1.0)
        first, other = w.expect(), w.expect()

        async def settle_later() -> None:
            await asyncio.sleep(0.01)
            w.settle(other)  # e.g. the request failed before its record was built

        started = time.monotonic()
        await asyncio.gather(w.record(ev("a"), first), settle_later())
        assert store.batches == [["a"]] and time.monotonic() - started < 0.5

    asyncio.run(main())


def test_a_batch_waits_no_longer_than_the_window() -> None:
    async def main() -> None:
        store = FakeStore()
        w = writer(store, window=0.05)
        first = w.expect()
        w.expect()  # begun, and never records within the window
        started = time.monotonic()
        await w.record(ev("a"), first)
        assert store.batches == [["a"]]
        assert 0.04 < time.monotonic() - started < 0.5

    asyncio.run(main())


def test_without_a_window_the_first_request_does_not_wait_for_the_others() -> None:
    async def main() -> None:
        store = FakeStore()
        w = writer(store, window=0.0)
        first = w.expect()
        w.expect()
        started = time.monotonic()
        await w.record(ev("a"), first)
        assert store.batches == [["a"]] and time.monotonic() - started < 0.04

    asyncio.run(main())


def test_a_failed_commit_fails_every_request_of_its_batch() -> None:
    async def main() -> None:
        w = writer(FakeStore(fail=True), window=1.0)
        tickets = [w.expect(), w.expect()]
        results = await asyncio.gather(*(w.record(ev(f"r{k}"), t) for k, t in enumerate(tickets)),
                                       return_exceptions=True)
        assert all(isinstance(r, AuditUnavailable) for r in results)

    asyncio.run(main())


def test_settling_twice_counts_once() -> None:
    w = writer(FakeStore(), window=1.0)
    t = w.expect()
    w.settle(t)
    w.settle(t)
    other = w.expect()
    assert w._expected == 1  # noqa: SLF001
    w.settle(other)
    assert w._expected == 0  # noqa: SLF001


@pytest.mark.parametrize("window", [0.0, 0.02])
def test_every_record_is_committed_once_under_load(window: float) -> None:
    async def main() -> None:
        store = FakeStore()
        w = writer(store, window=window)

        async def request(k: int) -> None:
            t = w.expect()
            await asyncio.sleep((k % 7) / 1000)
            await w.record(ev(f"r{k}"), t)

        await asyncio.gather(*(request(k) for k in range(200)))
        names = [n for b in store.batches for n in b]
        assert sorted(names) == sorted(f"r{k}" for k in range(200))
        assert w._expected == 0  # noqa: SLF001

    asyncio.run(main())


def test_the_middleware_settles_every_request_it_made_batches_wait_for(engine: Engine) -> None:
    """Reads answered, refused or missing, writes and HEADs: once they are answered no batch
    waits for any of them, and each was recorded."""
    base = "http://testserver/fhir"
    settings = Settings(database="sqlite://", base_url=base, audit_window_ms=50)
    app = create_app(settings, Repository(engine))
    bearer = AccessTokens(engine, "http://testserver", base).mint(
        "audit-writer", "patient/*.cruds", Grantee("patient", "Patient/p1", patients=("p1",)), 300)[0]
    with TestClient(app) as c:
        auth = {"Authorization": f"Bearer {bearer}"}
        assert c.get("/fhir/Patient/p1").status_code == 401
        assert c.get("/fhir/Patient/p1", headers=auth).status_code == 404
        assert c.head("/fhir/Patient/p1", headers=auth).status_code == 404
        assert c.post("/fhir/Patient", headers=auth, json={"resourceType": "Patient"}).status_code in (201, 403)
        writer = app.state.audit_writer
        assert writer.window == 0.05
        assert writer._expected == 0  # noqa: SLF001
        assert writer.records >= 4
