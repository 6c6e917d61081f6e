"""The audit store's append under concurrency and failure (issue 4, audit): batches from several
processes chain in one order with no gap; a writer that dies between hashing and committing
leaves a chain that verifies and that the next append continues; on PostgreSQL the append
(``audit_append``, migration 0012) makes its own commit durable and refuses snapshot isolation."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from carerecord.access.audit_chain import GENESIS, body, link_v2
from carerecord.access.audit_store import (
    AuditStore,
    NewEvent,
    _appender,
    audit_engine,
    check_chain,
    own_shard,
    shard_engines,
)
from carerecord.store.engine import make_engine


def events(n: int, tag: str = "t") -> list[NewEvent]:
    return [NewEvent(1_700_000_000_000_000 + k, None if k % 3 == 0 else f"{tag}-p{k}", f"Device/{tag}", "0", "R",
                     f'{{"i":"read","p":"/Patient/{tag}-p{k}","q":"a\\\\b \\"quoted\\" é"}}') for k in range(n)]


def _append_many(url: str, tag: str, batches: int, ready: Any = None) -> None:
    """Append ``batches`` batches; with ``ready`` (a barrier), claim this process's shard first
    and wait until every process has claimed its own, so all of them append at once (a process
    that has exited releases its shard, which a later one would take over)."""
    engine = make_engine(url)
    try:
        store = AuditStore(engine)
        if ready is not None:
            own_shard(engine)
            ready.wait(120)
        for b in range(batches):
            store.append(events(1 + b % 4, f"{tag}{b}"))
    finally:
        engine.dispose()


def _child(url: str, tag: str, batches: int, ready: Any) -> None:  # a separate process (spawned)
    _append_many(url, tag, batches, ready)


def _rows(engine: Engine) -> list[tuple[int, str]]:
    with audit_engine(engine).connect() as conn:
        return [(int(r[0]), str(r[1])) for r in conn.exec_driver_sql("SELECT seq, hash FROM audit_log ORDER BY seq")]


def _shard_rows(engine: Engine) -> dict[int, list[int]]:
    out = {}
    for shard, trail in shard_engines(engine):
        with trail.connect() as conn:
            out[shard] = [int(r[0]) for r in conn.exec_driver_sql("SELECT seq FROM audit_log ORDER BY seq")]
    return out


@pytest.fixture
def pg(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's audit_append")
    return engine


def _driver_url(engine: Engine) -> dict[str, object]:
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)
    return dict(kwargs)


def test_three_processes_appending_at_once_keep_valid_chains(engine: Engine, database_url: str) -> None:
    """On PostgreSQL the three processes share one chain; on SQLite each appends to a shard of
    its own (no process waits for another's append): each shard is one chain without gaps."""
    before = _shard_rows(engine)
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(3)
    procs = [ctx.Process(target=_child, args=(database_url, tag, 40, ready)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    _append_many(database_url, "c", 40, ready)  # and this process too
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = _shard_rows(engine)
    added = sum(len(seqs) - len(before.get(shard, [])) for shard, seqs in rows.items())
    assert added == 3 * sum(1 + b % 4 for b in range(40))
    for seqs in rows.values():
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no fork
    if engine.dialect.name == "sqlite":
        assert len([s for s, seqs in rows.items() if len(seqs) > len(before.get(s, []))]) == 3
    assert check_chain(engine)[0] == []


def test_postgresql_hashes_a_batch_as_python_verifies_it(pg: Engine) -> None:
    store = AuditStore(pg)
    before = _rows(pg)
    batch = events(5, "h")
    last = store.append(batch)
    previous = before[-1][1] if before else GENESIS
    added = _rows(pg)[len(before):]
    assert [seq for seq, _ in added] == list(range(last - 4, last + 1))
    for (seq, stored), e in zip(added, batch, strict=True):
        previous = link_v2(previous, seq, body(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content))
        assert stored == previous


def test_a_writer_killed_between_hashing_and_commit_leaves_a_chain_that_verifies(pg: Engine) -> None:
    """The batch is hashed and inserted, holding the chain's lock, and the connection dies before
    its commit: nothing of it stays, the lock is released, and the next append chains on."""
    kwargs = _driver_url(pg)
    store = AuditStore(pg)
    store.append(events(1, "before"))
    last = _rows(pg)[-1]
    doomed = psycopg.connect(**kwargs)  # not autocommit: the append's transaction stays open
    pid = doomed.info.backend_pid
    cols = [list(c) for c in zip(*[(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content,
                                    body(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content))
                                   for e in events(3, "doomed")], strict=True)]
    from carerecord.access.audit_store import _PG_APPEND

    assert doomed.execute(_PG_APPEND, cols).fetchone() == (last[0] + 3,)  # hashed, inserted, uncommitted
    with psycopg.connect(**kwargs, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError):
        doomed.commit()
    assert _rows(pg)[-1] == last
    assert store.append(events(2, "after")) == last[0] + 2  # the lock was released with the session
    assert check_chain(pg)[0] == []


def test_the_audit_connection_is_opened_again_after_it_died(pg: Engine) -> None:
    """An append on a connection the server has ended fails (the request gets a 503, nothing
    is sent), and the next one opens a new connection."""
    store = AuditStore(pg)
    store.append(events(1, "first"))
    appender = _appender(pg)
    pid = appender._conn.info.backend_pid  # noqa: SLF001 - the connection under test
    with psycopg.connect(**_driver_url(pg), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(psycopg.OperationalError):
        store.append(events(1, "lost"))
    seq = store.append(events(1, "again"))
    assert _rows(pg)[-1][0] == seq and appender._conn.info.backend_pid != pid  # noqa: SLF001
    assert check_chain(pg)[0] == []


def test_audit_append_makes_its_commit_durable_whatever_the_session_says(pg: Engine) -> None:
    with psycopg.connect(**_driver_url(pg)) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.commit()  # the session's setting
        cols = [[1], ["p"], ["Device/x"], ["0"], ["R"], ["{}"], [body(1, "p", "Device/x", "0", "R", "{}")]]
        from carerecord.access.audit_store import _PG_APPEND

        conn.execute(_PG_APPEND, cols)
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)  # for this transaction's commit
        conn.rollback()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)  # and for nothing after it
        conn.rollback()


def test_audit_append_refuses_snapshot_isolation(pg: Engine) -> None:
    """Under REPEATABLE READ the tail it read after its lock could be stale: it refuses."""
    from carerecord.access.audit_store import _PG_APPEND

    with psycopg.connect(**_driver_url(pg)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with pytest.raises(psycopg.errors.RaiseException, match="READ COMMITTED"):
            conn.execute(_PG_APPEND, [[1], ["p"], ["a"], ["0"], ["R"], ["{}"], [b"[]"]])
        conn.rollback()


@pytest.fixture
def spare(pg: Engine, database_url: str) -> Iterator[Engine]:
    """A second engine of the same database: its own audit connection."""
    other = make_engine(database_url)
    yield other
    other.dispose()


def test_appends_from_two_engines_in_threads_interleave_into_one_chain(pg: Engine, spare: Engine) -> None:
    stores = [AuditStore(pg), AuditStore(spare)]
    errors: list[BaseException] = []

    def run(store: AuditStore, tag: str) -> None:
        try:
            for b in range(30):
                store.append(events(1 + b % 3, f"{tag}{b}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, t)) for s, t in zip(stores, "xy", strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert check_chain(pg)[0] == []



def _claim_and_append(url: str, tag: str, patient: str) -> None:  # a separate process (spawned)
    engine = make_engine(url)
    try:
        AuditStore(engine).append([NewEvent(1_700_000_000_000_000, patient, f"Device/{tag}", "0", "R",
                                            f'{{"i":"read","p":"/Patient/{patient}","srv":"s"}}')])
    finally:
        engine.dispose()


def _spawn(url: str, tag: str, patient: str) -> None:
    p = multiprocessing.get_context("spawn").Process(target=_claim_and_append, args=(url, tag, patient))
    p.start()
    p.join(120)
    assert p.exitcode == 0


def test_sqlite_processes_append_to_shards_of_their_own_and_readers_merge_them(tmp_path) -> None:  # noqa: ANN001
    """Each process appends to its own SQLite shard (so no append waits for another process's),
    a shard is reused once its process has gone, and readers see every shard, merged by time."""
    url = f"sqlite:///{tmp_path / 'record.db'}"
    engine = make_engine(url)
    try:
        store = AuditStore(engine)
        start = store.position()
        store.append([NewEvent(1_700_000_000_000_001, "p1", "Device/here", "0", "R", '{"i":"read","srv":"s"}')])
        _spawn(url, "child1", "p1")  # this process holds shard 0: the child takes shard 1
        _spawn(url, "child2", "p1")  # shard 1's process has gone: shard 1 again, no new file
        shards = dict(shard_engines(engine))
        assert sorted(shards) == [0, 1]
        assert (tmp_path / "record.db-audit-1").exists() and not (tmp_path / "record.db-audit-2").exists()
        added = store.since(start)
        assert [(e.shard, e.seq) for e in added] == [(1, 1), (1, 2), (0, start.get(0, 0) + 1)]  # by time
        newest = store.for_patient("p1")
        assert [(e.shard, e.seq) for e in newest] == [(0, start.get(0, 0) + 1), (1, 2), (1, 1)]
        from carerecord.access.audit import event_id

        ids = {event_id("s", e.seq, e.shard) for e in added}
        assert len(ids) == 3  # the same seq in two shards is two AuditEvents
        assert check_chain(engine) == ([], {"audit events": 3, "audit shards": 2})
    finally:
        engine.dispose()


def test_a_tampered_or_missing_sqlite_shard_is_reported(tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'record.db'}"
    engine = make_engine(url)
    try:
        AuditStore(engine).append(events(2, "here"))
        _spawn(url, "child", "p1")
        _spawn(url, "child", "p2")
        shard1 = dict(shard_engines(engine))[1]
        with shard1.begin() as conn:
            conn.exec_driver_sql("UPDATE audit_log SET agent = 'Device/someone-else' WHERE seq = 1")
        problems, _ = check_chain(engine)
        assert len(problems) == 1 and problems[0].startswith("audit shard 1: audit row 1 does not follow")
        shard1.dispose()
        for suffix in ("", "-wal", "-shm"):
            (tmp_path / f"record.db-audit-1{suffix}").unlink(missing_ok=True)
        problems, _ = check_chain(engine)
        assert problems == ["audit shard 1 is registered but its file is missing"]
    finally:
        engine.dispose()
