"""read, vread, create, update, delete and their headers (http://hl7.org/fhir/R4/http.html),
optimistic locking with If-Match, conditional read (If-None-Match, If-Modified-Since) and
Prefer: return."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import httpx

from tests.api.conftest import JSON, base, create, history, nothing_written, outcome, patient, put


def test_create_is_201_with_location_etag_last_modified_and_the_stored_resource(
        client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient(active=True, name=[{"family": "Smith"}]))
    assert r.status_code == 201
    body = r.json()
    rid = body["id"]
    assert r.headers["location"] == f"{base(client)}/Patient/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"] == f"{JSON}; charset=utf-8"
    modified = parsedate_to_datetime(r.headers["last-modified"])
    assert body["meta"]["versionId"] == "1"
    stamped = body["meta"]["lastUpdated"]
    assert modified.strftime("%Y-%m-%dT%H:%M:%S") == stamped[:19]
    assert body == {"resourceType": "Patient", "id": rid,
                    "meta": {"versionId": "1", "lastUpdated": stamped},
                    "active": True, "name": [{"family": "Smith"}]}


def test_create_ignores_a_client_id_and_meta_version(client: httpx.Client) -> None:
    body = create(client, patient(id="mine", meta={"versionId": "7", "lastUpdated": "2001-01-01T00:00:00Z",
                                                   "tag": [{"code": "kept"}]}))
    assert body["id"] != "mine"
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert body["meta"]["tag"] == [{"code": "kept"}]
    assert client.get("/Patient/mine").status_code == 404


def test_read_returns_the_current_version_with_etag_and_last_modified(client: httpx.Client) -> None:
    made = create(client, patient(active=True))
    r = client.get(f"/Patient/{made['id']}")
    assert r.status_code == 200
    assert r.json() == made
    assert r.headers["etag"] == 'W/"1"'
    assert parsedate_to_datetime(r.headers["last-modified"])
    assert "location" not in r.headers


def test_head_answers_like_read_without_a_body(client: httpx.Client) -> None:
    made = create(client, patient(active=True))
    r = client.head(f"/Patient/{made['id']}")
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"1"'
    assert r.content == b""


def test_read_of_an_unknown_id_is_404_not_found(client: httpx.Client) -> None:
    outcome(client.get("/Patient/nobody"), 404, "not-found")


def test_update_writes_version_2_and_vread_serves_each_version(client: httpx.Client) -> None:
    made = create(client, patient(active=True))
    rid = made["id"]
    r = client.put(f"/Patient/{rid}", json=patient(id=rid, active=False))
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    assert r.json()["meta"]["versionId"] == "2"
    assert r.json()["active"] is False
    v1 = client.get(f"/Patient/{rid}/_history/1")
    assert v1.status_code == 200 and v1.headers["etag"] == 'W/"1"'
    assert v1.json() == made
    v2 = client.get(f"/Patient/{rid}/_history/2")
    assert v2.json()["active"] is False and v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/Patient/{rid}").json() == v2.json()


def test_vread_of_a_version_that_does_not_exist_is_404(client: httpx.Client) -> None:
    rid = create(client, patient())["id"]
    outcome(client.get(f"/Patient/{rid}/_history/2"), 404, "not-found")
    outcome(client.get(f"/Patient/{rid}/_history/0"), 404, "not-found")
    outcome(client.get(f"/Patient/{rid}/_history/latest"), 404, "not-found")


def test_update_as_create_with_a_client_chosen_id_is_201_with_location(client: httpx.Client) -> None:
    r = client.put("/Patient/chosen-1", json=patient(id="chosen-1", active=True))
    assert r.status_code == 201
    assert r.headers["location"] == f"{base(client)}/Patient/chosen-1/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.json()["id"] == "chosen-1"
    assert client.get("/Patient/chosen-1").json()["active"] is True


def test_update_without_an_id_in_the_body_is_400_and_writes_nothing(client: httpx.Client) -> None:
    outcome(client.put("/Patient/p1", json=patient(active=True)), 400, "invalid", "id")
    nothing_written(client)


def test_delete_is_204_then_read_is_410_gone_with_an_outcome(client: httpx.Client) -> None:
    rid = create(client, patient(active=True))["id"]
    r = client.delete(f"/Patient/{rid}")
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["etag"] == 'W/"2"'
    outcome(client.get(f"/Patient/{rid}"), 410, "deleted")


def test_delete_keeps_history_which_shows_the_delete(client: httpx.Client) -> None:
    made = create(client, patient(active=True))
    rid = made["id"]
    assert client.delete(f"/Patient/{rid}").status_code == 204
    assert client.get(f"/Patient/{rid}/_history/1").json() == made
    outcome(client.get(f"/Patient/{rid}/_history/2"), 410, "deleted")
    entries = history(client, f"/Patient/{rid}/_history")
    assert [e["request"] for e in entries] == [{"method": "DELETE", "url": f"Patient/{rid}"},
                                               {"method": "POST", "url": "Patient"}]
    assert "resource" not in entries[0]
    assert entries[0]["response"]["status"].startswith("204")
    assert entries[0]["response"]["etag"] == 'W/"2"'
    assert entries[1]["resource"] == made


def test_deleted_resource_can_be_created_again_as_the_next_version(client: httpx.Client) -> None:
    put(client, patient(id="back", active=True), 201)
    assert client.delete("/Patient/back").status_code == 204
    r = client.put("/Patient/back", json=patient(id="back", active=False))
    assert r.status_code == 201
    assert r.headers["etag"] == 'W/"3"'
    assert client.get("/Patient/back").json()["active"] is False


def test_delete_of_a_missing_or_deleted_resource_is_204(client: httpx.Client) -> None:
    assert client.delete("/Patient/never").status_code == 204
    put(client, patient(id="twice"), 201)
    assert client.delete("/Patient/twice").status_code == 204
    assert client.delete("/Patient/twice").status_code == 204
    assert len(history(client, "/Patient/twice/_history")) == 2


# -- optimistic locking ---------------------------------------------------------------------
def test_if_match_with_the_current_version_updates(client: httpx.Client) -> None:
    put(client, patient(id="lock", active=True), 201)
    r = client.put("/Patient/lock", json=patient(id="lock", active=False), headers={"If-Match": 'W/"1"'})
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'


def test_stale_if_match_is_412_and_changes_nothing(client: httpx.Client) -> None:
    put(client, patient(id="lock", active=True), 201)
    put(client, patient(id="lock", active=False))
    r = client.put("/Patient/lock", json=patient(id="lock", gender="male"), headers={"If-Match": 'W/"1"'})
    outcome(r, 412, "conflict")
    current = client.get("/Patient/lock")
    assert current.headers["etag"] == 'W/"2"'
    assert "gender" not in current.json()
    assert len(history(client, "/Patient/lock/_history")) == 2


def test_if_match_on_a_resource_that_does_not_exist_is_412_and_creates_nothing(client: httpx.Client) -> None:
    r = client.put("/Patient/ghost", json=patient(id="ghost"), headers={"If-Match": 'W/"1"'})
    outcome(r, 412, "conflict")
    nothing_written(client)


def test_stale_if_match_on_delete_is_412_and_deletes_nothing(client: httpx.Client) -> None:
    put(client, patient(id="lock"), 201)
    put(client, patient(id="lock", active=True))
    outcome(client.delete("/Patient/lock", headers={"If-Match": 'W/"1"'}), 412, "conflict")
    assert client.get("/Patient/lock").status_code == 200
    assert client.delete("/Patient/lock", headers={"If-Match": 'W/"2"'}).status_code == 204


def test_malformed_if_match_is_400_naming_the_header(client: httpx.Client) -> None:
    put(client, patient(id="lock"), 201)
    r = client.put("/Patient/lock", json=patient(id="lock", active=True), headers={"If-Match": "one"})
    outcome(r, 400, "invalid", "If-Match")
    assert client.get("/Patient/lock").headers["etag"] == 'W/"1"'


# -- conditional read -------------------------------------------------------------------------
def test_if_none_match_with_the_current_etag_is_304_without_a_body(client: httpx.Client) -> None:
    put(client, patient(id="c"), 201)
    put(client, patient(id="c", active=True))
    r = client.get("/Patient/c", headers={"If-None-Match": 'W/"2"'})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == 'W/"2"'


def test_if_none_match_with_an_older_etag_reads_the_current_version(client: httpx.Client) -> None:
    put(client, patient(id="c"), 201)
    put(client, patient(id="c", active=True))
    r = client.get("/Patient/c", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 200
    assert r.json()["active"] is True


def test_if_modified_since_last_modified_is_304_and_earlier_is_200(client: httpx.Client) -> None:
    put(client, patient(id="c"), 201)
    modified = client.get("/Patient/c").headers["last-modified"]
    r = client.get("/Patient/c", headers={"If-Modified-Since": modified})
    assert r.status_code == 304 and r.content == b""
    earlier = format_datetime(parsedate_to_datetime(modified) - timedelta(seconds=1), usegmt=True)
    r = client.get("/Patient/c", headers={"If-Modified-Since": earlier})
    assert r.status_code == 200
    assert r.json()["id"] == "c"


# -- Prefer: return ---------------------------------------------------------------------------
def test_prefer_return_minimal_gives_an_empty_body_with_the_headers(client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["etag"] == 'W/"1"'
    assert client.get(r.headers["location"]).status_code == 200
    r = client.put("/Patient/m", json=patient(id="m"), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b""


def test_prefer_return_representation_gives_the_resource(client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient(active=True), headers={"Prefer": "return=representation"})
    assert r.status_code == 201
    assert r.json()["resourceType"] == "Patient" and r.json()["active"] is True


def test_prefer_return_operation_outcome_gives_an_outcome(client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert r.status_code == 201
    assert r.headers["etag"] == 'W/"1"'
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "information"
    rid = r.headers["location"].split("/")[-3]
    assert rid in body["issue"][0]["diagnostics"]
    assert client.get(f"/Patient/{rid}").status_code == 200
