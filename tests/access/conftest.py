"""Fixtures of the sign-in and token tests: the live server's origin as a browser sees it,
and a small community of people with accounts (tests/access/support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine

from tests.access.support import Community, origin


@pytest.fixture
def browser(live_server: str) -> Iterator[httpx.Client]:
    """A cookie-keeping HTTP client on the server's origin, sending no token."""
    with httpx.Client(base_url=origin(live_server), timeout=30, follow_redirects=False) as c:
        yield c


@pytest.fixture
def community(client: httpx.Client, engine: Engine) -> Community:
    return Community(client, engine).build()
