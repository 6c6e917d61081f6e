"""Opening a database: engine settings for SQLite (WAL, immediate write transactions) and
PostgreSQL (psycopg 3), and bringing the schema to the current Alembic revision."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("carerecord.store")


def _json_serializer(value: Any) -> str:
    return orjson.dumps(value).decode()


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, *, pool_size: int = 8) -> Engine:
    """An engine for ``url``. SQLite files get WAL, NORMAL sync, a busy timeout, and writes that
    take the write lock up front (BEGIN IMMEDIATE) so concurrent writers queue instead of
    failing with 'database is locked' part-way through a transaction."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=pool_size, max_overflow=16, pool_pre_ping=False)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
                # Checkpoints run in the background (see Checkpointer), not in whichever commit
                # pushes the WAL past 1,000 pages; the WAL file is cut back after a reset.
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.execute("PRAGMA journal_size_limit=67108864")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.execute("PRAGMA mmap_size=268435456")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # On the driver: through exec_driver_sql the BEGIN of every read cost 8% of a search.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.connection.driver_connection.execute(f"BEGIN {mode}")

        database = sqlite_file(engine)
        if database is not None:
            globals()["CHECKPOINTER"].watch(engine, database)  # looked up now: tests swap it
        return engine
    # No pool_pre_ping: it costs a round trip on every checkout (measured: a third of a read's
    # time on PostgreSQL); stale connections are recycled instead, and a failed one raises.
    return create_engine(url, pool_size=pool_size, max_overflow=16, pool_recycle=1800,
                         json_serializer=_json_serializer)


def sqlite_file(engine: Engine) -> str | None:
    """The absolute path of ``engine``'s SQLite database file (None for PostgreSQL and for an
    in-memory database)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file::memory:"):
        return None
    return os.path.abspath(database)


class Checkpointer:
    """Checkpoints the WAL of every SQLite file this process opened, from a thread of its own.

    SQLite's default is that the commit which takes the WAL past 1,000 pages copies them back
    into the database and syncs it (with synchronous=NORMAL the only sync there is): a wait of
    5 to 60 ms, on a shared machine, in whatever committed. Audit records are appended on the
    event loop, so that stalled every request of the worker (measured: audit appends p99 10-14
    ms, longest 50-64 ms, against a median of 0.2-0.3 ms; 2026-11-23), and the record's writer
    held everyone's writes meanwhile. So every connection has autocheckpoint off, and this
    thread runs a PASSIVE checkpoint (it waits for no reader or writer) of each file every
    ``interval`` seconds; one with nothing to copy returns at once. Several worker processes
    each run one; a checkpoint already running elsewhere makes another return busy, harmlessly.

    A PASSIVE checkpoint alone never lets the WAL start again under steady writes: a writer
    goes back to the start of the WAL only when every frame has been copied, and by the time a
    checkpoint has copied what was there the next commit has added more. Under 8 clients
    creating Patients the WAL grew by 50 MB a second, to 989 MB in 20 s, and since every page
    read searches the WAL's index (a hash table per 4,096 frames, newest first) creates and
    reads grew slower the longer the load lasted (697 then 493 creates/s in two 8 s runs,
    2026-11-23). So once the WAL holds ``restart_frames`` frames, after the unlocked checkpoint
    has copied the bulk, the thread takes the file's writer lock (store/writer_lock.py: no
    write of ours runs meanwhile), copies the few frames added since, and lets go: the next
    writer starts the WAL again from its beginning (and cuts the file to journal_size_limit).
    Writers wait only for those few frames and one sync.

    Every ``analyze_every`` seconds the thread also refreshes each file's planner statistics
    (a sampled ANALYZE, as at every start: :func:`analyze`). Statistics taken when the record
    was small stayed until the next restart: a server started on a database of a few records
    and left to grow would plan its searches as scans of tables it believed held a row or two
    (seen in the test suite: statistics of one loaded Patient turned eighteen plans into scans).
    """

    def __init__(self, interval: float = 0.2, *, thread: bool = True,
                 restart_frames: int = 8192, analyze_every: float = 600.0) -> None:
        self.interval = interval
        self.analyze_every = analyze_every
        self.thread = thread  # False: checkpoints only when checkpoint_all is called (tests)
        self.restart_frames = restart_frames  # a WAL this long is brought to a restart (32 MB)
        self.runs = 0  # checkpoints that copied pages (for tests)
        self.restarts = 0  # checkpoints under the writer lock, to let the WAL start again (tests)
        self._files: dict[str, tuple[weakref.ref[Engine], sqlite3.Connection | None]] = {}
        self._done: dict[str, tuple[int, int]] = {}  # by file: (WAL frames, frames copied) at the last run
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, engine: Engine, database: str) -> None:
        """Checkpoint ``database`` while ``engine`` lives."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child starts its own thread and files
                self._files, self._thread, self._pid = {}, None, os.getpid()
            old = self._files.get(database)
            if old is not None and old[0]() is not None:
                return
            self._files[database] = (weakref.ref(engine), old[1] if old else None)
            if self._thread is None and self.thread:
                self._thread = threading.Thread(target=self._run, name="carerecord-checkpoint", daemon=True)
                self._thread.start()

    def checkpoint_all(self) -> int:
        """One PASSIVE checkpoint of each watched file (and forget files whose engine is gone);
        returns how many WAL frames were copied into the databases."""
        total = 0
        with self._lock:
            files = list(self._files.items())
        for database, (ref, conn) in files:
            if ref() is None:
                with self._lock:
                    if self._files.get(database, (None,))[0] is ref:
                        del self._files[database]
                        self._done.pop(database, None)
                if conn is not None:
                    conn.close()
                continue
            try:
                if conn is None:
                    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
                    with self._lock:
                        if database in self._files:
                            self._files[database] = (ref, conn)
                _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= self.restart_frames:
                    frames, copied = self._complete(database, conn, frames, copied)
                # The counts are of the WAL as it is: a WAL begun again (fewer frames) starts at 0
                # (a count for statistics and tests: a WAL begun again and grown past the last
                # count between two runs is undercounted)
                last_frames, last_copied = self._done.get(database, (0, 0))
                new = copied - (last_copied if frames >= last_frames else 0)
                self._done[database] = (frames, copied)
                if new > 0:
                    self.runs += 1
                    total += new
            except sqlite3.Error as exc:  # the file went away, or is busy: try again next time
                log.debug("checkpoint of %s: %s", database, exc)
        return total

    def _complete(self, database: str, conn: sqlite3.Connection, frames: int,
                  copied: int) -> tuple[int, int]:
        """Copy every frame with the writers held off, so that the next writer restarts the
        WAL; returns the WAL's (frames, copied) as the checkpoint left them."""
        from carerecord.store.writer_lock import lock_for_file  # (it imports this module)

        with lock_for_file(database).held():
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames > 0 and copied == frames:
            self.restarts += 1
        return frames, copied

    def analyze_all(self) -> int:
        """A sampled ANALYZE of each watched file, under its writer lock (ANALYZE writes the
        statistics tables); returns how many files were analysed."""
        from carerecord.store.writer_lock import lock_for_file  # (it imports this module)

        done = 0
        with self._lock:
            files = [(d, c) for d, (ref, c) in self._files.items() if c is not None and ref() is not None]
        for database, conn in files:
            try:
                with lock_for_file(database).held():
                    conn.execute(SAMPLED_ANALYSIS)
                    conn.execute("ANALYZE")
                done += 1
            except sqlite3.Error as exc:  # busy or gone: next time
                log.debug("analyze of %s: %s", database, exc)
        return done

    def _run(self) -> None:
        last_analyze = time.monotonic()
        while True:
            time.sleep(self.interval)
            self.checkpoint_all()
            if time.monotonic() - last_analyze >= self.analyze_every:
                self.analyze_all()
                last_analyze = time.monotonic()


