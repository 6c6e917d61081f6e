"""Shared fixtures: a real database (SQLite file, or PostgreSQL when
CARERECORD_TEST_DATABASE_URL is set, as scripts/test.sh does) and a real HTTP server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, MetaData, Table, delete, insert, select, text

from carerecord.access import audit_store, breakglass
from carerecord.access import tables as access_tables
from carerecord.access.keys import SigningKeys
from carerecord.config import Settings
from carerecord.store import schema
from carerecord.store.engine import make_engine, migrate, sqlite_file
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository
from carerecord.store.writer_lock import WriterLock, writing

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
BASE = "http://testserver/fhir"


def shared_data(*parts: str) -> Path:
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is not available")
    return path


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("CARERECORD_TEST_DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    migrate(eng)
    keep_server_keys(eng)
    yield eng
    eng.dispose()


# Every MetaData the project's tables are in: the record (store.schema), the access layer
# (sign-in, clients, codes, refresh and spent tokens, signing keys, and the break-glass and
# self-claim grants, which breakglass.py adds to access/tables.py's MetaData) and the audit
# trail (audit_store). tests/test_wipe.py checks that a migrated database holds no other table.
METADATA: tuple[MetaData, ...] = (schema.metadata, access_tables.metadata, audit_store.metadata)
assert breakglass.grants.metadata is access_tables.metadata
# The register of an SQLite audit trail's shard files, in shard 0's file: it lists files on
# disk, which a wipe leaves where they are (the session's live server holds its shard's lock
# for the whole session), so emptying it would only make it disagree with the disk. Not a
# table of the record's database at all.
_KEPT = frozenset({audit_store.audit_shards.name})
# The server's own signing keys (see keep_server_keys), put back after each wipe.
_SERVER_KEYS: dict[str, list[dict[str, Any]]] = {}


def _tables() -> list[Table]:
    """The tables wipe() empties, children before parents."""
    return [t for md in METADATA for t in reversed(md.sorted_tables) if t.name not in _KEPT]


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def keep_server_keys(engine: Engine) -> None:
    """Make (if there is none) and remember the signing key of the server the session runs on
    ``engine``: a real server makes its key on first start and keeps it, and the session's
    live server and every token the suite mints (``system_token``, the personas') are signed
    with it. :func:`wipe` empties the table like any other, so a key a test made does not
    outlive its module, then puts this one back; without it the session's tokens would stop
    verifying after the first wipe."""
    SigningKeys(engine).ensure()
    with engine.connect() as conn:
        _SERVER_KEYS[_url(engine)] = [dict(r) for r in conn.execute(select(access_tables.signing_keys)).mappings()]


def server_keys(engine: Engine) -> list[dict[str, Any]]:
    """The signing key rows :func:`keep_server_keys` remembered for ``engine``."""
    return _SERVER_KEYS.get(_url(engine), [])


def wipe(engine: Engine) -> None:
    """Empty every table the project creates, on both databases: the record, the access layer's
    (grants of break-glass and self-claims, users, clients, codes, refresh tokens, revoked
    token ids, signing keys) and the audit trail, including an SQLite trail's shard files
    beside the database (access/audit_store.py). Nothing a test leaves behind reaches the next
    module, so no test passes or fails by the order it runs in. The server's signing key is
    put back (:func:`keep_server_keys`)."""
    names = [t.name for t in _tables()]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # audit_log's trigger refuses TRUNCATE for every role (migration 0005): the suite's
            # database owner lifts it for this transaction only.
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_truncate"))
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))  # noqa: S608
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_truncate"))
        else:
            for n in names:  # the record file's audit_log is the empty one of migration 0005
                conn.execute(text(f"DELETE FROM {n}"))  # noqa: S608 - names from our own schema
            # The planner's statistics go too: a module that loaded one Patient and ANALYZEd
            # (a Loader does when its block ends) left SQLite believing every table held a
            # row or two, and the next module's query plans were scans.
            stats = [r[0] for r in conn.execute(text(
                "SELECT name FROM sqlite_master WHERE name IN ('sqlite_stat1', 'sqlite_stat4')"))]
            for n in stats:
                conn.execute(text(f"DELETE FROM {n}"))  # noqa: S608 - one of the two names above
            if stats:  # every connection's planner reads them again (the schema cookie moves)
                conn.execute(text("ANALYZE sqlite_schema"))
        if rows := server_keys(engine):
            conn.execute(insert(access_tables.signing_keys), rows)
    if sqlite_file(engine) is not None:  # the SQLite trail's shards, files of their own
        for _, shard in audit_store.shard_engines(engine):
            if shard is not engine:
                with writing(shard), shard.begin() as conn:
                    conn.execute(delete(audit_store.audit_log))


@pytest.fixture
def repo(engine: Engine) -> Repository:
    wipe(engine)
    return Repository(engine)


@pytest.fixture
def ix(repo: Repository) -> Interactions:
    return Interactions(repo, BASE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(engine: Engine, database_url: str) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 for the whole session; yields its FHIR base URL."""
    from carerecord.api.app import create_app

    port = _free_port()
    settings = Settings(database=database_url, host="127.0.0.1", port=port)
    app = create_app(settings, Repository(engine))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def system_token(live_server: str, engine: Engine) -> str:
    """A ``system/*.*`` access token for the live server: what the API tests send by default
    (every /fhir route needs a token; tests/access and tests/api/test_auth*.py test that)."""
    from carerecord.access.tokens import mint_system_token

    return mint_system_token(engine, "system/*.*", audience=live_server, client_id="test-suite")


@pytest.fixture
def client(live_server: str, engine: Engine, system_token: str) -> Iterator[httpx.Client]:
    """An HTTP client on an empty database, sending the system token."""
    wipe(engine)
    with httpx.Client(base_url=live_server, timeout=30,
                      headers={"Accept": "application/fhir+json",
                               "Authorization": f"Bearer {system_token}"}) as c:
        yield c


@contextmanager
def held_elsewhere(lock: WriterLock) -> Iterator[threading.Event]:
    """``lock`` held by another thread (as another writer would) from the start of the block
    until the yielded event is set, or the block ends."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock.held():
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        yield release
    finally:
        release.set()
        t.join(10)
