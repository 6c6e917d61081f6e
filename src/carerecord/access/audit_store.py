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

With several worker processes the SQLite trail is sharded: each process appends to a file of
its own (``<database>-audit`` is shard 0, then ``<database>-audit-1``, ``-2``, ...), claimed for
the life of the process with an exclusive ``flock`` on ``<shard>.owner`` (:func:`own_shard`), so
appends never wait for another process. Every shard is a hash chain of its own; shard 0 keeps a
register of the others (``audit_shards``) so that ``carerecord check`` notices one that went
missing; readers merge the shards by time. With one file for all, two workers' appends queued on
its lock and whichever worker held fewer connections appended a record at a time: read by id
with two workers and audit on served no more than with one (5,516 against 13,887 reads/s with
audit off, 0.40; 2026-11-23, benchmarks.audit).

Appends to one file (PostgreSQL's table; an SQLite shard, should another process write to it)
are serialised with a lock held for the transaction
(SQLite: the write lock, taken up front by BEGIN IMMEDIATE; PostgreSQL: a transaction-level
advisory lock, key 0x6175646974, "audit", taken by the ``audit_append`` function of migration
0012), so every batch chains from the true last row. ``seq`` being the primary key is the
second line of defence: two writers that raced would collide rather than fork.
"""

from __future__ import annotations

import fcntl
import glob
import heapq
import os
import re
import threading
import time
import weakref
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
    event,
    func,
    select,
)

from carerecord.access.audit_chain import GENESIS, ChainRow, body, first_break, link_v2
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

# Shard 0's register of the other shards of an SQLite trail (see the module's docstring).
audit_shards = Table(
    "audit_shards", metadata,
    Column("shard", Integer, primary_key=True, autoincrement=False),
    Column("created_us", _BIG, nullable=False),
)

# PostgreSQL numbers and chains a batch itself, in one call of the function migration 0012
# creates (audit_append: the lock, the tail read after it, the v2 hashes as audit_chain.link_v2
# computes them, the insert), from bodies computed here. Binary parameters: psycopg quotes every
# element of a text-format array with a regular expression in Python (measured: 120 us for one
# event, 1.1 ms for sixteen, against 40 and 70 us in binary).
_PG_APPEND = ("SELECT audit_append(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], "
              "%b::text[], %b::bytea[])")


_SESSION = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"


def _connect_args(engine: Engine) -> tuple[list[Any], dict[str, Any]]:
    """psycopg's connect arguments for ``engine``'s database."""
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    kwargs.pop("context", None)  # SQLAlchemy's adapters: plain psycopg types here
    return list(args), {**kwargs, "autocommit": True}


def _reusable(conn: Any) -> bool:
    """Whether a connection whose append raised can serve the next one: not if it broke (the
    commit's outcome is unknown; the caller answers 503) or was left mid-statement."""
    from psycopg.pq import TransactionStatus

    return not conn.broken and not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE


class _PgAppender:
    """The audit trail's own PostgreSQL connection in this process, for appends: in autocommit
    (``audit_append`` is one statement, so one transaction and one round trip; its result
    arrives after the commit) and READ COMMITTED whatever the server's default (the function
    reads the tail after its lock). Opened on first use and again after it failed; one append
    at a time (appends of one process would queue on the chain's lock anyway)."""

    def __init__(self, engine: Engine) -> None:
        self._args = _connect_args(engine)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def append(self, columns: list[list[Any]]) -> int:
        import psycopg

        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's socket is not ours to use
                self._conn, self._pid = None, os.getpid()
            conn = self._conn
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(*self._args[0], **self._args[1])
                conn.execute(_SESSION)
                self._conn = conn
            try:
                row = conn.execute(_PG_APPEND, columns).fetchone()
            except BaseException:
                if not _reusable(conn):
                    self.close()
                raise
            return int(row[0])

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


_APPENDERS: weakref.WeakKeyDictionary[Engine, _PgAppender] = weakref.WeakKeyDictionary()


def _appender(engine: Engine) -> _PgAppender:
    """The process's appender for the PostgreSQL database of ``engine`` (closed with it)."""
    with _ENGINES_LOCK:
        found = _APPENDERS.get(engine)
        if found is None:
            found = _APPENDERS[engine] = _PgAppender(engine)
            event.listen(engine, "engine_disposed", lambda _engine: found.close())
        return found


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
    shard: int = 0  # the SQLite shard it is in (access.audit.balp's ``shard``)


Position = dict[int, int]
"""How far the trail went: the last ``seq`` of each shard (:meth:`AuditStore.position`)."""


_ENGINES: dict[tuple[int, str], Engine] = {}  # by process and audit file
_ENGINES_LOCK = threading.Lock()


_SHARD_NAME = re.compile(r"-audit(?:-([1-9][0-9]*))?$")


def _shard_path(database: str, shard: int) -> str:
    return f"{database}-audit" if shard == 0 else f"{database}-audit-{shard}"


def _open(path: str) -> Engine:
    """The process's engine of the audit file at ``path`` (made on first use)."""
    key = (os.getpid(), path)
    with _ENGINES_LOCK:
        found = _ENGINES.get(key)
        if found is None:
            found = make_engine(f"sqlite:///{path}")
            metadata.create_all(found)
            _ENGINES[key] = found
        return found


def audit_engine(engine: Engine) -> Engine:
    """The engine of the audit trail of the store ``engine`` opens: the same one on PostgreSQL
    and for in-memory SQLite, else shard 0, the ``<database>-audit`` SQLite file beside it (made,
    and given the rows of the record's own ``audit_log`` if an older version wrote any, on first
    use)."""
    database = sqlite_file(engine)
    if database is None or _SHARD_NAME.search(database):  # PostgreSQL, in memory, or an audit file
        return engine
    path = _shard_path(database, 0)
    fresh = (os.getpid(), path) not in _ENGINES
    found = _open(path)
    if fresh:
        _move_rows(engine, found)
    return found


def shard_engines(engine: Engine) -> list[tuple[int, Engine]]:
    """Every shard of the audit trail of the store ``engine`` (number, engine), shard 0 first:
    the files that exist (PostgreSQL and in-memory SQLite: the one trail, as shard 0)."""
    first = audit_engine(engine)
    database = sqlite_file(engine)
    if database is None or first is engine:
        return [(0, first)]
    found = [(0, first)]
    for path in glob.glob(glob.escape(database) + "-audit-*"):
        m = _SHARD_NAME.search(path)
        if m and m.group(1) and path.startswith(database):
            found.append((int(m.group(1)), _open(path)))
    return sorted(found, key=lambda item: item[0])


_OWNED: dict[tuple[int, str], tuple[int, Engine, int]] = {}  # (pid, database) -> (shard, engine, fd)


def own_shard(engine: Engine) -> tuple[int, Engine]:
    """The shard this process appends to (claimed on first use, for the life of the process:
    the lowest-numbered one whose ``.owner`` lock no other process holds); on PostgreSQL and
    in memory, the one trail. A new shard is entered in shard 0's register."""
    first = audit_engine(engine)
    database = sqlite_file(engine)
    if database is None or first is engine:
        return 0, first
    key = (os.getpid(), database)
    with _ENGINES_LOCK:
        owned = _OWNED.get(key)
    if owned is not None:
        return owned[0], owned[1]
    shard = 0
    while True:
        path = _shard_path(database, shard)
        fd = os.open(path + ".owner", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            shard += 1
            continue
        break
    found = first if shard == 0 else _open(path)
    if shard:
        _register(first, shard)
    with _ENGINES_LOCK:
        _OWNED[key] = (shard, found, fd)
    return shard, found


def _register(first: Engine, shard: int) -> None:
    """Enter ``shard`` in the register of shard 0 (``first``), once."""
    with writing(first), first.begin() as conn:
        if conn.execute(select(audit_shards.c.shard).where(audit_shards.c.shard == shard)).first() is None:
            conn.execute(audit_shards.insert().values(shard=shard, created_us=time.time_ns() // 1000))


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
        self.record = engine
        self.engine = audit_engine(engine)  # shard 0 (the one trail on PostgreSQL)
        self.postgres = self.engine.dialect.name == "postgresql"
        self._own: Engine | None = None
        self._last_sql = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
        self._insert_sql = ("INSERT INTO audit_log (seq, recorded_us, patient, agent, outcome, action, "  # noqa: S608
                            "content, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")

    def append(self, events: Sequence[NewEvent]) -> int:
        """Append ``events`` in one transaction, chained after the last row; returns the
        sequence number of the last one. Raises (and appends nothing) if the commit fails.

        On a pooled driver connection with constant, parameterised statements: SQLAlchemy's
        per-statement work cost about as much as the commit itself (measured: 415 us against
        under 150 us for a batch of one on SQLite), and this runs once per batch of requests."""
        with writing(self.own()):
            return self._append(events)

    def own(self) -> Engine:
        """The engine of the shard this process appends to (:func:`own_shard`)."""
        if self._own is None:
            self._own = own_shard(self.record)[1]
        return self._own

    def _append(self, events: Sequence[NewEvent]) -> int:
        if self.postgres:
            return self._append_pg(events)
        raw = self.own().raw_connection()
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
        """One ``audit_append`` call on the process's audit connection (:class:`_PgAppender`):
        the lock, the append and the commit in one statement and one round trip, the lock held
        for the server's work alone. It replaced the lock, a recursive-CTE insert and COMMIT
        sent in psycopg's pipeline mode, whose client side cost 400 us of CPU for a batch of one
        (docs/performance.md, "Audit on PostgreSQL")."""
        if not events:
            return self.last_seq()
        return _appender(self.engine).append(_columns(events))

    def try_append(self, events: Sequence[NewEvent]) -> bool:
        """Append now if no other writer holds the SQLite file (False, nothing done, if one
        does): the event loop appends inline when it need not wait."""
        lock = writer_lock(self.own())
        if lock is None or not lock.acquire(blocking=False):
            return False
        try:
            self._append(events)
        finally:
            lock.release()
        return True

    def for_patient(self, patient: str, limit: int = 500) -> list[StoredEvent]:
        """The newest ``limit`` events about ``patient``, newest first (every shard's)."""
        a = audit_log.c
        found: list[StoredEvent] = []
        for shard, engine in shard_engines(self.record):
            with engine.connect() as conn:
                rows = conn.execute(select(a.seq, a.recorded_us, a.patient, a.content).where(a.patient == patient)
                                    .order_by(a.seq.desc()).limit(limit)).all()
            found.extend(StoredEvent(*r, shard=shard) for r in rows)
        return heapq.nlargest(limit, found, key=lambda e: (e.recorded_us, e.shard, e.seq))

    def since(self, after: Position | int) -> list[StoredEvent]:
        """Every event after ``after`` (a :meth:`position`; an int is shard 0's seq), oldest
        first (for tests and tools)."""
        start = {0: after} if isinstance(after, int) else after
        a = audit_log.c
        found: list[StoredEvent] = []
        for shard, engine in shard_engines(self.record):
            with engine.connect() as conn:
                rows = conn.execute(select(a.seq, a.recorded_us, a.patient, a.content)
                                    .where(a.seq > start.get(shard, 0)).order_by(a.seq)).all()
            found.extend(StoredEvent(*r, shard=shard) for r in rows)
        return sorted(found, key=lambda e: (e.recorded_us, e.shard, e.seq))

    def position(self) -> Position:
        """The last ``seq`` of every shard, for :meth:`since`."""
        out: Position = {}
        for shard, engine in shard_engines(self.record):
            with engine.connect() as conn:
                found = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)).first()
            out[shard] = int(found[0]) if found else 0
        return out

    def last_seq(self) -> int:
        """The last ``seq`` of the shard this process appends to."""
        with self.own().connect() as conn:
            found = conn.execute(select(audit_log.c.seq).order_by(audit_log.c.seq.desc()).limit(1)).first()
        return int(found[0]) if found else 0


def _columns(events: Sequence[NewEvent]) -> list[list[Any]]:
    """``audit_append``'s arguments: one list per column, and the bodies the hashes cover."""
    return [list(c) for c in zip(*[(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content,
                                    body(e.recorded_us, e.patient, e.agent, e.outcome, e.action, e.content))
                                   for e in events], strict=True)]


def _rows(engine: Engine) -> Iterator[ChainRow]:
    a = audit_log.c
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=5000).execute(
            select(a.seq, a.recorded_us, a.patient, a.agent, a.outcome, a.action, a.content, a.hash)
            .order_by(a.seq))
        for r in result:
            yield ChainRow(*r)


def check_chain(engine: Engine) -> tuple[list[str], dict[str, int]]:
    """(problems, counts) for ``carerecord check``: the first broken link of each shard's
    chain, any registered shard that is missing, and how many audit rows there are."""
    problems: list[str] = []
    n = 0
    shards = shard_engines(engine)
    for shard, trail in shards:
        problem, _checked = first_break(_rows(trail))
        if problem:
            problems.append(problem if shard == 0 else f"audit shard {shard}: {problem}")
        with trail.connect() as conn:
            n += conn.execute(select(func.count()).select_from(audit_log)).scalar_one()
    present = {shard for shard, _ in shards}
    registered: list[int] = []
    if shards[0][1] is not engine:  # an SQLite trail in files of its own: shard 0 has the register
        with shards[0][1].connect() as conn:
            registered = [r[0] for r in conn.execute(select(audit_shards.c.shard).order_by(audit_shards.c.shard))]
    problems += [f"audit shard {k} is registered but its file is missing" for k in registered if k not in present]
    counts = {"audit events": n}
    if len(shards) > 1:
        counts["audit shards"] = len(shards)
    return problems, counts


# Anchors: a hash chain shows an edited, inserted or deleted row, but not rows removed from its
# very end (what is left is still a valid chain). The newest row's (shard, seq, hash), kept
# somewhere the database's owner cannot rewrite (a log host, a ticket, a printout), closes that:
# ``carerecord audit-anchor`` prints one line per shard, ``carerecord check --anchors FILE``
# verifies that every anchored row is still there with the same hash.
_ANCHOR = re.compile(r"carerecord-audit-anchor shard=(\d+) seq=(\d+) hash=(\S+)")


@dataclass(frozen=True, slots=True)
class Anchor:
    shard: int
    seq: int
    hash: str

    def line(self) -> str:
        return f"carerecord-audit-anchor shard={self.shard} seq={self.seq} hash={self.hash}"

    @classmethod
    def find(cls, text: str) -> list[Anchor]:
        """Every anchor line in ``text`` (a log may hold other lines around them)."""
        return [cls(int(m[1]), int(m[2]), m[3]) for m in _ANCHOR.finditer(text)]


def heads(engine: Engine) -> list[Anchor]:
    """The newest row of each shard's chain (of the one chain on PostgreSQL), as anchors."""
    out = []
    for shard, trail in shard_engines(engine):
        with trail.connect() as conn:
            row = conn.execute(select(audit_log.c.seq, audit_log.c.hash)
                               .order_by(audit_log.c.seq.desc()).limit(1)).first()
        if row is not None:
            out.append(Anchor(shard, int(row[0]), str(row[1])))
    return out


def check_anchors(engine: Engine, anchors: Sequence[Anchor]) -> list[str]:
    """Problems for ``carerecord check --anchors``: an anchored row gone (rows removed from the
    end of the chain, or its shard missing) or holding another hash (the chain rewritten)."""
    trails = dict(shard_engines(engine))
    problems = []
    for a in anchors:
        where = "the audit trail" if a.shard == 0 else f"audit shard {a.shard}"
        trail = trails.get(a.shard)
        if trail is None:
            problems.append(f"{where} is missing, though an anchor recorded its row {a.seq}")
            continue
        with trail.connect() as conn:
            found = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == a.seq)).scalar()
            last = conn.execute(select(func.max(audit_log.c.seq))).scalar()
        if found is None:
            problems.append(f"{where}: row {a.seq}, recorded in an anchor, is gone (the trail now ends at "
                            f"row {last or 0}): rows were removed from its end")
        elif found != a.hash:
            problems.append(f"{where}: row {a.seq} has another hash than its anchor recorded: the trail "
                            "was rewritten from there")
    return problems
