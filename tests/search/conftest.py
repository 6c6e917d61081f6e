"""Fixtures of the search tests (http://hl7.org/fhir/R4/search.html).

Every search goes through the real uvicorn server of ``tests/conftest.py`` over HTTP. Read-only
test modules load one dataset per module (``db``: the database emptied once for the module),
then compare many searches with :mod:`tests.search.oracle`; tests that write between searches
use ``fhir``, on a database emptied for the test. A module uses one of the two, never both.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.conftest import wipe
from tests.search import oracle
from tests.search.support import Fhir, client


@pytest.fixture(scope="module")
def db(live_server: str, engine: Engine, system_token: str) -> Iterator[Fhir]:
    """The live server on a database emptied once for the module (read-only modules load
    their dataset into it once)."""
    wipe(engine)
    oracle.BASE = live_server
    with client(live_server) as c:
        c.headers["Authorization"] = f"Bearer {system_token}"
        yield Fhir(c)


@pytest.fixture
def fhir(live_server: str, engine: Engine, system_token: str) -> Iterator[Fhir]:
    """The live server on a database emptied for this test."""
    wipe(engine)
    oracle.BASE = live_server
    with client(live_server) as c:
        c.headers["Authorization"] = f"Bearer {system_token}"
        yield Fhir(c)
