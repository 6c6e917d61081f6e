"""The FastRouter (api/app.py) picks exactly the route Starlette's own walk would pick."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.routing import Match

from carerecord.api.app import _METHODS, FastRouter, routes

SEGMENTS = ["fhir", "Patient", "Observation", "123", "_history", "_search", "$validate", "$access-log",
            "$everything", "metadata", "2", "authorize", "token", ".well-known", "smart-configuration",
            "cds-services", "healthz", ""]


def walk(router: FastRouter, scope: dict[str, object]) -> object:
    """The route Starlette's walk takes in full for ``scope`` (None: none does)."""
    for route in router.routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def fast(router: FastRouter, scope: dict[str, object]) -> object:
    path = str(scope["path"])
    for route in router._groups.get((path.count("/"), str(scope["method"])), []):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


@pytest.fixture(scope="module")
def router() -> FastRouter:
    r = FastRouter(routes())  # type: ignore[arg-type]
    assert r._groups, "every route has a fixed number of segments, so the fast path is on"
    return r


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from(_METHODS), segments=st.lists(st.sampled_from(SEGMENTS), min_size=0, max_size=5))
def test_the_fast_path_takes_the_route_the_walk_takes(router: FastRouter, method: str, segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    assert fast(router, scope) is walk(router, scope)


def test_a_route_of_any_length_turns_the_fast_path_off() -> None:
    from starlette.routing import Route

    async def anything(request: object) -> None:
        return None
    r = FastRouter([*routes(), Route("/files/{rest:path}", anything)])  # type: ignore[list-item]
    assert r._groups == {}
