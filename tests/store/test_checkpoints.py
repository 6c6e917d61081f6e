"""SQLite WAL checkpoints run in the background (store/engine.py Checkpointer), never inside a
commit: a request that commits (an audit append on the event loop, a write batch) must not pay
for copying the WAL back into the database and syncing it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from carerecord.store import engine as engines
from carerecord.store.engine import Checkpointer, make_engine


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
