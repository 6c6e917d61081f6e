"""The audit trail over real HTTP (issue 4, audit): every read, search, write and denial gives
the expected BALP AuditEvent, committed before the response is sent; AuditEvents cannot be
written through the API; $access-log says in plain words who looked at a record."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from carerecord.access.grants import Grantee
from carerecord.access.tokens import AccessTokens
from carerecord.fhir.validation import validate

ORG = "Organization/org-practice"


def token(engine: Engine, live_server: str, grantee: Grantee, scope: str = "user/*.cruds") -> str:
    issuer = live_server[: -len("/fhir")]
    minted, _ = AccessTokens(engine, issuer, live_server).mint("audit-tests", scope, grantee, 300)
    return minted


def as_(client: httpx.Client, bearer: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {bearer}"}


@pytest.fixture
def world(client: httpx.Client) -> httpx.Client:
    for res in ({"resourceType": "Organization", "id": "org-practice", "name": "Riverside Surgery"},
                {"resourceType": "Practitioner", "id": "dr-ann", "name": [{"family": "Smith", "given": ["Ann"],
                                                                           "prefix": ["Dr"]}]},
                {"resourceType": "Patient", "id": "pat-a", "name": [{"family": "Able"}], "managingOrganization": {"reference": ORG}},
                {"resourceType": "Patient", "id": "pat-b", "name": [{"family": "Baker"}], "managingOrganization": {"reference": ORG}},
                {"resourceType": "Observation", "id": "obs-a", "status": "final", "code": {"text": "BP"},
                 "subject": {"reference": "Patient/pat-a"}},
                {"resourceType": "Observation", "id": "obs-b", "status": "final", "code": {"text": "BP"},
                 "subject": {"reference": "Patient/pat-b"}}):
        r = client.put(f"/{res['resourceType']}/{res['id']}", json=res)
        assert r.status_code in (200, 201), r.text
    return client


@pytest.fixture
def store(engine: Engine) -> AuditStore:
    return AuditStore(engine)


def events_after(store: AuditStore, seq: int) -> list[dict[str, Any]]:
    return [balp(e.seq, e.recorded_us, e.patient, e.content, e.shard) for e in store.since(seq)]


def gp(engine: Engine, live_server: str) -> str:
    return token(engine, live_server, Grantee("staff", "Practitioner/dr-ann", practitioner_role="PractitionerRole/r1",
                                              role="doctor", organization=ORG, display="Dr Ann Smith"))


def entity_refs(event: dict[str, Any], role: str) -> list[str]:
    return [e["what"]["reference"] for e in event.get("entity", []) if e["role"]["code"] == role and "what" in e]


def test_a_read_by_id_is_audited_as_one_valid_balp_event(world: httpx.Client, store: AuditStore,
                                                         engine: Engine, live_server: str) -> None:
    before = store.position()
    r = world.get("/Observation/obs-a", headers=as_(world, gp(engine, live_server)))
    assert r.status_code == 200
    [event] = events_after(store, before)
    assert [i for i in validate(event) if i.severity in ("error", "fatal")] == []
    assert event["action"] == "R" and event["outcome"] == "0"
    assert event["subtype"][0]["code"] == "read"
    assert entity_refs(event, "1") == ["Patient/pat-a"]
    assert entity_refs(event, "4") == ["Observation/obs-a"]
    user = event["agent"][0]
    assert user["who"] == {"reference": "Practitioner/dr-ann", "display": "Dr Ann Smith"}
    assert user["role"][0]["coding"][0]["code"] == "doctor"
    assert {"reference": ORG} in [a["who"] for a in event["agent"]]
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"


def test_a_search_gives_one_event_per_patient_with_the_query(world: httpx.Client, store: AuditStore) -> None:
    before = store.position()
    r = world.get("/Observation", params={"code:text": "BP", "_include": "Observation:subject"})
    assert r.status_code == 200 and len(r.json()["entry"]) == 4
    events = events_after(store, before)
    assert sorted(entity_refs(e, "1")[0] for e in events) == ["Patient/pat-a", "Patient/pat-b"]
    for event in events:
        assert event["action"] == "E" and event["subtype"][0]["code"] == "search-type"
        query = [e for e in event["entity"] if e["role"]["code"] == "24"][0]["query"]
        assert "_include=Observation" in base64.b64decode(query).decode()
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "HOPERAT"  # the system token
        assert [i for i in validate(event) if i.severity in ("error", "fatal")] == []
    # Each patient's event lists that patient's resources, not the whole page's.
    own = {entity_refs(e, "1")[0]: entity_refs(e, "4") for e in events}
    assert own == {"Patient/pat-a": ["Observation/obs-a"], "Patient/pat-b": ["Observation/obs-b"]}


def test_a_system_read_names_the_patient_of_the_resource(world: httpx.Client, store: AuditStore) -> None:
    before = store.position()
    assert world.get("/Observation/obs-b").status_code == 200
    [event] = events_after(store, before)
    assert entity_refs(event, "1") == ["Patient/pat-b"] and entity_refs(event, "4") == ["Observation/obs-b"]
    assert [i for i in validate(event) if i.severity in ("error", "fatal")] == []


def test_rows_stored_as_whole_audit_events_are_still_read() -> None:
    """Rows written before audit records were compact hold the AuditEvent JSON itself."""
    event = {"resourceType": "AuditEvent", "id": "old", "action": "R", "outcome": "0"}
    assert balp(7, 0, "pat-a", orjson.dumps(event).decode()) == event


def test_a_write_is_audited_as_create_about_its_patient(world: httpx.Client, store: AuditStore) -> None:
    before = store.position()
    r = world.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "HR"},
                                         "subject": {"reference": "Patient/pat-b"}})
    assert r.status_code == 201
    [event] = events_after(store, before)
    assert event["action"] == "C" and event["subtype"][0]["code"] == "create"
    assert entity_refs(event, "1") == ["Patient/pat-b"]
    assert entity_refs(event, "4") == [f"Observation/{r.json()['id']}"]


def test_a_denial_is_audited_as_a_minor_failure(world: httpx.Client, store: AuditStore, engine: Engine,
                                                live_server: str) -> None:
    before = store.position()
    narrow = token(engine, live_server, Grantee("patient", "Patient/pat-a", patients=("pat-a",)),
                   scope="patient/Patient.rs")
    r = world.get("/Patient/pat-b/Observation", headers=as_(world, narrow))
    assert r.status_code == 403
    [event] = events_after(store, before)
    assert event["outcome"] == "4" and "denied" in event["outcomeDesc"]
    assert entity_refs(event, "1") == ["Patient/pat-b"]
    assert event["agent"][0]["who"]["reference"] == "Patient/pat-a"
    before = store.position()
    r = world.get("/Patient/pat-a", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    [event] = events_after(store, before)
    assert event["outcome"] == "4" and event["agent"][0]["who"]["display"] == "an unauthenticated caller"


@pytest.mark.parametrize(("method", "path"), [("POST", "/AuditEvent"), ("PUT", "/AuditEvent/x"),
                                              ("DELETE", "/AuditEvent/x"), ("PATCH", "/AuditEvent/x")])
def test_audit_events_cannot_be_written_through_the_api(world: httpx.Client, store: AuditStore,
                                                        method: str, path: str) -> None:
    before = store.position()
    body = {"resourceType": "AuditEvent", "id": "x"}
    r = world.request(method, path, json=body if method in ("POST", "PUT") else None,
                      content=b"[]" if method == "PATCH" else None,
                      headers={"Content-Type": "application/json-patch+json"} if method == "PATCH" else None)
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"
    [event] = events_after(store, before)
    assert event["outcome"] == "4"


def test_a_transaction_cannot_write_audit_events(world: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p-new"}, "request": {"method": "PUT", "url": "Patient/p-new"}},
        {"request": {"method": "DELETE", "url": "AuditEvent/x"}}]}
    r = world.post("", json=bundle)
    assert r.status_code == 405
    assert world.get("/Patient/p-new").status_code == 404
    ok = world.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": bundle["entry"][:1]})
    assert ok.status_code == 200


def test_the_access_log_tells_a_patient_who_looked_in_plain_words(world: httpx.Client, engine: Engine,
                                                                 live_server: str) -> None:
    assert world.get("/Observation/obs-a", headers=as_(world, gp(engine, live_server))).status_code == 200
    patient = token(engine, live_server, Grantee("patient", "Patient/pat-a", patients=("pat-a",)),
                    scope="patient/*.rs")
    r = world.get("/Patient/pat-a/$access-log", headers=as_(world, patient))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    texts = [e["resource"]["text"]["div"] for e in r.json()["entry"]]
    assert any("Dr Ann Smith, Doctor at Riverside Surgery, looked at your record "
               "(Observation/obs-a)" in t and "for your care" in t for t in texts), texts
    other = world.get("/Patient/pat-b/$access-log", headers=as_(world, patient))
    assert other.status_code == 404  # another patient's log: no oracle


def test_the_privacy_officer_sees_the_access_log_and_a_nurse_does_not(world: httpx.Client, engine: Engine,
                                                                      live_server: str) -> None:
    assert world.get("/Patient/pat-b", headers=as_(world, gp(engine, live_server))).status_code == 200
    officer = token(engine, live_server, Grantee("staff", "Practitioner/po", practitioner_role="PractitionerRole/po",
                                                 role="privacy-officer", organization=ORG))
    nurse = token(engine, live_server, Grantee("staff", "Practitioner/nn", practitioner_role="PractitionerRole/nn",
                                               role="nurse", organization=ORG))
    r = world.get("/Patient/pat-b/$access-log", headers=as_(world, officer))
    assert r.status_code == 200
    assert any("Dr Ann Smith" in e["resource"]["text"]["div"] for e in r.json()["entry"])
    assert world.get("/Patient/pat-b/$access-log", headers=as_(world, nurse)).status_code == 403
    assert world.get("/Patient/nobody/$access-log", headers=as_(world, officer)).status_code == 404


def test_a_break_glass_reason_appears_in_the_log(store: AuditStore, world: httpx.Client) -> None:
    from carerecord.access.access_log import sentence
    from carerecord.access.audit import Facts, audit_events
    from carerecord.access.principal import Kind, Principal, SelectedRole
    from carerecord.access.scopes import ScopeSet

    who = Principal(Kind.STAFF, "Practitioner/dr-ann", "app", ScopeSet.parse("user/*.rs"), "iss", "jti", 0,
                    SelectedRole("PractitionerRole/r1", "paramedic", ORG, frozenset()), display="Dr Ann Smith")
    [row] = audit_events(Facts("GET", "/Patient/pat-a", "", 200, who, ["pat-a"], ["Patient/pat-a"], "success",
                               "break-glass:unconscious patient", 0))
    event = balp(1, row.recorded_us, row.patient, row.content)
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert not [i for i in validate(event) if i.severity in ("error", "fatal")]
    said = sentence(event, "pat-a", lambda ref: "Riverside Surgery")
    assert "Paramedic at Riverside Surgery" in said and "“unconscious patient”" in said

