"""Helpers of the HTTP tests of the FHIR REST API (http://hl7.org/fhir/R4/http.html).

Every test talks to the real uvicorn server of ``tests/conftest.py`` through the ``client``
fixture, which this module wraps so that every response the suite ever sees is checked for
leaks: no 500, and no Python stack trace in any body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

JSON = "application/fhir+json"
XML = "application/fhir+xml"
NHS = "https://fhir.nhs.uk/Id/nhs-number"


def _no_leaks(response: httpx.Response) -> None:
    response.read()
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text


@pytest.fixture
def client(client: httpx.Client) -> Iterator[httpx.Client]:
    """The shared client on an emptied database, every response checked by :func:`_no_leaks`."""
    client.event_hooks["response"].append(_no_leaks)
    yield client


def base(client: httpx.Client) -> str:
    """The server's FHIR base URL, as it writes it in Location headers and links."""
    return str(client.base_url).rstrip("/")


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **fields}


def create(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    """POST ``resource`` to its type; the created resource (asserting 201)."""
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def put(client: httpx.Client, resource: dict[str, Any], status: int = 200) -> dict[str, Any]:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


def outcome(r: httpx.Response, status: int, code: str | None = None,
            expression: str | None = None) -> dict[str, Any]:
    """Assert ``r`` is an error OperationOutcome with ``status``; its first issue has ``code``
    and (when given) exactly the FHIRPath ``expression``. Returns the first issue."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(JSON)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] in ("error", "fatal")
    assert issue["diagnostics"]
    if code is not None:
        assert issue["code"] == code, issue
    if expression is not None:
        assert issue.get("expression") == [expression], issue
    return issue  # type: ignore[no-any-return]


def history(client: httpx.Client, path: str = "/_history", **params: Any) -> list[dict[str, Any]]:
    """All entries of a history, following ``next`` links to the end."""
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = []
    while True:
        body = r.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "history"
        entries += body.get("entry", [])
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return entries
        r = client.get(nxt[0])
        assert r.status_code == 200, r.text


def nothing_written(client: httpx.Client) -> None:
    """The whole database is still empty: the system history has no entry."""
    assert history(client) == []


def search(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    """The matched resources of one searchset page."""
    r = client.get(f"/{query}")
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])
            if e.get("search", {}).get("mode", "match") == "match"]
