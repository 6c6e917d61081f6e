"""Limits over HTTP (api/limits.py): an oversized Bundle or body is a 413 OperationOutcome, a
client past its rate a 429 with Retry-After, and the token bucket refills with time."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine
from starlette.testclient import TestClient

from carerecord.access.grants import Grantee
from carerecord.access.tokens import AccessTokens
from carerecord.api.app import create_app
from carerecord.api.limits import Buckets
from carerecord.config import Settings
from carerecord.store.repository import Repository
from tests.api.conftest import outcome

BASE = "http://testserver/fhir"


def test_a_bundle_over_the_entry_limit_is_413(client: httpx.Client) -> None:
    entry = {"request": {"method": "GET", "url": "Patient/x"}}
    r = client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [entry] * 10_001})
    outcome(r, 413, "too-long")


def test_a_bucket_gives_its_burst_then_asks_to_wait_then_refills() -> None:
    buckets = Buckets(rate=2, burst=3)
    assert [buckets.take("app", 100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("app", 100.0) == 0.5
    assert buckets.take("other-app", 100.0) == 0  # one client's bucket is not another's
    assert buckets.take("app", 100.6) == 0


def _user_token(engine: Engine) -> str:
    tokens = AccessTokens(engine, "http://testserver", BASE)
    return tokens.mint("busy-app", "patient/*.cruds", Grantee("patient", "Patient/p1", patients=("p1",)), 300)[0]


def test_a_client_past_its_rate_gets_429_with_retry_after_and_a_large_body_413(engine: Engine) -> None:
    settings = Settings(database="sqlite://", base_url=BASE, rate_per_second=0.5, rate_burst=2, max_request_bytes=1000)
    with TestClient(create_app(settings, Repository(engine))) as app:
        auth = {"Authorization": f"Bearer {_user_token(engine)}"}
        assert app.get("/fhir/Patient/p1", headers=auth).status_code == 404
        assert app.get("/fhir/Patient/p1", headers=auth).status_code == 404
        r = app.get("/fhir/Patient/p1", headers=auth)
        assert r.status_code == 429
        assert r.json()["issue"][0]["code"] == "throttled"
        assert int(r.headers["retry-after"]) >= 1
    settings = Settings(database="sqlite://", base_url=BASE, max_request_bytes=1000)
    with TestClient(create_app(settings, Repository(engine))) as app:
        auth = {"Authorization": f"Bearer {_user_token(engine)}"}
        r = app.post("/fhir/Observation", headers={**auth, "Content-Type": "application/fhir+json"},
                     content=b"{" + b" " * 5000 + b"}")
        assert r.status_code == 413
        assert r.json()["issue"][0]["code"] == "too-long"
