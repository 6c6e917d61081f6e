"""The default demo community, generated once for all demo tests."""

from __future__ import annotations

from typing import Any

import pytest

from carerecord.demo import generate
from tests.demo.helpers import PEOPLE, Resource


@pytest.fixture(scope="session")
def community() -> list[dict[str, Any]]:
    """The transaction Bundles of the default 200-person, seed-2026 community."""
    return list(generate(PEOPLE))


@pytest.fixture(scope="session")
def shared(community: list[dict[str, Any]]) -> list[Resource]:
    return [e["resource"] for e in community[0]["entry"]]


@pytest.fixture(scope="session")
def people(community: list[dict[str, Any]]) -> list[list[Resource]]:
    """Each person's resources, Patient first."""
    return [[e["resource"] for e in bundle["entry"]] for bundle in community[1:]]


@pytest.fixture(scope="session")
def resources(community: list[dict[str, Any]]) -> list[Resource]:
    return [e["resource"] for bundle in community for e in bundle["entry"]]
