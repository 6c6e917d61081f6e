"""The suite's ``wipe()`` (tests/conftest.py) empties every table the project creates, so that
nothing one test module leaves behind (a break-glass grant, a user, a revoked token, an audit
record) decides whether the next one passes."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, func, inspect, select, text

from carerecord.access import audit_store, breakglass
from carerecord.access import tables as access_tables
from carerecord.access.grants import Grants
from carerecord.access.users import Users
from carerecord.store.engine import sqlite_file
from tests.conftest import METADATA, server_keys, wipe

# Tables that are not the project's data: Alembic's revision, SQLite's statistics, and the
# shadow tables of the SQLite _content index (an FTS5 table over idx_content, kept in step with
# it by triggers, so it empties with it; counted below all the same).
_NOT_DATA = {"alembic_version", "sqlite_stat1", "sqlite_sequence"}
_FTS = "idx_content_fts"


def _counts(engine: Engine, names: list[str]) -> dict[str, int]:
    with engine.connect() as conn:
        return {n: conn.execute(text(f"SELECT count(*) FROM {n}")).scalar_one() for n in names}  # noqa: S608


def test_every_table_of_a_migrated_database_is_one_wipe_knows(engine: Engine) -> None:
    known = {t.name for md in METADATA for t in md.tables.values()}
    present = set(inspect(engine).get_table_names())
    assert present - known - _NOT_DATA - {n for n in present if n.startswith(_FTS)} == set()


def test_wipe_empties_the_record_the_access_tables_and_the_audit_trail(
        engine: Engine, client: httpx.Client) -> None:
    r = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Wiped"}]})
    assert r.status_code == 201  # the record, its index rows, and an audit record
    Users(engine).add("wiped-user", None, "patient", f"Patient/{r.json()['id']}")
    Grants(engine).spend("access", "wiped-jti", 2**62)
    breakglass.record(engine, breakglass.BREAK_GLASS, "Practitioner/x", "PractitionerRole/x", None,
                      r.json()["id"], "emergency-care", "Collapsed")
    audit = audit_store.AuditStore(engine)
    assert sum(audit.position().values()) > 0
    wipe(engine)
    names = [n for n in inspect(engine).get_table_names() if n not in _NOT_DATA and not n.startswith(_FTS)]
    counts = _counts(engine, names)
    assert counts.pop(access_tables.signing_keys.name) == len(server_keys(engine)) > 0
    assert counts == dict.fromkeys(counts, 0)
    if sqlite_file(engine) is not None:
        assert _counts(engine, [_FTS]) == {_FTS: 0}
        for _, shard in audit_store.shard_engines(engine):
            with shard.connect() as conn:
                assert conn.execute(select(func.count()).select_from(audit_store.audit_log)).scalar_one() == 0
    # and the session's tokens still verify: the server's key was put back
    assert client.get("/Patient").status_code == 200
