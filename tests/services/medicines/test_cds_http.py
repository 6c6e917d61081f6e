"""The CDS Hooks endpoints over real HTTP (uvicorn, SQLite or PostgreSQL): discovery, a call
with full prefetch, a call with none (answered from the local store, within the caller's
token scopes, never from the request's fhirServer), errors as JSON, and feedback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.services.medicines.helpers import allergy, dose, egfr, order, taking
from tests.services.medicines.spec_examples import assert_valid_response, blocks, hook_request

pytestmark = pytest.mark.http
SIGN = "/cds-services/carerecord-medicines-sign"
FHIR = "application/fhir+json"


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _call(drafts: list[dict[str, Any]], prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": "order-sign", "hookInstance": "4b7a9e", "fhirServer": "https://attacker.invalid/fhir",
                            "context": {"userId": "Practitioner/1", "patientId": "p1", "draftOrders": _bundle(*drafts)}}
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def _store(cds: httpx.Client, *resources: dict[str, Any]) -> None:
    for r in resources:
        resp = cds.put(f"/fhir/{r['resourceType']}/{r['id']}", json=r, headers={"Content-Type": FHIR})
        assert resp.status_code in (200, 201), resp.text


def test_discovery_lists_the_services(cds: httpx.Client) -> None:
    r = cds.get("/cds-services")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert {s["hook"] for s in r.json()["services"]} == {"order-select", "order-sign"}


def test_the_endpoints_need_a_token(cds: httpx.Client) -> None:
    assert cds.get("/cds-services", headers={"Authorization": ""}).status_code == 401


def test_a_call_with_prefetch_returns_cards(cds: httpx.Client) -> None:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-02"},
                "allergies": _bundle(allergy("Penicillin")), "medications": _bundle(taking("Warfarin 1mg tablets")),
                "statements": None, "egfr": None}
    r = cds.post(SIGN, json=_call([order("Amoxicillin 500mg capsules", dose(1, "capsule", 3))], prefetch))
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid_response(body)
    assert [c["indicator"] for c in body["cards"]] == ["critical"]


def test_without_prefetch_the_record_is_read_from_the_local_store(cds: httpx.Client) -> None:
    _store(cds, {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-02"},
           allergy("Penicillin"), taking("Simvastatin 40mg tablets", id="simva"),
           {**taking("Warfarin 1mg tablets", id="old"), "status": "stopped"}, egfr(25))
    r = cds.post(SIGN, json=_call([order("Clarithromycin 500mg tablets", id="c"),
                                   order("Metformin 500mg tablets", dose(1, per_day=2), id="m")]))
    assert r.status_code == 200, r.text
    summaries = [(c["indicator"], c["summary"]) for c in r.json()["cards"]]
    assert ("critical", "Clarithromycin 500mg tablets with Simvastatin 40mg tablets: contraindicated interaction") in summaries
    assert any(i == "critical" and "Metformin" in s and "eGFR 25" in s for i, s in summaries)
    assert not any("Warfarin" in s for _, s in summaries)  # stopped


def test_without_prefetch_the_callers_scopes_still_apply(cds: httpx.Client, engine: Engine, live_server: str) -> None:
    from carerecord.access.tokens import mint_system_token

    token = mint_system_token(engine, "system/Patient.rs", audience=live_server, client_id="narrow")
    _store(cds, {"resourceType": "Patient", "id": "p1"})
    r = cds.post(SIGN, json=_call([order("Aspirin 75mg tablets")]), headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_the_spec_order_sign_example_is_answered_over_http(cds: httpx.Client) -> None:
    _store(cds, {"resourceType": "Patient", "id": "1288992"})
    r = cds.post(SIGN, json=hook_request(blocks("hooks", "order-sign.md")[0], "order-sign"))
    assert r.status_code == 200, r.text
    assert_valid_response(r.json())


def test_errors_are_json_with_cds_statuses(cds: httpx.Client) -> None:
    assert cds.post("/cds-services/nope", json=_call([])).status_code == 404
    bad = cds.post(SIGN, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json()
    assert cds.post(SIGN, json={"hook": "order-sign"}).status_code == 400


def test_feedback_records_an_override(cds: httpx.Client) -> None:
    prefetch = {"patient": {"resourceType": "Patient", "id": "p1"}, "allergies": _bundle(allergy("Penicillin")),
                "medications": None, "statements": None, "egfr": None}
    [card] = cds.post(SIGN, json=_call([order("Amoxicillin 500mg capsules")], prefetch)).json()["cards"]
    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-23T10:00:00Z",
                        "overrideReason": {"reason": card["overrideReasons"][1], "userComment": "Had it in 2024"}}]}
    assert cds.post(f"{SIGN}/feedback", json=fb).status_code == 200
    assert cds.post(f"{SIGN}/feedback", json={"feedback": [{"card": "x"}]}).status_code == 400
