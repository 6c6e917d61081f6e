"""Fixtures of the access tests: the live server's origin as a browser sees it, a small
community of people with accounts (tests/access/support.py), and the demo community with the
personas' tokens (tests/access/personas.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.access.personas import Persona, load_demo, token
from tests.access.support import Community, origin
from tests.conftest import wipe


@pytest.fixture
def browser(live_server: str) -> Iterator[httpx.Client]:
    """A cookie-keeping HTTP client on the server's origin, sending no token."""
    with httpx.Client(base_url=origin(live_server), timeout=30, follow_redirects=False) as c:
        yield c


@pytest.fixture
def community(client: httpx.Client, engine: Engine) -> Community:
    return Community(client, engine).build()


@pytest.fixture(scope="module")
def demo(live_server: str, engine: Engine, system_token: str) -> Iterator[httpx.Client]:
    """The demo community (people 0-7 and the personas), loaded once per persona module by the
    system client, which the fixture's client goes on using."""
    wipe(engine)
    yield from load_demo(live_server, system_token)


@pytest.fixture
def as_(demo: httpx.Client, engine: Engine, live_server: str) -> Any:
    """``as_(persona)``: headers carrying that persona's token."""
    def headers(who: Persona, scope: str | None = None, launch: str | None = None) -> dict[str, str]:
        minted = token(engine, live_server, who, launch=launch) if scope is None else \
            token(engine, live_server, who, scope, launch=launch)
        return {"Authorization": f"Bearer {minted}"}
    return headers
