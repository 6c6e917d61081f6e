"""A real HTTP client for the CDS Hooks routes (at the server root, beside /fhir)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from carerecord.store.repository import Repository
from tests.conftest import wipe


@pytest.fixture
def cds(live_server: str, engine: Engine, system_token: str) -> Iterator[httpx.Client]:
    """A client of the live server's root, on an empty database, with the system token;
    every response is checked for leaks (no 500, no stack trace)."""
    wipe(engine)

    def no_leaks(response: httpx.Response) -> None:
        response.read()
        assert response.status_code != 500, response.text
        assert "Traceback" not in response.text

    with httpx.Client(base_url=live_server.removesuffix("/fhir"), timeout=30,
                      headers={"Authorization": f"Bearer {system_token}"},
                      event_hooks={"response": [no_leaks]}) as c:
        yield c


@pytest.fixture
def community(repo: Repository) -> Repository:
    """The workflow tests' small community (tests/services/medicines/world.py) on an emptied
    database; the repository it is in."""
    from tests.services.medicines.world import build

    build(repo)
    return repo
