"""PostgreSQL for the benchmarks: a throwaway cluster started the way scripts/test.sh starts one
(initdb + pg_ctl, as the postgres user when run as root), or a server the user names with
``--postgres URL``; and a fresh database per measurement, dropped afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmarks.common import free_port

# Durability comparable to SQLite's WAL + synchronous=NORMAL (a crash can lose the last commits
# but never corrupts): commits do not wait for the WAL flush. fsync stays on.
SERVER_OPTIONS = "-c synchronous_commit=off"


def find_bindir() -> Path | None:
    dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                  if p.parent.name.isdigit() else 0)
    for d in reversed(dirs):
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    for name in ("initdb", "pg_ctl"):
        if not shutil.which(name):
            return None
    return Path(shutil.which("pg_ctl") or "").resolve().parent


class Cluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, bindir: Path, options: str = SERVER_OPTIONS) -> None:
        self.bindir = bindir
        self.options = options
        self.dir = Path(tempfile.mkdtemp(prefix="carerecord-bench-pg."))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.started = False

    @property
    def url(self) -> str:
        return f"postgresql://carerecord@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        data = self.dir / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "carerecord",
                  "-E", "UTF8", "--locale=C.UTF-8")
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} {self.options}"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                  "-o", opts, "start")
        self.started = True

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.dir / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        if self.started:
            subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.dir / "data"),
                            "-m", "fast", "stop"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def version(url: str) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@contextmanager
def fresh_database(url: str, tag: str) -> Iterator[str]:
    """A new, empty database on the server of ``url``; its URL; dropped on exit."""
    import psycopg

    name = f"carerecord_bench_{tag}_{uuid.uuid4().hex[:8]}"
    admin = _with_db(url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
