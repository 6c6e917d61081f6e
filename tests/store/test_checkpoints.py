"""SQLite WAL checkpoints run in the background (store/engine.py Checkpointer), never inside a
commit: a request that commits (an audit append on the event loop, a write batch) must not pay
for copying the WAL back into the database and syncing it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from carerecord.store import engine as engines
from carerecord.store.engine import Checkpointer, make_engine
from tests.conftest import held_elsewhere


def _rows_in_main_file(path: Path) -> int:
    """What the database file itself holds, ignoring the WAL (an immutable open reads no WAL,
    and no locks: read while a checkpoint writes the file, it may find pages half copied,
    which counts as not there yet)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:  # no table in the main file yet, or a checkpoint under way
        return 0
    finally:
        conn.close()


def _write(engine: object, rows: int) -> None:
    with engine.begin() as c:  # type: ignore[attr-defined]
        c.execute(text("CREATE TABLE IF NOT EXISTS t (n INTEGER, pad TEXT)"))
    for start in range(0, rows, 500):  # many commits, far past the 1,000-page default
        with engine.begin() as c:  # type: ignore[attr-defined]
            c.execute(text("INSERT INTO t VALUES (:n, :pad)"),
                      [{"n": n, "pad": "x" * 2000} for n in range(start, min(start + 500, rows))])


def test_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = Checkpointer(thread=False)
    monkeypatch.setattr(engines, "CHECKPOINTER", quiet)
    path = tmp_path / "c.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    _write(engine, 4000)  # about 2,000 pages of WAL
    assert _rows_in_main_file(path) == 0  # no commit checkpointed
    assert quiet.checkpoint_all() > 1000
    assert _rows_in_main_file(path) == 4000
    assert quiet.checkpoint_all() == 0  # nothing left to copy
    engine.dispose()


def test_the_background_thread_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = Checkpointer(interval=0.05)
    monkeypatch.setattr(engines, "CHECKPOINTER", live)
    path = tmp_path / "b.db"
    engine = make_engine(f"sqlite:///{path}")
    _write(engine, 1000)
    deadline = time.monotonic() + 10
    while _rows_in_main_file(path) < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _rows_in_main_file(path) == 1000
    assert live.runs >= 1
    engine.dispose()


def test_a_file_whose_engine_is_gone_is_forgotten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = Checkpointer(thread=False)
    monkeypatch.setattr(engines, "CHECKPOINTER", quiet)
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    _write(engine, 10)
    quiet.checkpoint_all()
    assert len(quiet._files) == 1
    engine.dispose()
    del engine
    import gc

    gc.collect()
    quiet.checkpoint_all()
    assert quiet._files == {}


def test_a_long_wal_is_checkpointed_with_writers_held_off_so_it_starts_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PASSIVE checkpoint under steady writes never finds the WAL fully copied (the next
    commit has always added frames), so the WAL never starts again and grows without end (989
    MB in 20 s of creates, 2026-11-23). Past ``restart_frames`` the checkpointer takes the
    file's writer lock, so no write of ours runs while it copies the rest; the next commit then
    writes the WAL from its beginning."""
    import threading

    from carerecord.store.writer_lock import writer_lock

    quiet = Checkpointer(thread=False, restart_frames=500)
    monkeypatch.setattr(engines, "CHECKPOINTER", quiet)
    path = tmp_path / "r.db"
    engine = make_engine(f"sqlite:///{path}")
    _write(engine, 2000)  # about 1,000 pages of WAL
    lock = writer_lock(engine)
    assert lock is not None
    done = threading.Event()

    def checkpoint() -> None:
        quiet.checkpoint_all()
        done.set()

    with held_elsewhere(lock):  # a write in progress when the checkpoint comes
        c = threading.Thread(target=checkpoint)
        c.start()
        assert not done.wait(0.3)  # it waits for the writer to finish
    assert done.wait(10)
    c.join(10)
    assert quiet.restarts == 1
    with engine.begin() as conn:  # the next write starts the WAL again: a few frames, not 1,000 more
        conn.execute(text("INSERT INTO t VALUES (1, 'x')"))
    check = sqlite3.connect(path)
    try:
        _busy, frames, _copied = check.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        check.close()
    assert 0 < frames < 20
    engine.dispose()


def test_a_short_wal_is_checkpointed_without_waiting_for_writers(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from carerecord.store.writer_lock import writer_lock

    quiet = Checkpointer(thread=False, restart_frames=10_000)
    monkeypatch.setattr(engines, "CHECKPOINTER", quiet)
    path = tmp_path / "s.db"
    engine = make_engine(f"sqlite:///{path}")
    _write(engine, 200)
    lock = writer_lock(engine)
    assert lock is not None
    with held_elsewhere(lock):
        assert quiet.checkpoint_all() > 0  # while the writer holds the lock
        assert quiet.restarts == 0
    engine.dispose()


def _indexed_table(path: Path) -> Engine:
    """A new SQLite file with the table ``t`` and an index on ``t.n``."""
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (n INTEGER, pad TEXT)"))
        c.execute(text("CREATE INDEX t_n ON t (n)"))
    return engine


def test_planner_statistics_are_refreshed_as_the_record_grows(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Statistics taken when a table held one row stay until something analyses again; the
    checkpointer does (every ``analyze_every`` seconds), so the planner learns the table grew."""
    quiet = Checkpointer(thread=False)
    monkeypatch.setattr(engines, "CHECKPOINTER", quiet)
    engine = _indexed_table(tmp_path / "a.db")
    with engine.begin() as c:
        c.execute(text("INSERT INTO t VALUES (1, 'x')"))
        c.execute(text("ANALYZE"))
    _write(engine, 3000)  # (inserts into the same table)
    quiet.checkpoint_all()  # opens the checkpointer's own connection to the file
    assert quiet.analyze_all() == 1
    with engine.connect() as c:
        stat = c.execute(text("SELECT stat FROM sqlite_stat1 WHERE idx = 't_n'")).scalar_one()
    assert int(stat.split()[0]) > 1000
    engine.dispose()


def test_the_background_thread_analyses_on_its_schedule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = Checkpointer(interval=0.05, analyze_every=0.2)
    monkeypatch.setattr(engines, "CHECKPOINTER", live)
    engine = _indexed_table(tmp_path / "l.db")
    _write(engine, 500)
    deadline = time.monotonic() + 10
    stat = None
    while stat is None and time.monotonic() < deadline:
        time.sleep(0.1)
        with engine.connect() as c:
            if c.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).scalar():
                stat = c.execute(text("SELECT stat FROM sqlite_stat1 WHERE idx = 't_n'")).scalar()
    assert stat is not None and int(stat.split()[0]) >= 400
    engine.dispose()
