"""A SUBSETTED copy is never written back (hazard H054; http://hl7.org/fhir/R4/search.html#summary).

What a ``_summary``/``_elements`` read returns, and what the guard shows of a restricted patient
to someone who broke the glass (tests/access/test_personas_restricted.py), is tagged SUBSETTED.
Written back it would replace the whole resource with the part that was shown. Every write path
refuses it with 422 (issue ``business-rule`` at the tag) and writes nothing: create, update,
update-as-create, conditional update, both kinds of patch, transaction (all rolled back) and
batch entries (that entry alone), and contained resources carrying the tag."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import orjson

from tests.api.conftest import history, nothing_written, outcome, patient, put, search
from tests.api.test_patch import JSON_PATCH, fhirpath_op, parameters

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
ADDRESS = [{"line": ["1 Hidden Lane"], "postalCode": "LS1 4AP"}]
WORDS = "a subsetted (redacted or summary) copy cannot be written back"


def tagged(resource: dict[str, Any], *others: dict[str, str]) -> dict[str, Any]:
    return {**resource, "meta": {"tag": [*others, SUBSETTED]}}


def refused(r: httpx.Response, expression: str) -> None:
    issue = outcome(r, 422, "business-rule", expression)
    assert WORDS in issue["diagnostics"]


def stored(client: httpx.Client, res_id: str = "p") -> dict[str, Any]:
    """A full Patient with an address, the record a subsetted copy must not overwrite."""
    return put(client, patient(id=res_id, active=True, name=[{"family": "Full"}], address=ADDRESS), 201)


def unchanged(client: httpx.Client, before: dict[str, Any]) -> None:
    assert client.get(f"/Patient/{before['id']}").json() == before
    assert len(history(client, f"/Patient/{before['id']}/_history")) == int(before["meta"]["versionId"])


def test_a_summary_copy_put_back_is_422_and_the_full_resource_stays(client: httpx.Client) -> None:
    before = stored(client)
    copy = client.get("/Patient/p", params={"_summary": "true"}).json()
    assert SUBSETTED["code"] in str(copy["meta"]["tag"])
    copy["active"] = False
    refused(client.put("/Patient/p", json=copy), "Patient.meta.tag[0]")
    unchanged(client, before)
    elements = client.get("/Patient/p", params={"_elements": "name"}).json()  # no address in it
    refused(client.put("/Patient/p", json=elements), "Patient.meta.tag[0]")
    unchanged(client, before)


def test_the_tag_is_found_among_others_and_in_xml(client: httpx.Client) -> None:
    before = stored(client)
    other = {"system": "urn:example:tags", "code": "keep"}
    refused(client.put("/Patient/p", json=tagged(before, other)), "Patient.meta.tag[1]")
    xml = (f'<Patient xmlns="http://hl7.org/fhir"><id value="p"/><meta><tag><system value="{SUBSETTED["system"]}"/>'
           '<code value="SUBSETTED"/></tag></meta><active value="false"/></Patient>')
    refused(client.put("/Patient/p", content=xml, headers={"Content-Type": "application/fhir+xml"}),
            "Patient.meta.tag[0]")
    unchanged(client, before)
    # the same code in another system is not the tag
    assert client.put("/Patient/p", json={**before, "meta": {"tag": [{"system": "urn:x", "code": "SUBSETTED"}]}}
                      ).status_code == 200


def test_create_update_as_create_and_conditional_update_refuse_it(client: httpx.Client) -> None:
    body = tagged(patient(name=[{"family": "Copy"}]))
    refused(client.post("/Patient", json=body), "Patient.meta.tag[0]")
    refused(client.post("/Patient", json=body, headers={"If-None-Exist": "family=Copy"}), "Patient.meta.tag[0]")
    refused(client.put("/Patient/new", json={**body, "id": "new"}), "Patient.meta.tag[0]")  # update as create
    refused(client.put("/Patient", params={"family": "Copy"}, json=body), "Patient.meta.tag[0]")
    nothing_written(client)
    before = stored(client)
    refused(client.put("/Patient", params={"family": "Full"}, json=tagged(before)), "Patient.meta.tag[0]")
    unchanged(client, before)


def test_a_contained_resource_carrying_the_tag_is_refused(client: httpx.Client) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "Note"},
           "performer": [{"reference": "#who"}],
           "contained": [{"resourceType": "Practitioner", "id": "who", "name": [{"family": "Ok"}]},
                         tagged({"resourceType": "Practitioner", "id": "cut"})]}
    refused(client.post("/Observation", json=obs), "Observation.contained[1].meta.tag[0]")
    nothing_written(client)


def test_a_patch_that_adds_the_tag_is_refused(client: httpx.Client) -> None:
    before = stored(client)
    add = orjson.dumps([{"op": "add", "path": "/meta/tag", "value": [SUBSETTED]},
                        {"op": "remove", "path": "/address"}])
    refused(client.patch("/Patient/p", content=add, headers=JSON_PATCH), "Patient.meta.tag[0]")
    fhirpath = parameters(fhirpath_op("add", "Patient.meta", name={"valueString": "tag"},
                                      value={"valueCoding": SUBSETTED}))
    refused(client.patch("/Patient/p", json=fhirpath), "Patient.meta.tag[0]")
    refused(client.patch("/Patient", params={"family": "Full"}, json=fhirpath), "Patient.meta.tag[0]")
    unchanged(client, before)
    r = client.patch("/Patient/p", content=b'[{"op": "replace", "path": "/active", "value": false}]',
                     headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["address"] == ADDRESS  # a patch of the full resource is fine


def test_a_transaction_with_a_subsetted_entry_is_rolled_back_whole(client: httpx.Client) -> None:
    before = stored(client)
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/meta/tag", "value": [SUBSETTED]}])).decode()
    for entry in ({"resource": tagged(before), "request": {"method": "PUT", "url": "Patient/p"}},
                  {"resource": tagged(patient(name=[{"family": "Copy"}])), "request": {"method": "POST", "url": "Patient"}},
                  {"resource": tagged(patient(name=[{"family": "Copy"}])),
                   "request": {"method": "PUT", "url": "Patient?family=Copy"}},
                  {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
                   "request": {"method": "PATCH", "url": "Patient/p"}}):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": patient(name=[{"family": "Other"}]), "request": {"method": "POST", "url": "Patient"}},
            entry]}
        refused(client.post("", json=bundle), "Bundle.entry[1].resource.meta.tag[0]")
        unchanged(client, before)
        assert search(client, "Patient?family=Other") == []


def test_a_batch_fails_the_subsetted_entry_alone(client: httpx.Client) -> None:
    before = stored(client)
    r = client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient(name=[{"family": "Other"}]), "request": {"method": "POST", "url": "Patient"}},
        {"resource": tagged(before), "request": {"method": "PUT", "url": "Patient/p"}}]})
    assert r.status_code == 200, r.text
    first, second = r.json()["entry"]
    assert first["response"]["status"].startswith("201")
    assert second["response"]["status"].startswith("422")
    issue = second["response"]["outcome"]["issue"][0]
    assert issue["code"] == "business-rule" and WORDS in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[1].resource.meta.tag[0]"]
    unchanged(client, before)
    assert len(search(client, "Patient?family=Other")) == 1


def test_validate_reports_what_a_write_would_refuse(client: httpx.Client) -> None:
    r = client.post("/Patient/$validate", json=tagged(patient(active=True)))
    assert r.status_code == 200
    issue = r.json()["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == "business-rule"
    assert issue["expression"] == ["Patient.meta.tag[0]"]
