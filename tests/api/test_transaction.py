"""Transaction and batch Bundles posted to the base URL (http://hl7.org/fhir/R4/http.html#transaction).

A transaction is atomic: one failing entry fails it all (with the entry's location in the
outcome) and nothing is written, which every failure test checks by reading afterwards. A
batch runs each entry on its own."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import base, create, history, nothing_written, outcome, patient, put, search

P1 = "urn:uuid:5a1c4e1e-0000-4000-8000-000000000001"
P2 = "urn:uuid:5a1c4e1e-0000-4000-8000-000000000002"
SYS = "urn:example:mrn"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource,
                         "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def put_entry(resource: dict[str, Any], url: str | None = None, **request: Any) -> dict[str, Any]:
    return {"resource": resource, "request": {
        "method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}", **request}}


def req(method: str, url: str) -> dict[str, Any]:
    return {"request": {"method": method, "url": url}}


def observation(subject: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
            "subject": {"reference": subject}, **fields}


def mrn(value: str, **fields: Any) -> dict[str, Any]:
    return patient(identifier=[{"system": SYS, "value": value}], **fields)


def send(client: httpx.Client, doc: dict[str, Any], **kw: Any) -> httpx.Response:
    return client.post(base(client), json=doc, **kw)


def response_entries(r: httpx.Response, kind: str) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == f"{kind}-response"
    return body["entry"]  # type: ignore[no-any-return]


# -- success ------------------------------------------------------------------------------------------
def test_transaction_creates_every_entry_and_answers_in_entry_order(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(mrn("T1"), P1), post(observation(P1)),
                            put_entry(patient(id="fixed", active=True))))
    entries = response_entries(r, "transaction")
    assert [e["response"]["status"] for e in entries] == ["201 Created"] * 3
    pid = entries[0]["resource"]["id"]
    assert entries[0]["fullUrl"] == f"{base(client)}/Patient/{pid}"
    assert entries[0]["response"]["location"] == f"Patient/{pid}/_history/1"
    assert entries[0]["response"]["etag"] == 'W/"1"'
    assert entries[2]["resource"]["id"] == "fixed"
    assert client.get(f"/Patient/{pid}").json() == entries[0]["resource"]
    assert client.get("/Patient/fixed").json()["active"] is True


def test_urn_uuid_references_are_rewritten_to_the_new_ids(client: httpx.Client) -> None:
    r = send(client, bundle("transaction",
                            post(observation(P1), None),  # refers forward to an entry below
                            post(mrn("T1", link=[{"other": {"reference": P2}, "type": "seealso"}]), P1),
                            post(mrn("T2"), P2)))
    entries = response_entries(r, "transaction")
    obs, p1, p2 = (e["resource"] for e in entries)
    assert obs["subject"] == {"reference": f"Patient/{p1['id']}"}
    assert p1["link"][0]["other"] == {"reference": f"Patient/{p2['id']}"}
    stored = client.get(f"/Observation/{obs['id']}").json()
    assert stored["subject"]["reference"] == f"Patient/{p1['id']}"
    assert [o["id"] for o in search(client, f"Observation?subject=Patient/{p1['id']}")] == [obs["id"]]


def test_conditional_references_are_resolved_to_the_one_match(client: httpx.Client) -> None:
    existing = create(client, mrn("C1"))
    r = send(client, bundle("transaction", post(observation(f"Patient?identifier={SYS}|C1"))))
    [entry] = response_entries(r, "transaction")
    assert entry["resource"]["subject"] == {"reference": f"Patient/{existing['id']}"}


def test_conditional_reference_without_a_match_fails_the_transaction(client: httpx.Client) -> None:
    create(client, mrn("C1"))
    r = send(client, bundle("transaction", post(mrn("C2")),
                            post(observation(f"Patient?identifier={SYS}|nobody"))))
    outcome(r, 400, "invalid", "Bundle.entry[1].resource.subject.reference")
    assert search(client, f"Patient?identifier={SYS}|C2") == []


def test_if_none_exist_in_a_transaction_reuses_the_existing_resource(client: httpx.Client) -> None:
    existing = create(client, mrn("E1"))
    r = send(client, bundle("transaction",
                            post(mrn("E1", active=True), P1, ifNoneExist=f"identifier={SYS}|E1"),
                            post(observation(P1))))
    first, obs = response_entries(r, "transaction")
    assert first["response"]["status"] == "200 OK"
    assert first["resource"] == existing
    assert obs["resource"]["subject"] == {"reference": f"Patient/{existing['id']}"}
    assert len(search(client, "Patient")) == 1


def test_if_none_exist_in_a_transaction_creates_when_nothing_matches(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(mrn("E2"), P1, ifNoneExist=f"identifier={SYS}|E2")))
    [entry] = response_entries(r, "transaction")
    assert entry["response"]["status"] == "201 Created"
    assert len(search(client, f"Patient?identifier={SYS}|E2")) == 1


def test_entries_run_delete_then_post_then_put_then_get(client: httpx.Client) -> None:
    put(client, patient(id="old", name=[{"family": "Order"}]), 201)
    r = send(client, bundle("transaction",
                            req("GET", "Patient?family=Order"),
                            put_entry(patient(id="new-put", name=[{"family": "Order"}])),
                            post(patient(name=[{"family": "Order"}])),
                            req("DELETE", "Patient/old")))
    got, put_, posted, deleted = response_entries(r, "transaction")
    assert deleted["response"]["status"] == "204 No Content"
    assert posted["response"]["status"] == "201 Created"
    assert put_["response"]["status"] == "201 Created"
    assert got["response"]["status"] == "200 OK"
    seen = {e["resource"]["id"] for e in got["resource"].get("entry", [])}
    assert seen == {"new-put", posted["resource"]["id"]}
    assert client.get("/Patient/old").status_code == 410


def test_a_get_entry_reads_and_vreads_what_the_transaction_wrote(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", req("GET", "Patient/g"), req("GET", "Patient/g/_history/1"),
                            put_entry(patient(id="g", active=True))))
    read, vread, written = response_entries(r, "transaction")
    assert read["resource"] == written["resource"] == vread["resource"]


def test_transaction_in_xml(client: httpx.Client) -> None:
    xml = ('<Bundle xmlns="http://hl7.org/fhir"><type value="transaction"/>'
           f'<entry><fullUrl value="{P1}"/><resource><Patient><active value="true"/></Patient></resource>'
           '<request><method value="POST"/><url value="Patient"/></request></entry>'
           '<entry><resource><Observation><status value="final"/><code><text value="pulse"/></code>'
           f'<subject><reference value="{P1}"/></subject></Observation></resource>'
           '<request><method value="POST"/><url value="Observation"/></request></entry></Bundle>')
    r = client.post(base(client), content=xml, headers={"Content-Type": "application/fhir+xml",
                                                        "Accept": "application/fhir+xml"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+xml")
    assert '<type value="transaction-response"/>' in r.text
    [obs] = search(client, "Observation")
    [pat] = search(client, "Patient")
    assert obs["subject"]["reference"] == f"Patient/{pat['id']}"


def test_prefer_return_minimal_leaves_resources_out_of_the_response(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(patient())), headers={"Prefer": "return=minimal"})
    [entry] = response_entries(r, "transaction")
    assert "resource" not in entry
    assert entry["response"]["status"] == "201 Created"
    assert client.get(entry["response"]["location"].rsplit("/_history", 1)[0]).status_code == 200


# -- atomicity -------------------------------------------------------------------------------------------
def test_one_invalid_entry_fails_the_transaction_naming_it_and_writes_nothing(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(mrn("A1"), P1), post(observation(P1)),
                            post(patient(foo=1))))
    issue = outcome(r, 400, "structure", "Bundle.entry[2].resource.foo")
    assert issue["diagnostics"].startswith("Bundle.entry[2]")
    nothing_written(client)
    assert search(client, f"Patient?identifier={SYS}|A1") == []


def test_an_entry_failing_validation_rules_is_422_and_writes_nothing(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(mrn("A1")),
                            post({"resourceType": "Observation", "status": "final"})))
    outcome(r, 422, "required", "Bundle.entry[1].resource.code")
    nothing_written(client)


def test_a_late_failure_rolls_back_earlier_deletes_and_updates(client: httpx.Client) -> None:
    keep = put(client, patient(id="keep", active=True), 201)
    other = put(client, patient(id="other"), 201)
    r = send(client, bundle("transaction", req("DELETE", "Patient/keep"),
                            put_entry(patient(id="other", active=False)),
                            put_entry(patient(id="stale", active=True), ifMatch='W/"3"')))
    outcome(r, 412, "conflict")
    assert client.get("/Patient/keep").json() == keep
    assert client.get("/Patient/other").json() == other
    assert client.get("/Patient/stale").status_code == 404
    assert len(history(client)) == 2


@pytest.mark.parametrize("ref", [P2, "Patient/does-not-exist"])
def test_a_broken_reference_is_400_with_the_entry_location_and_writes_nothing(
        client: httpx.Client, ref: str) -> None:
    r = send(client, bundle("transaction", post(mrn("A1"), P1), post(observation(ref))))
    issue = outcome(r, 400, "not-found", "Bundle.entry[1].resource.subject.reference")
    assert ref in issue["diagnostics"]
    nothing_written(client)


def test_a_reference_to_a_resource_deleted_in_the_same_transaction_is_broken(client: httpx.Client) -> None:
    put(client, patient(id="doomed"), 201)
    r = send(client, bundle("transaction", req("DELETE", "Patient/doomed"),
                            post(observation("Patient/doomed"))))
    outcome(r, 400, "not-found", "Bundle.entry[1].resource.subject.reference")
    assert client.get("/Patient/doomed").status_code == 200


def test_a_conditional_create_with_several_matches_fails_the_transaction(client: httpx.Client) -> None:
    create(client, mrn("D"))
    create(client, mrn("D"))
    r = send(client, bundle("transaction", post(patient(active=True)),
                            post(mrn("D"), ifNoneExist=f"identifier={SYS}|D")))
    outcome(r, 412, "conflict", "Bundle.entry[1]")
    assert len(history(client)) == 2


def test_a_get_entry_of_a_missing_resource_fails_the_transaction(client: httpx.Client) -> None:
    r = send(client, bundle("transaction", post(patient()), req("GET", "Patient/missing")))
    outcome(r, 404, "not-found", "Bundle.entry[1]")
    nothing_written(client)


def test_overlapping_identities_in_one_transaction_fail_it(client: httpx.Client) -> None:
    put(client, patient(id="twice"), 201)
    r = send(client, bundle("transaction", req("DELETE", "Patient/twice"),
                            put_entry(patient(id="twice", active=True))))
    outcome(r, 400)
    assert client.get("/Patient/twice").headers["etag"] == 'W/"1"'




@pytest.mark.parametrize("doc, expression", [
    (patient(), "Bundle.type"),
    (bundle("collection"), "Bundle.type"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": {"a": 1}}, "Bundle.entry"),
    (bundle("transaction", {"resource": patient()}), "Bundle.entry[0].request"),
    (bundle("transaction", {"resource": patient(), "request": {"method": "FETCH", "url": "Patient"}}),
     "Bundle.entry[0].request.method"),
    (bundle("transaction", req("POST", "Patient")), "Bundle.entry[0].resource"),
    pytest.param(bundle("transaction", post(patient()), put_entry(patient(id="a"), url="Patient/b")),
                 "Bundle.entry[1].resource.id"),
    pytest.param(bundle("transaction", post(patient()), put_entry(patient(), url="Patient")),
                 "Bundle.entry[1].request.url"),
    pytest.param(bundle("transaction", post(patient()), req("DELETE", "Patient")),
                 "Bundle.entry[1].request.url"),
], ids=["not-a-bundle", "collection", "entry-not-array", "no-request", "unknown-method",
        "post-without-resource", "put-id-mismatch", "put-without-id", "delete-without-id"])
def test_malformed_bundles_are_400_pointing_at_the_fault_and_write_nothing(
        client: httpx.Client, doc: dict[str, Any], expression: str) -> None:
    outcome(send(client, doc), 400, expression=expression)
    nothing_written(client)


def test_an_entry_of_an_unknown_type_is_404_and_writes_nothing(client: httpx.Client) -> None:
    alien = {"resource": {"resourceType": "Spaceship"}, "request": {"method": "POST", "url": "Spaceship"}}
    r = send(client, bundle("transaction", post(patient()), alien))
    outcome(r, 404, "not-found", "Bundle.entry[1]")
    nothing_written(client)


# -- batch ---------------------------------------------------------------------------------------------------
def test_batch_runs_each_entry_on_its_own(client: httpx.Client) -> None:
    put(client, patient(id="gone"), 201)
    r = send(client, bundle("batch", post(mrn("B1")), post(patient(foo=1)), req("GET", "Patient/missing"),
                            post(observation("Patient/does-not-exist")), req("DELETE", "Patient/gone"),
                            put_entry(patient(id="b2", active=True))))
    ok, invalid, missing, broken, deleted, updated = response_entries(r, "batch")
    assert ok["response"]["status"] == "201 Created"
    assert invalid["response"]["status"].startswith("400")
    assert invalid["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.foo"]
    assert missing["response"]["status"].startswith("404")
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert broken["response"]["status"].startswith("400")
    assert broken["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert deleted["response"]["status"] == "204 No Content"
    assert updated["response"]["status"] == "201 Created"
    for failed in (invalid, missing, broken):
        assert "resource" not in failed
    assert len(search(client, f"Patient?identifier={SYS}|B1")) == 1
    assert client.get("/Patient/b2").json()["active"] is True
    assert client.get("/Patient/gone").status_code == 410
    assert search(client, "Observation") == []


def test_batch_entries_do_not_see_each_others_urn_uuids(client: httpx.Client) -> None:
    r = send(client, bundle("batch", post(patient(), P1), post(observation(P1))))
    created, broken = response_entries(r, "batch")
    assert created["response"]["status"] == "201 Created"
    assert broken["response"]["status"].startswith("400")
    assert search(client, "Observation") == []
