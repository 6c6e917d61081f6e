"""The audit store: an append-only table of AuditEvents, hash-chained (migration 0005_audit).

It lives in its own MetaData, like the sign-in tables (access/tables.py): it is not part of
the FHIR record, a wipe of the record leaves it alone, and nothing but :meth:`AuditStore.append`
writes to it. On PostgreSQL a trigger refuses UPDATE and DELETE (and TRUNCATE) for every role;
the database owner can still drop or disable the trigger, or the table, which is why the rows
are chained (access/audit_chain.py) and ``carerecord check`` verifies the chain.

On SQLite the audit trail lives in a file of its own beside the record (``<database>-audit``,
:func:`audit_engine`), not in the record's file. Every audited read appends to it, and with
several worker processes each append to the record's file made every other process's next
read start from an empty page cache and queue on the record's writer lock: with two workers
audit cost 170 us of server CPU a read against 72 us with one (benchmarks.audit, session 3).
The record's ``audit_log`` table (migration 0005) then stays empty; rows an older version
wrote there are moved to the audit file the first time it is opened. PostgreSQL keeps the
table in the record's database, where the append-only trigger guards it.

Appends from several worker processes are serialised with a lock held for the transaction
(SQLite: the write lock, taken up front by BEGIN IMMEDIATE; PostgreSQL: a transaction-level
advisory lock), so every batch chains from the true last row. ``seq`` being the primary key
is the second line of defence: two writers that raced would collide rather than fork.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    func,
    select,
)

from carerecord.access.audit_chain import GENESIS, V2, ChainRow, body, first_break, link_v2
from carerecord.store.engine import make_engine, sqlite_file
from carerecord.store.writer_lock import writer_lock, writing

metadata = MetaData()
_BIG = BigInteger().with_variant(Integer(), "sqlite")

audit_log = Table(
    "audit_log", metadata,
    Column("seq", _BIG, primary_key=True, autoincrement=False),
    Column("recorded_us", _BIG, nullable=False),
    Column("patient", Text),  # the Patient id the event is about (BALP: one event per patient)
    Column("agent", Text, nullable=False),  # fhirUser or client id of who acted
    Column("outcome", Text, nullable=False),  # AuditEvent.outcome: 0 | 4 | 8
    Column("action", Text, nullable=False),  # AuditEvent.action: C R U D E
    Column("content", Text, nullable=False),  # the compact record (access/audit.py audit_record)
    Column("hash", Text, nullable=False),  # the chain's link (access/audit_chain.py)
    Index("ix_audit_patient", "patient", "seq"),
)

# Any constant: the key of the PostgreSQL advisory lock that serialises appends.
_PG_LOCK = 0x6175646974  # "audit"

# PostgreSQL numbers and chains a batch itself, from bodies hashed the same way as
# audit_chain.link_v2: the previous row is read, and every new row hashed, inside the one
# statement, after the advisory lock was taken by the statement before it in the same
# transaction (each statement of a READ COMMITTED transaction sees all commits before it).
_PG_APPEND = f"""
WITH RECURSIVE input AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                         %s::bytea[]) WITH ORDINALITY AS i(recorded_us, patient, agent, outcome, action,
                                                          content, body, n)),