CHECKPOINTER = Checkpointer()
SAMPLED_ANALYSIS = "PRAGMA analysis_limit=1000"  # ANALYZE samples each index (see analyze)

_POINT: weakref.WeakKeyDictionary[Engine, threading.local] = weakref.WeakKeyDictionary()


def point_rows(engine: Engine, sql: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of one constant, parameterised SELECT, outside any transaction: the hot
    path's point reads (a resource by id, a token's revocation).

    On SQLite each thread keeps one driver connection of its own for these (in autocommit, so
    every SELECT sees the latest commit): checking a connection out of SQLAlchemy's pool and
    back in cost more than the SELECT itself (py-spy: 6% of a read's CPU). On PostgreSQL a
    pooled connection in autocommit (no BEGIN before and ROLLBACK after one SELECT)."""
    if engine.dialect.name == "sqlite":
        local = _POINT.get(engine)
        if local is None:
            local = _POINT.setdefault(engine, threading.local())
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = engine.raw_connection()
        return conn.driver_connection.execute(sql, params).fetchall()  # type: ignore[union-attr,no-any-return]
    raw = engine.raw_connection()
    try:
        raw.driver_connection.autocommit = True  # type: ignore[union-attr]
        cur = raw.cursor()
        cur.execute(sql, params)
        rows = cur.fetchall()
        cur.close()
    finally:
        raw.driver_connection.autocommit = False  # type: ignore[union-attr]
        raw.close()
    return list(rows)


def migrate(engine: Engine) -> str:
    """Upgrade the schema to the newest Alembic revision; returns that revision."""
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    analyze(engine)
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def analyze(engine: Engine) -> None:
    """Refresh the planner's statistics. Run after migrations (so at every start) and after
    bulk loads. On SQLite ``analysis_limit`` makes it a sample of each index (14 ms on a
    4 GB, 100,000-person database) rather than a full pass; the search compiler does not
    depend on it for its hot paths (probes seek by rid, see store/search.py), but SQLite
    picks between indexes of a driving subquery better with it. PostgreSQL samples anyway;
    autovacuum keeps it current between loads."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(SAMPLED_ANALYSIS)
        conn.exec_driver_sql("ANALYZE")


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
