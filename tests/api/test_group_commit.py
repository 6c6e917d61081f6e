"""Group commit: concurrent writes share a transaction, but each succeeds or fails alone."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from carerecord.api.writes import WriteQueue
from carerecord.errors import Invalid
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from tests.conftest import held_elsewhere


def test_a_failing_job_in_a_batch_undoes_only_its_own_writes(repo: Repository) -> None:
    ix = Interactions(repo)
    queue = WriteQueue(repo)

    def good(n: int):  # type: ignore[no-untyped-def]
        return lambda unit: ix.create(unit, {"resourceType": "Patient", "name": [{"family": f"P{n}"}]},
                                      "Patient")

    def bad(unit):  # type: ignore[no-untyped-def]
        ix.create(unit, {"resourceType": "Patient", "name": [{"family": "Half"}]}, "Patient")
        raise Invalid("refused after writing")  # its first write must be undone too

    async def main() -> list[object]:
        jobs = [good(1), bad, good(2), good(3)]
        return await asyncio.gather(*(queue.run(j) for j in jobs), return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[1], Invalid)
    assert all(getattr(r, "status", None) == 201 for i, r in enumerate(results) if i != 1)
    from carerecord.fhir.search_query import parse
    from carerecord.store.search import Searcher

    with repo.reading() as conn:
        hits = Searcher(repo.registry).run(conn, parse(("Patient",), [], repo.registry), 50).matches
    families = sorted(h.content.decode().split('"family":"')[1].split('"')[0] for h in hits)
    assert families == ["P1", "P2", "P3"]


def test_small_sqlite_batches_run_on_the_loop_unless_another_writer_holds_the_file(repo: Repository) -> None:
    """A batch of single-resource writes runs on the event loop when the SQLite writer lock is
    free; while another writer holds it the batch goes to a thread and waits there (never
    blocking the loop), and still commits; a job that may search goes to a thread."""
    import threading

    from carerecord.store.writer_lock import writer_lock

    lock = writer_lock(repo.engine)
    if repo.engine.dialect.name != "sqlite" or lock is None:
        pytest.skip("the on-loop path is for SQLite files")
    ix = Interactions(repo)
    queue = WriteQueue(repo)

    def job(family: str):  # type: ignore[no-untyped-def]
        return lambda unit: ix.create(unit, {"resourceType": "Patient", "name": [{"family": family}]}, "Patient")

    async def one(family: str, small: bool = True) -> object:
        return await queue.run(job(family), small=small)

    assert getattr(asyncio.run(one("Loop")), "status", None) == 201
    assert queue.batches_on_loop == 1
    assert getattr(asyncio.run(one("Thread", small=False)), "status", None) == 201
    assert queue.batches_on_loop == 1

    async def while_held(release: threading.Event) -> object:
        task = asyncio.ensure_future(one("Waited"))
        await asyncio.sleep(0.05)
        assert not task.done()  # waiting in a thread, and the loop still turns
        release.set()
        return await task

    with held_elsewhere(lock) as release:
        assert getattr(asyncio.run(while_held(release)), "status", None) == 201
    assert queue.batches_on_loop == 1


@pytest.mark.http
def test_concurrent_creates_over_http_are_each_answered_on_their_own(live_server: str,
                                                                     client: httpx.Client) -> None:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=live_server, timeout=30,
                                     headers={"Authorization": client.headers["Authorization"]}) as c:
            bodies = [{"resourceType": "Patient", "name": [{"family": f"C{i}"}]} for i in range(20)]
            bodies[7] = {"resourceType": "Patient", "birthDate": "1970-13-01"}
            bodies[13] = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                          "subject": {"reference": "Patient/nobody"}}
            urls = ["Patient" if b["resourceType"] == "Patient" else "Observation" for b in bodies]
            return await asyncio.gather(*(c.post(u, json=b, headers={"Content-Type": "application/fhir+json"})
                                          for u, b in zip(urls, bodies, strict=True)))

    responses = asyncio.run(main())
    statuses = [r.status_code for r in responses]
    assert statuses[7] in (400, 422) and statuses[13] == 400
    assert statuses.count(201) == 18
    assert client.get("Patient", params={"_total": "accurate"}).json()["total"] == 18


def test_requests_a_turn_behind_join_the_batch(repo: Repository) -> None:
    """Handlers of requests that arrived together reach the queue on different turns of the
    loop (one got through the middleware without waiting, the others waited once): they still
    share one batch, because the batch is taken a turn after the first job came."""
    ix = Interactions(repo)
    queue = WriteQueue(repo)

    def job(n: int):  # type: ignore[no-untyped-def]
        return lambda unit: ix.create(unit, {"resourceType": "Patient", "name": [{"family": f"T{n}"}]}, "Patient")

    async def arrive(n: int, turns: int) -> object:
        for _ in range(turns):
            await asyncio.sleep(0)
        return await queue.run(job(n), small=True)

    async def main() -> list[object]:
        return await asyncio.gather(arrive(0, 0), *(arrive(n, 1) for n in range(1, 8)))

    results = asyncio.run(main())
    assert [getattr(r, "status", None) for r in results] == [201] * 8
    assert queue.batches == 1


def _family_count(repo: Repository, family: str) -> int:
    from carerecord.fhir.search_query import parse
    from carerecord.store.search import Searcher

    with repo.reading() as conn:
        q = parse(("Patient",), [("family:exact", family)], repo.registry)
        return len(Searcher(repo.registry).run(conn, q, 50).matches)


def test_a_batch_of_small_jobs_is_tried_all_together_without_savepoints(repo: Repository) -> None:
    ix = Interactions(repo)
    queue = WriteQueue(repo)
    savepoints: list[int] = []

    def job(n: int):  # type: ignore[no-untyped-def]
        def run(unit):  # type: ignore[no-untyped-def]
            savepoints.append(unit._savepoints)  # none opened for this batch
            return ix.create(unit, {"resourceType": "Patient", "name": [{"family": f"A{n}"}]}, "Patient")
        return run

    async def main() -> list[object]:
        return await asyncio.gather(*(queue.run(job(n), small=True) for n in range(6)))

    results = asyncio.run(main())
    assert [getattr(r, "status", None) for r in results] == [201] * 6
    assert queue.batches == 1 and queue.retried == 0
    assert savepoints == [0] * 6
    assert all(_family_count(repo, f"A{n}") == 1 for n in range(6))


def test_a_failed_all_together_try_leaves_nothing_and_each_job_runs_again_on_its_own(repo: Repository) -> None:
    """One small job fails: the all-or-none unit is rolled back, then the batch runs job by
    job under savepoints. Every other job is written exactly once (not once per try), the
    failing one not at all, each request gets its own answer, and the next batches skip the
    all-or-none try for a while."""
    ix = Interactions(repo)
    queue = WriteQueue(repo)
    tries: list[str] = []

    def good(n: int):  # type: ignore[no-untyped-def]
        def run(unit):  # type: ignore[no-untyped-def]
            tries.append(f"G{n}")
            return ix.create(unit, {"resourceType": "Patient", "name": [{"family": f"G{n}"}]}, "Patient")
        return run

    def bad(unit):  # type: ignore[no-untyped-def]
        tries.append("bad")
        ix.create(unit, {"resourceType": "Patient", "name": [{"family": "Bad"}]}, "Patient")
        raise Invalid("refused after writing")

    def stale(unit):  # type: ignore[no-untyped-def]
        # A real failure inside the store: an update against a version that is not current.
        return ix.update(unit, "Patient", "nobody-here", {"resourceType": "Patient", "id": "nobody-here"},
                         if_match=3)

    async def batch(jobs: list[object]) -> list[object]:
        return await asyncio.gather(*(queue.run(j, small=True) for j in jobs),  # type: ignore[arg-type]
                                    return_exceptions=True)

    results = asyncio.run(batch([good(1), bad, good(2), good(3)]))
    assert isinstance(results[1], Invalid)
    assert [getattr(r, "status", None) for i, r in enumerate(results) if i != 1] == [201] * 3
    assert queue.retried == 1
    assert tries == ["G1", "bad", "G1", "bad", "G2", "G3"]  # the try stopped at "bad"; then each on its own
    assert [_family_count(repo, f) for f in ("G1", "G2", "G3", "Bad")] == [1, 1, 1, 0]

    from carerecord.errors import PreconditionFailed

    tries.clear()
    results = asyncio.run(batch([good(4), stale, good(5)]))
    assert isinstance(results[1], PreconditionFailed)
    assert queue.retried == 1  # in doubt after the last failure: job by job at once, no second try
    assert tries == ["G4", "G5"]
    assert [_family_count(repo, f) for f in ("G4", "G5")] == [1, 1]


def test_a_failing_commit_of_the_all_together_try_is_tried_again_job_by_job(repo: Repository,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure the jobs did not raise (here the commit of the first try) is treated like a
    job's: everything runs again under savepoints, and succeeds if the cause has passed."""
    ix = Interactions(repo)
    queue = WriteQueue(repo)
    from carerecord.store import repository as repository_module

    real = repository_module.Repository.unit
    calls: list[int] = []

    def flaky(self):  # type: ignore[no-untyped-def]
        calls.append(1)
        cm = real(self)
        if len(calls) > 1:
            return cm
        from contextlib import contextmanager

        @contextmanager
        def failing():  # type: ignore[no-untyped-def]
            with cm as unit:
                yield unit
                raise OSError("disk went away at commit")
        return failing()

    monkeypatch.setattr(repository_module.Repository, "unit", flaky)

    def job(n: int):  # type: ignore[no-untyped-def]
        return lambda unit: ix.create(unit, {"resourceType": "Patient", "name": [{"family": f"C{n}"}]}, "Patient")

    async def main() -> list[object]:
        return await asyncio.gather(*(queue.run(job(n), small=True) for n in range(3)))

    results = asyncio.run(main())
    assert [getattr(r, "status", None) for r in results] == [201] * 3
    assert queue.retried == 1 and len(calls) == 2
    assert [_family_count(repo, f"C{n}") for n in range(3)] == [1, 1, 1]
