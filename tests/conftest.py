"""Shared fixtures: a real database (SQLite file, or PostgreSQL when
CARERECORD_TEST_DATABASE_URL is set, as scripts/test.sh does) and a real HTTP server."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, text

from carerecord.config import Settings
from carerecord.store import schema
from carerecord.store.engine import make_engine, migrate
from carerecord.store.interactions import Interactions
from carerecord.store.repository import Repository

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
    yield eng
    eng.dispose()


def wipe(engine: Engine) -> None:
    """Empty every table (fast on both databases)."""
    with engine.begin() as conn:
        names = [t.name for t in reversed(schema.metadata.sorted_tables)]
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))  # noqa: S608
        else:
            for n in names:
                conn.execute(text(f"DELETE FROM {n}"))  # noqa: S608 - names from our own schema


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
