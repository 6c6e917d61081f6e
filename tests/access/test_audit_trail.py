"""The audit store is tamper-evident and nothing is sent unaudited (issue 4, audit): an
edited, deleted or inserted audit row is found by ``carerecord check``; on PostgreSQL the
table refuses UPDATE and DELETE; when the audit commit fails the client gets a 503 and no data."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from sqlalchemy import Engine, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from carerecord.access.audit_store import AuditStore, audit_engine, audit_log, check_chain
from carerecord.access.audit_writer import AuditWriter
from carerecord.access.tokens import mint_system_token
from carerecord.cli import main
from carerecord.config import Settings
from carerecord.store.engine import make_engine
from carerecord.store.repository import Repository


@pytest.fixture
def trail(client: httpx.Client, engine: Engine) -> Iterator[Engine]:
    """Some audited requests, and the owner's power to bypass the PostgreSQL trigger (the
    chain must detect what the owner does)."""
    client.put("/Patient/t1", json={"resourceType": "Patient", "id": "t1"})
    for _ in range(3):
        assert client.get("/Patient/t1").status_code == 200
    assert check_chain(engine)[0] == []
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
    try:
        yield audit_engine(engine)  # the audit trail's own SQLite file; the same database on PostgreSQL
    finally:
        if postgres:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_change"))
    assert check_chain(engine)[0] == []  # every test puts the trail back as it was


def _last_two(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.seq.desc()).limit(2)).mappings().all()
    return [dict(r) for r in rows]


def _check(database_url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--database", database_url])
    return result.exit_code, result.output


def test_an_edited_audit_row_is_found(trail: Engine, database_url: str) -> None:
    _last, row = _last_two(trail)
    with trail.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.seq == row["seq"])
                     .values(content=str(row["content"]).replace("Patient/t1", "Patient/t2")))
    try:
        code, out = _check(database_url)
        assert code == 1 and f"audit row {row['seq']} does not follow" in out
    finally:
        with trail.begin() as conn:
            conn.execute(update(audit_log).where(audit_log.c.seq == row["seq"]).values(content=row["content"]))


def test_a_deleted_audit_row_is_found(trail: Engine, database_url: str) -> None:
    last, row = _last_two(trail)
    with trail.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == row["seq"]))
    try:
        code, out = _check(database_url)
        assert code == 1 and f"row(s) deleted before audit row {last['seq']}" in out
    finally:
        with trail.begin() as conn:
            conn.execute(insert(audit_log).values(**row))


def test_an_inserted_audit_row_is_found(trail: Engine) -> None:
    last, _ = _last_two(trail)
    forged = {**last, "seq": int(str(last["seq"])) + 1, "hash": "f" * 64}
    with trail.begin() as conn:
        conn.execute(insert(audit_log).values(**forged))
    try:
        problems, _ = check_chain(trail)
        assert problems and f"audit row {forged['seq']} does not follow" in problems[0]
    finally:
        with trail.begin() as conn:
            conn.execute(delete(audit_log).where(audit_log.c.seq == forged["seq"]))


def test_postgresql_refuses_to_change_or_delete_audit_rows(client: httpx.Client, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("the trigger is PostgreSQL's")
    assert client.get("/Patient/none").status_code == 404
    for statement in (update(audit_log).values(agent="someone else"), delete(audit_log)):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def broken_audit(engine: Engine, database_url: str, tmp_path: Path) -> Iterator[tuple[str, AuditWriter, str]]:
    """A server of the same database whose audit writer commits to a database without the
    audit table (a real failing commit), its base URL, the writer, and a token."""
    from carerecord.api.app import create_app

    port = _free_port()
    app = create_app(Settings(database=database_url, host="127.0.0.1", port=port), Repository(engine))
    empty = make_engine(f"sqlite:///{tmp_path / 'no-table.db-audit'}")  # taken as an audit file: no table made
    writer = AuditWriter(AuditStore(empty))
    app.state.audit_writer = writer
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        yield base, writer, mint_system_token(engine, "system/*.*", audience=base)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        empty.dispose()


def test_no_data_is_sent_when_its_audit_commit_fails(client: httpx.Client,
                                                      broken_audit: tuple[str, AuditWriter, str]) -> None:
    client.put("/Patient/secret", json={"resourceType": "Patient", "id": "secret", "name": [{"family": "Hidden"}]})
    base, writer, bearer = broken_audit
    r = httpx.get(f"{base}/Patient/secret", headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 503 and "Hidden" not in r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    found = httpx.get(f"{base}/Patient", params={"name": "Hidden"}, headers={"Authorization": f"Bearer {bearer}"})
    assert found.status_code == 503 and "secret" not in found.text


def test_no_data_is_sent_when_the_writer_is_stopped(client: httpx.Client,
                                                     broken_audit: tuple[str, AuditWriter, str]) -> None:
    client.put("/Patient/secret", json={"resourceType": "Patient", "id": "secret", "name": [{"family": "Hidden"}]})
    base, writer, bearer = broken_audit
    writer.stop()
    r = httpx.get(f"{base}/Patient/secret", headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 503 and "Hidden" not in r.text


def test_the_response_waits_for_its_audit_record(client: httpx.Client, engine: Engine) -> None:
    client.put("/Patient/w1", json={"resourceType": "Patient", "id": "w1"})
    before = AuditStore(engine).position()
    assert client.get("/Patient/w1").status_code == 200
    # The response has arrived, so its record is committed and visible to any other connection.
    [row] = AuditStore(engine).since(before)
    assert '"Patient/w1"' in row.content


def test_an_sqlite_trail_lives_beside_the_record_and_older_rows_move_there(tmp_path: Path) -> None:
    """On SQLite the audit trail has a file of its own (so audited reads do not write to the
    record's file); rows an older version wrote into the record's audit_log move there once,
    chain intact."""
    from carerecord.access.audit_chain import GENESIS, body, link_v2
    from carerecord.store.engine import migrate

    record = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrate(record)
    previous, rows = GENESIS, []
    for seq in (1, 2, 3):
        previous = link_v2(previous, seq, body(seq, "p1", "Practitioner/a", "0", "R", "{}"))
        rows.append({"seq": seq, "recorded_us": seq, "patient": "p1", "agent": "Practitioner/a", "outcome": "0",
                     "action": "R", "content": "{}", "hash": previous})
    with record.begin() as conn:
        conn.execute(insert(audit_log), rows)
    trail = audit_engine(record)
    assert trail is not record and trail.url.database == str(tmp_path / "old.db") + "-audit"
    assert audit_engine(record) is trail and audit_engine(trail) is trail
    assert [e.seq for e in AuditStore(record).since(0)] == [1, 2, 3]
    AuditStore(record).append([])  # nothing to add
    assert check_chain(record) == ([], {"audit events": 3})
    with record.connect() as conn:  # moved, not copied: the record keeps no second trail
        assert conn.execute(select(audit_log)).all() == []
    assert _check(f"sqlite:///{tmp_path / 'old.db'}")[0] == 0


def test_rows_removed_from_the_end_are_found_against_an_anchor(trail: Engine, engine: Engine, database_url: str,
                                                               tmp_path: Path) -> None:
    """The chain alone cannot show rows cut from its end; an anchor printed by `carerecord
    audit-anchor` (and kept elsewhere) can, and a rewritten anchored row too."""
    printed = CliRunner().invoke(main, ["audit-anchor", "--database", database_url])
    assert printed.exit_code == 0, printed.output
    anchors = tmp_path / "anchors.log"
    anchors.write_text(f"some other log line\n{printed.output}")
    assert _check_anchored(database_url, anchors)[0] == 0
    last, _ = _last_two(trail)
    head_of_shard_0 = next(line for line in printed.output.splitlines() if " shard=0 " in line)
    if f"seq={last['seq']} " not in head_of_shard_0:
        pytest.skip("this process's rows are in another shard")
    with trail.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.seq == last["seq"]))
    try:
        assert check_chain(engine)[0] == []  # still a valid chain: the limit anchors close
        code, out = _check_anchored(database_url, anchors)
        assert code == 1 and f"row {last['seq']}, recorded in an anchor, is gone" in out, out
        with trail.begin() as conn:
            conn.execute(insert(audit_log).values(**{**last, "hash": "v2:" + "0" * 64}))
        code, out = _check_anchored(database_url, anchors)
        assert code == 1 and f"row {last['seq']} has another hash than its anchor recorded" in out, out
        with trail.begin() as conn:
            conn.execute(delete(audit_log).where(audit_log.c.seq == last["seq"]))
    finally:
        with trail.begin() as conn:
            conn.execute(insert(audit_log).values(**last))
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    code, out = _check_anchored(database_url, empty)
    assert code == 1 and "No `carerecord-audit-anchor` lines" in out


def _check_anchored(database_url: str, anchors: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", "--database", database_url, "--anchors", str(anchors)])
    return result.exit_code, result.output
