"""Helpers of the search tests: a small FHIR client over httpx, and :func:`check`, which
compares one search on the live server with the brute-force :mod:`tests.search.oracle`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, settings

from tests.search import oracle

JSON = "application/fhir+json"

# Hypothesis: few examples (each is one HTTP search against data loaded once per module or
# test), no deadline (the server shares two cores), derandomized so CI runs are repeatable.
FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def no_leaks(response: httpx.Response) -> None:
    response.read()
    assert response.status_code != 500, response.text
    assert "Traceback" not in response.text


class Fhir:
    """A small FHIR client over httpx for the tests: loading data, searching, following pages."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.base = str(http.base_url).rstrip("/")

    # -- writing ---------------------------------------------------------------------------------
    def load(self, resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """PUT every resource (which has an id) in one transaction; the stored resources by
        ``Type/id``."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources]}
        r = self.http.post("", json=bundle)
        assert r.status_code == 200, r.text
        out = {}
        for e in r.json()["entry"]:
            res = e["resource"]
            out[f"{res['resourceType']}/{res['id']}"] = res
        return out

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def put(self, resource: dict[str, Any]) -> dict[str, Any]:
        r = self.http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text
        return r.json()  # type: ignore[no-any-return]

    def delete(self, ref: str) -> None:
        r = self.http.delete(f"/{ref}")
        assert r.status_code in (200, 204), r.text

    # -- searching -------------------------------------------------------------------------------
    def get(self, url: str, params: Any = None, **kw: Any) -> httpx.Response:
        if not url:
            url = self.base  # system level: [base]?...
        elif "://" not in url and not url.startswith("/"):
            url = f"/{url}"
        return self.http.get(url, params=params, **kw)

    def bundle(self, url: str, params: Any = None, **kw: Any) -> dict[str, Any]:
        """One searchset page (asserting 200 and a searchset Bundle)."""
        r = self.get(url, params, **kw)
        assert r.status_code == 200, f"{r.request.url}: {r.text}"
        body = r.json()
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
        return body  # type: ignore[no-any-return]

    def pages(self, url: str, params: Any = None, relation: str = "next",
              **kw: Any) -> Iterator[dict[str, Any]]:
        """Every page from ``url`` on, following ``relation`` links (at most 200 pages)."""
        body = self.bundle(url, params, **kw)
        for _ in range(200):
            yield body
            nxt = link(body, relation)
            if nxt is None:
                return
            body = self.bundle(nxt, **kw)
        raise AssertionError(f"more than 200 pages from {url}")

    def search(self, url: str, params: Any = None, **kw: Any) -> list[dict[str, Any]]:
        """The matches of every page, in order; asserts none is returned twice."""
        out = [r for body in self.pages(url, params, **kw) for r in matches(body)]
        keys = [f"{r['resourceType']}/{r['id']}" for r in out]
        assert len(keys) == len(set(keys)), f"duplicates across pages: {keys}"
        return out

    def ids(self, url: str, params: Any = None, **kw: Any) -> set[str]:
        """Ids of all matches."""
        return {r["id"] for r in self.search(url, params, **kw)}

    def keys(self, url: str, params: Any = None, **kw: Any) -> set[str]:
        """``Type/id`` of all matches (for searches over several types)."""
        return {f"{r['resourceType']}/{r['id']}" for r in self.search(url, params, **kw)}

    def error(self, url: str, params: Any = None, status: int = 400, **kw: Any) -> str:
        """Assert an OperationOutcome error with ``status``; its diagnostics."""
        r = self.get(url, params, **kw)
        assert r.status_code == status, f"{r.request.url}: {r.status_code} {r.text}"
        body = r.json()
        assert body["resourceType"] == "OperationOutcome", body
        issue = body["issue"][0]
        assert issue["severity"] in ("error", "fatal") and issue.get("diagnostics"), issue
        return str(issue["diagnostics"])


def link(bundle: dict[str, Any], relation: str) -> str | None:
    found = [x["url"] for x in bundle.get("link", []) if x["relation"] == relation]
    return found[0] if found else None


def matches(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def included(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "include"]


def outcomes(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == "outcome"]


def qs(pairs: list[tuple[str, str]]) -> str:
    return urlencode(pairs)


def check(db: Fhir, truth: oracle.Oracle, res_type: str, pairs: list[tuple[str, str]]) -> set[str]:
    """Run ``res_type?pairs`` on the server and compare with the oracle: every resource that
    must match is returned, and nothing that must not. Returns the server's ids."""
    got = db.ids(f"{res_type}?{qs(pairs)}")
    must, may = truth.select(res_type, pairs)
    missing, extra = must - got, got - must - may
    assert not missing and not extra, (f"{res_type}?{'&'.join(f'{k}={v}' for k, v in pairs)}: "
                                       f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    return got


def client(live_server: str) -> httpx.Client:
    c = httpx.Client(base_url=live_server, timeout=30, headers={"Accept": JSON})
    c.event_hooks["response"].append(no_leaks)
    return c
