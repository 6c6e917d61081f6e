"""A system client's purpose (issue 4): the national data opt-out excludes a patient from
secondary use (analytics, research) but never from direct care. A client registered for
secondary use gets tokens that say so, and the guard leaves every opted-out patient out of
whatever it reaches, exactly as if they were unknown; a direct-care client is not affected."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from carerecord.access.audit_store import AuditStore
from carerecord.access.clients import APP, Clients
from carerecord.access.consent import opted_out, opted_out_among, sharing
from carerecord.access.principal import Purpose
from carerecord.access.tokens import AccessTokens, mint_system_token
from tests.access.support import origin

CATEGORY = "https://carerecord.org/fhir/CodeSystem/consent-category"
OPT_OUT = {"coding": [{"system": CATEGORY, "code": "national-data-opt-out"}]}
OTHER = {"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}


def _consent(cid: str, pid: str, status: str, *categories: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Consent", "id": cid, "status": status, "category": list(categories),
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
            "patient": {"reference": f"Patient/{pid}"}, "policyRule": {"text": "National data opt-out"}}


@pytest.fixture
def world(client: httpx.Client) -> httpx.Client:
    """pat-out has registered the opt-out; pat-in has not."""
    for res in ({"resourceType": "Patient", "id": "pat-in", "name": [{"family": "In"}]},
                {"resourceType": "Patient", "id": "pat-out", "name": [{"family": "Out"}]},
                {"resourceType": "Observation", "id": "obs-in", "status": "final", "code": {"text": "BP"},
                 "subject": {"reference": "Patient/pat-in"}},
                {"resourceType": "Observation", "id": "obs-out", "status": "final", "code": {"text": "BP"},
                 "subject": {"reference": "Patient/pat-out"}},
                _consent("optout", "pat-out", "active", OPT_OUT)):
        r = client.put(f"/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code == 201, r.text
    return client


def _as(live_server: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=live_server, timeout=30,
                        headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"})


def _ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def test_the_opt_out_read_in_sql_agrees_with_the_consents_themselves(client: httpx.Client, engine: Engine) -> None:
    cases = {"p-active": ("active", [OPT_OUT]), "p-inactive": ("inactive", [OPT_OUT]),
             "p-other": ("active", [OTHER]), "p-both": ("active", [OTHER, OPT_OUT]),
             "p-deleted": ("active", [OPT_OUT]), "p-none": None}
    for pid, case in cases.items():
        assert client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).status_code == 201
        if case is not None:
            status, categories = case
            consent = _consent(f"c-{pid}", pid, status, *categories)
            assert client.put(f"/Consent/c-{pid}", json=consent).status_code == 201
    assert client.delete("/Consent/c-p-deleted").status_code == 204
    with engine.connect() as conn:
        by_sql = opted_out_among(conn, cases)
        by_consents = {pid for pid in cases if sharing(conn, pid).opted_out}
        assert by_sql == by_consents == {"p-active", "p-both"}
        assert [opted_out(conn, pid) for pid in ("p-active", "p-none")] == [True, False]


def test_a_secondary_use_client_never_reaches_an_opted_out_patient(world: httpx.Client, engine: Engine,
                                                                   live_server: str) -> None:
    token = mint_system_token(engine, "system/*.cruds system/AuditEvent.rs", audience=live_server,
                              client_id="research", purpose=Purpose.SECONDARY_USE)
    store = AuditStore(engine)
    before = store.position()
    with _as(live_server, token) as c:
        for path in ("/Patient/pat-out", "/Observation/obs-out", "/Patient/pat-out/Observation"):
            unknown = c.get(path.replace("out", "nobody"))
            r = c.get(path)
            assert r.status_code == unknown.status_code == 404, path
            assert r.json()["issue"][0]["diagnostics"] == unknown.json()["issue"][0]["diagnostics"].replace(
                "nobody", "out")
        assert _ids(c.get("/Patient")) == {"pat-in"}
        assert _ids(c.get("/Observation")) == {"obs-in"}
        assert _ids(c.get("/Patient", params={"_revinclude": "Observation:subject"})) == {"pat-in", "obs-in"}
        assert _ids(c.get("/Observation", params={"_include": "Observation:subject"})) == {"obs-in", "pat-in"}
        assert c.get("/Observation", params={"_total": "accurate"}).json()["total"] == 1
        assert c.get("/Observation/obs-out/_history").status_code == 404
        for path in ("/_history", "/Observation/_history"):
            assert c.get(path).status_code == 403, path
        assert c.get("/Patient/pat-in/$access-log").status_code == 403
        # A write naming them fails exactly as one naming an unknown patient.
        refused = {}
        for pid in ("pat-out", "pat-nobody"):
            r = c.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                             "subject": {"reference": f"Patient/{pid}"}})
            assert r.status_code == 400, r.text
            refused[pid] = r.json()["issue"][0]["diagnostics"].replace(pid, "?")
        assert refused["pat-out"] == refused["pat-nobody"]
        assert c.get("/Patient/pat-in").status_code == 200
    records = [orjson.loads(e.content) for e in store.since(before)]
    answered = [r for r in records if r.get("cid") == "research" and r["s"] == 200]
    assert answered and {r["b"] for r in answered} == {"system:secondary-use"}  # the basis in the audit trail


def test_a_direct_care_client_is_not_held_to_the_opt_out(world: httpx.Client) -> None:
    assert _ids(world.get("/Patient")) == {"pat-in", "pat-out"}
    assert world.get("/Observation/obs-out").status_code == 200
    assert world.get("/_history").status_code == 200


def test_a_client_registered_for_secondary_use_gets_tokens_that_say_so(client: httpx.Client, engine: Engine,
                                                                       live_server: str) -> None:
    clients = Clients(engine)
    research = clients.add("research", "system/*.rs", purpose="secondary-use")
    care = clients.add("care", "system/*.rs")
    assert clients.get(research.client.client_id).purpose == "secondary-use"  # type: ignore[union-attr]
    assert clients.get(care.client.client_id).purpose == "direct-care"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="system client"):
        clients.add("an app", "user/*.rs", kind=APP, redirect_uris=("https://app.example/cb",), purpose="secondary-use")
    with pytest.raises(ValueError, match="purpose"):
        clients.add("odd", "system/*.rs", purpose="marketing")
    tokens = AccessTokens(engine, origin(live_server), live_server)
    for made, purpose in ((research, Purpose.SECONDARY_USE), (care, Purpose.DIRECT_CARE)):
        r = httpx.post(f"{origin(live_server)}/oauth/token", data={"grant_type": "client_credentials",
                                                                   "scope": "system/*.rs"},
                       auth=(made.client.client_id, made.secret or ""))
        assert r.status_code == 200, r.text
        assert tokens.principal(r.json()["access_token"]).purpose is purpose
