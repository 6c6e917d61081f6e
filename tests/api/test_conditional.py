"""Conditional create (If-None-Exist), conditional update (PUT Type?criteria) and conditional
delete (DELETE Type?criteria) (http://hl7.org/fhir/R4/http.html#ccreate, #cond-update,
#3.1.0.7.1)."""

from __future__ import annotations

import httpx

from tests.api.conftest import base, create, history, nothing_written, outcome, patient, search

SYS = "urn:example:mrn"


def mrn(value: str, **fields: object) -> dict[str, object]:
    return patient(identifier=[{"system": SYS, "value": value}], **fields)


# -- conditional create ---------------------------------------------------------------------------
def test_if_none_exist_with_no_match_creates(client: httpx.Client) -> None:
    r = client.post("/Patient", json=mrn("A1"), headers={"If-None-Exist": f"identifier={SYS}|A1"})
    assert r.status_code == 201
    assert r.headers["location"].startswith(f"{base(client)}/Patient/")
    assert len(search(client, f"Patient?identifier={SYS}|A1")) == 1


def test_if_none_exist_with_one_match_returns_it_with_200_and_writes_nothing(client: httpx.Client) -> None:
    existing = create(client, mrn("A1", active=True))
    r = client.post("/Patient", json=mrn("A1", active=False),
                    headers={"If-None-Exist": f"identifier={SYS}|A1"})
    assert r.status_code == 200
    assert r.json() == existing
    assert r.headers["etag"] == 'W/"1"'
    assert len(history(client)) == 1


def test_if_none_exist_with_two_matches_is_412_and_writes_nothing(client: httpx.Client) -> None:
    create(client, mrn("A1"))
    create(client, mrn("A1"))
    r = client.post("/Patient", json=mrn("A1"), headers={"If-None-Exist": f"identifier={SYS}|A1"})
    outcome(r, 412, "conflict")
    assert len(history(client)) == 2


def test_if_none_exist_with_an_unknown_parameter_is_400_and_writes_nothing(client: httpx.Client) -> None:
    r = client.post("/Patient", json=mrn("A1"), headers={"If-None-Exist": "shoe-size=9"})
    outcome(r, 400, "invalid")
    nothing_written(client)


# -- conditional update ---------------------------------------------------------------------------
def test_conditional_update_with_no_match_creates(client: httpx.Client) -> None:
    r = client.put(f"/Patient?identifier={SYS}|B1", json=mrn("B1"))
    assert r.status_code == 201
    assert r.headers["etag"] == 'W/"1"'
    assert [p["id"] for p in search(client, f"Patient?identifier={SYS}|B1")] == [r.json()["id"]]


def test_conditional_update_with_no_match_and_a_body_id_creates_that_id(client: httpx.Client) -> None:
    r = client.put(f"/Patient?identifier={SYS}|B1", json=mrn("B1", id="b-one"))
    assert r.status_code == 201
    assert client.get("/Patient/b-one").status_code == 200


def test_conditional_update_with_one_match_updates_that_resource(client: httpx.Client) -> None:
    rid = create(client, mrn("B1"))["id"]
    r = client.put(f"/Patient?identifier={SYS}|B1", json=mrn("B1", active=True))
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    assert r.json()["id"] == rid
    assert client.get(f"/Patient/{rid}").json()["active"] is True
    assert len(search(client, "Patient")) == 1


def test_conditional_update_with_one_match_and_another_body_id_is_400(client: httpx.Client) -> None:
    rid = create(client, mrn("B1"))["id"]
    outcome(client.put(f"/Patient?identifier={SYS}|B1", json=mrn("B1", id="other")), 400, "invalid", "id")
    assert client.get(f"/Patient/{rid}").headers["etag"] == 'W/"1"'
    assert client.get("/Patient/other").status_code == 404


def test_conditional_update_with_two_matches_is_412_and_changes_nothing(client: httpx.Client) -> None:
    a = create(client, mrn("B1"))
    b = create(client, mrn("B1"))
    outcome(client.put(f"/Patient?identifier={SYS}|B1", json=mrn("B1", active=True)), 412, "conflict")
    assert client.get(f"/Patient/{a['id']}").json() == a
    assert client.get(f"/Patient/{b['id']}").json() == b
    assert len(history(client)) == 2


def test_conditional_update_honours_if_match(client: httpx.Client) -> None:
    rid = create(client, mrn("B1"))["id"]
    url = f"/Patient?identifier={SYS}|B1"
    outcome(client.put(url, json=mrn("B1", active=True), headers={"If-Match": 'W/"9"'}), 412, "conflict")
    r = client.put(url, json=mrn("B1", active=True), headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["id"] == rid


def test_conditional_update_without_criteria_is_400(client: httpx.Client) -> None:
    outcome(client.put("/Patient", json=mrn("B1")), 400, "invalid")
    nothing_written(client)


# -- conditional delete ---------------------------------------------------------------------------
def test_conditional_delete_deletes_the_one_match(client: httpx.Client) -> None:
    keep = create(client, mrn("K"))
    gone = create(client, mrn("C1"))
    r = client.delete(f"/Patient?identifier={SYS}|C1")
    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["severity"] == "information"
    outcome(client.get(f"/Patient/{gone['id']}"), 410, "deleted")
    assert client.get(f"/Patient/{keep['id']}").status_code == 200


def test_conditional_delete_deletes_every_match(client: httpx.Client) -> None:
    ids = [create(client, mrn("C2"))["id"] for _ in range(3)]
    keep = create(client, mrn("K"))["id"]
    assert client.delete(f"/Patient?identifier={SYS}|C2").status_code == 200
    for rid in ids:
        assert client.get(f"/Patient/{rid}").status_code == 410
    assert [p["id"] for p in search(client, "Patient")] == [keep]


def test_conditional_delete_with_no_match_deletes_nothing(client: httpx.Client) -> None:
    keep = create(client, mrn("K"))["id"]
    r = client.delete(f"/Patient?identifier={SYS}|nobody")
    assert r.status_code in (200, 204)
    assert client.get(f"/Patient/{keep}").status_code == 200
    assert len(history(client)) == 1


def test_conditional_delete_without_criteria_is_400_and_deletes_nothing(client: httpx.Client) -> None:
    keep = create(client, mrn("K"))["id"]
    outcome(client.delete("/Patient"), 400, "invalid")
    assert client.get(f"/Patient/{keep}").status_code == 200