last AS (
    SELECT coalesce((SELECT seq FROM audit_log ORDER BY seq DESC LIMIT 1), 0)::bigint AS seq,
           coalesce((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '{GENESIS}') AS hash),
chain(n, seq, hash) AS (
    SELECT 0::bigint, seq, hash FROM last
    UNION ALL
    SELECT c.n + 1, c.seq + 1,
           '{V2}' || encode(sha256(convert_to(c.hash || ':' || (c.seq + 1)::text || ':', 'UTF8') || i.body), 'hex')
    FROM chain c JOIN input i ON i.n = c.n + 1)
INSERT INTO audit_log (seq, recorded_us, patient, agent, outcome, action, content, hash)
SELECT c.seq, i.recorded_us, i.patient, i.agent, i.outcome, i.action, i.content, c.hash
FROM chain c JOIN input i ON i.n = c.n
RETURNING seq"""  # noqa: S608 - constants only; every value is a parameter


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An audit row to append: its indexed columns and its compact record (JSON text)."""

    recorded_us: int
    patient: str | None
    agent: str
    outcome: str
    action: str
    content: str


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored audit row; ``access.audit.balp(seq, recorded_us, patient, content)`` is its
    AuditEvent."""

    seq: int
    recorded_us: int
    patient: str | None
    content: str


_ENGINES: dict[tuple[int, str], Engine] = {}  # by process and audit file
_ENGINES_LOCK = threading.Lock()


def audit_engine(engine: Engine) -> Engine:
    """The engine of the audit trail of the store ``engine`` opens: the same one on PostgreSQL
    and for in-memory SQLite, else the ``<database>-audit`` SQLite file beside it (made, and
    given the rows of the record's own ``audit_log`` if an older version wrote any, on first
    use)."""
    database = sqlite_file(engine)
    if database is None or database.endswith("-audit"):  # PostgreSQL, in memory, or the audit file itself
        return engine
    path = database + "-audit"
    key = (os.getpid(), path)
    with _ENGINES_LOCK:
        found = _ENGINES.get(key)
        if found is None:
            found = make_engine(f"sqlite:///{path}")
            metadata.create_all(found)
            _move_rows(engine, found)
            _ENGINES[key] = found
        return found


def _move_rows(record: Engine, audit: Engine) -> None:
    """Move the rows an older version appended to the record's own ``audit_log`` into a new
    audit file (seq and hash as they are, so the chain still verifies): copied and committed
    first, then deleted from the record, so a crash between the two leaves a copy, never a loss
    (the copy is not repeated: the audit file is no longer empty)."""
    with writing(audit), audit.begin() as dst:
        if dst.execute(select(func.count()).select_from(audit_log)).scalar_one():
            return
        with record.connect() as src:
            if not record.dialect.has_table(src, audit_log.name):
                return
            rows = src.execute(select(audit_log).order_by(audit_log.c.seq)).mappings().all()
        if not rows:
            return
        dst.execute(audit_log.insert(), [dict(r) for r in rows])
    with writing(record), record.begin() as src:
        src.execute(delete(audit_log).where(audit_log.c.seq <= rows[-1]["seq"]))


class AuditStore:
    """Appends to and reads the audit trail of one store (see :func:`audit_engine`)."""

    def __init__(self, engine: Engine) -> None:
        engine = audit_engine(engine)
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        mark = "%s" if self.postgres else "?"
        self._lock_sql = f"SELECT pg_advisory_xact_lock({mark})"
        self._last_sql = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        self._insert_sql = ("INSERT INTO audit_log (seq, recorded_us, patient, agent, outcome, action, "  # noqa: S608
                            f"content, hash) VALUES ({', '.join([mark] * 8)})")

    def append(self, events: Sequence[NewEvent]) -> int:
        """Append ``events`` in one transaction, chained after the last row; returns the
        sequence number of the last one. Raises (and appends nothing) if the commit fails.

        On a pooled driver connection with constant, parameterised statements: SQLAlchemy's
        per-statement work cost about as much as the commit itself (measured: 415 us against
        under 150 us for a batch of one on SQLite), and this runs once per batch of requests."""
        with writing(self.engine):
            return self._append(events)

    def _append(self, events: Sequence[NewEvent]) -> int:
        if self.postgres:
            return self._append_pg(events)
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                cur.execute(self._last_sql)
                last = cur.fetchone()
                seq, previous = (int(last[0]), str(last[1])) if last else (0, GENESIS)
                rows = []
                for e in events:
                    seq += 1
                    previous = link_v2(previous, seq, body(e.recorded_us, e.patient, e.agent, e.outcome,
                                                           e.action, e.content))
                    rows.append((seq, e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content,
                                 previous))
                if rows:
                    cur.executemany(self._insert_sql, rows)
                cur.execute("COMMIT")
            except BaseException:
                if raw.driver_connection.in_transaction:  # type: ignore[union-attr]
                    cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()
        finally:
            raw.close()
        return seq

    def _append_pg(self, events: Sequence[NewEvent]) -> int:
        """The lock, the append and the commit sent together (psycopg's pipeline mode): the
        advisory lock is held for the server's work alone, not for three network round trips
        (measured with two workers: each batch waited 2.7 ms for the other's lock, and took
        5.5 ms in all)."""
        if not events:
            return self.last_seq()
        columns = [list(c) for c in zip(*[(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content,
                                             body(e.recorded_us, e.patient, e.agent, e.outcome, e.action,
                                                  e.content)) for e in events], strict=True)]
        raw = self.engine.raw_connection()
        try:
            conn: Any = raw.driver_connection
            try:
                with conn.pipeline():
                    conn.execute(self._lock_sql, (_PG_LOCK,))
                    cur = conn.execute(_PG_APPEND, columns)
                    conn.commit()
                seqs = [int(r[0]) for r in cur.fetchall()]
            except BaseException:
                conn.rollback()
                raise
        finally:
            raw.close()
        return max(seqs)

    def try_append(self, events: Sequence[NewEvent]) -> bool:
        """Append now if no other writer holds the SQLite file (False, nothing done, if one
        does): the event loop appends inline when it need not wait."""
        lock = writer_lock(self.engine)
        if lock is None or not lock.acquire(blocking=False):
            return False
        try:
            self._append(events)
        finally:
            lock.release()
        return True

    def for_patient(self, patient: str, limit: int = 500) -> list[StoredEvent]:
        """The newest ``limit`` events about ``patient``, newest first."""
        a = audit_log.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(a.seq, a.recorded_us, a.patient, a.content).where(a.patient == patient)
                                .order_by(a.seq.desc()).limit(limit)).all()
        return [StoredEvent(*r) for r in rows]

    def since(self, seq: int) -> list[StoredEvent]:
        """Every event after ``seq``, oldest first (for tests and tools)."""
        a = audit_log.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(a.seq, a.recorded_us, a.patient, a.content).where(a.seq > seq)
                                .order_by(a.seq)).all()
        return [StoredEvent(*r) for r in rows]

    def last_seq(self) -> int:
        with self.engine.connect() as conn:
            found = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)).first()
        return int(found[0]) if found else 0


def _rows(engine: Engine) -> Iterator[ChainRow]:
    a = audit_log.c
    with audit_engine(engine).connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(
            select(a.seq, a.recorded_us, a.patient, a.agent, a.outcome, a.action, a.content, a.hash)
            .order_by(a.seq))
        for r in result:
            yield ChainRow(*r)


def check_chain(engine: Engine) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) for ``carerecord check``: the first broken link of the audit chain,
    if any, and how many audit rows there are."""
    problem, _checked = first_break(_rows(engine))
    with audit_engine(engine).connect() as conn:
        n = conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    return ([problem] if problem else []), {"audit events": n}
