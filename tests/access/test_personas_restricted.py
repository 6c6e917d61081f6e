"""Persona tests of a restricted (S-flagged) patient (issue 4): where they live, how to reach
them and who their GP is must not reach a member of staff who sees them only through
break-glass, by any path: their household's RelatedPerson, an Encounter's locations and
service provider, a clinician's role, ``_include`` and ``_revinclude``, narratives, search
parameters, chains and ``_has`` over those fields, older versions, ``$everything``. Their own
care organisations and the system client see everything. Over real HTTP against the demo."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import Engine

from carerecord.access.audit_store import AuditStore
from tests.access.personas import CONF, GP, PARAMEDIC, entries, new_id, observation, pid, put, refs

P = pid(6)
HOUSEHOLD_PHONE, OWN_PHONE = "07700 900456", "07700 900123"


def div(text: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{text}</div>'}


@pytest.fixture(scope="module")
def hidden(demo: httpx.Client) -> dict[str, Any]:
    """Person 6, S-flagged, with a household RelatedPerson, a home visit Encounter at a home
    Location, and an Observation by their GP; the secrets a redacted view must not show."""
    patient = demo.get(f"/Patient/{P}").json()
    address = patient["address"][0]
    gp = patient["generalPractitioner"][0]["reference"]
    [role] = entries(demo.get("/PractitionerRole", params={"organization": gp, "_count": "1"}))
    patient["telecom"] = [{"system": "phone", "value": OWN_PHONE, "use": "mobile"}]
    first = put(demo, patient)  # an older version, before the flag
    patient["meta"] = {"security": [{"system": CONF, "code": "R"}]}
    patient["text"] = div(f"Lives at {address['line'][0]}")
    put(demo, patient)
    home = put(demo, {"resourceType": "Location", "id": new_id("home"), "name": "Home", "address": address,
                      "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "PTRES"}]}]})
    household = put(demo, {"resourceType": "RelatedPerson", "id": new_id("household"), "active": True,
                           "patient": {"reference": f"Patient/{P}"}, "name": [{"family": "Household"}],
                           "address": [address], "telecom": [{"system": "phone", "value": HOUSEHOLD_PHONE}],
                           "text": div(f"Partner, at {address['postalCode']}")})
    visit = put(demo, {"resourceType": "Encounter", "id": new_id("visit"), "status": "finished",
                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
                       "subject": {"reference": f"Patient/{P}"}, "serviceProvider": {"reference": gp},
                       "location": [{"location": {"reference": f"Location/{home['id']}"}}],
                       "text": div(f"Home visit at {address['line'][0]}")})
    seen = put(demo, observation(P, performer=[{"reference": f"PractitionerRole/{role['id']}"}],
                                 encounter={"reference": f"Encounter/{visit['id']}"},
                                 text=div(f"Seen at {address['postalCode']}")))
    return {"line": address["line"][0], "postcode": address["postalCode"], "city": address["city"], "gp": gp,
            "role": f"PractitionerRole/{role['id']}", "home": f"Location/{home['id']}",
            "household": household["id"], "visit": visit["id"], "obs": seen["id"], "first": first["meta"]["versionId"]}


@pytest.fixture
def glass(demo: httpx.Client, as_: Any, hidden: dict[str, Any]) -> dict[str, str]:
    """The paramedic's headers, after breaking the glass for person 6."""
    h: dict[str, str] = as_(PARAMEDIC)
    r = demo.post(f"/Patient/{P}/$break-glass", headers=h, json={"resourceType": "Parameters", "parameter": [
        {"name": "reason", "valueCode": "emergency-care"}, {"name": "text", "valueString": "Collapsed in the street"}]})
    assert r.status_code == 200, r.text
    return h


def secrets(hidden: dict[str, Any]) -> list[str]:
    return [hidden["line"], hidden["postcode"], OWN_PHONE, HOUSEHOLD_PHONE, hidden["gp"], hidden["role"], hidden["home"]]


def assert_redacted(r: httpx.Response, hidden: dict[str, Any]) -> None:
    assert r.status_code == 200, r.text
    for secret in secrets(hidden):
        assert secret not in r.text, (secret, r.request.url)


def test_the_household_relatedperson_shows_no_address_or_phone(demo: httpx.Client, glass: dict[str, str],
                                                               hidden: dict[str, Any]) -> None:
    paths = [demo.get(f"/RelatedPerson/{hidden['household']}", headers=glass),
             demo.get("/RelatedPerson", params={"patient": P}, headers=glass),
             demo.get("/Patient", params={"_id": P, "_revinclude": "RelatedPerson:patient"}, headers=glass)]
    for r in paths:
        assert_redacted(r, hidden)
        assert hidden["household"] in r.text and "REDACTED" in r.text
    assert HOUSEHOLD_PHONE in demo.get(f"/RelatedPerson/{hidden['household']}").text  # the system client sees it


def test_encounters_and_observations_show_no_location_provider_carer_or_narrative(
        demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any]) -> None:
    visit = demo.get(f"/Encounter/{hidden['visit']}", headers=glass)
    assert_redacted(visit, hidden)
    assert visit.json()["location"][0]["location"]["extension"][0]["valueCode"] == "masked"
    assert_redacted(demo.get(f"/Observation/{hidden['obs']}", headers=glass), hidden)
    for include in ("Encounter:location", "Encounter:service-provider", "Encounter:participant", "*"):
        r = demo.get("/Encounter", params={"_id": hidden["visit"], "_include": include}, headers=glass)
        assert_redacted(r, hidden)
        assert {x["resourceType"] for x in entries(r)} <= {"Encounter", "Patient"}  # the subject, redacted
    r = demo.get("/Observation", params={"_id": hidden["obs"], "_include": "Observation:performer",
                                         "_include:iterate": "PractitionerRole:organization"}, headers=glass)
    assert_redacted(r, hidden)
    assert refs(entries(r, "include")) == set()
    # the Encounter, referred to from the redacted Observation, is still followed
    r = demo.get("/Observation", params={"_id": hidden["obs"], "_include": "Observation:encounter"}, headers=glass)
    assert refs(entries(r, "include")) == {f"Encounter/{hidden['visit']}"}
    assert hidden["home"] in demo.get(f"/Encounter/{hidden['visit']}").text


def test_the_gp_is_not_followed_from_the_patient(demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any]) -> None:
    for include in ("Patient:general-practitioner", "Patient:organization", "*"):
        r = demo.get("/Patient", params={"_id": P, "_include": include}, headers=glass)
        assert_redacted(r, hidden)
        assert refs(entries(r)) == {f"Patient/{P}"}
    gp = demo.get("/Patient", params={"_id": P, "_include": "Patient:general-practitioner"})
    assert hidden["gp"] in refs(entries(gp, "include"))


def test_searches_on_hidden_fields_do_not_find_the_patient(demo: httpx.Client, glass: dict[str, str],
                                                          hidden: dict[str, Any]) -> None:
    searches: list[tuple[str, dict[str, str]]] = [
        ("/Patient", {"_id": P, "address-postalcode": hidden["postcode"]}),
        ("/Patient", {"_id": P, "address": hidden["line"]}),
        ("/Patient", {"_id": P, "phone": OWN_PHONE}),
        ("/Patient", {"_id": P, "general-practitioner": hidden["gp"]}),
        ("/Patient", {"_id": P, "_sort": "address-city"}),
        ("/RelatedPerson", {"patient": P, "phone": HOUSEHOLD_PHONE}),
        ("/Encounter", {"patient": P, "location": hidden["home"]}),
        ("/Encounter", {"patient": P, "service-provider": hidden["gp"]}),
        ("/Encounter", {"patient": P, "location.address-postalcode": hidden["postcode"]}),
        ("/Observation", {"subject": f"Patient/{P}", "performer": hidden["role"]}),
        ("/Observation", {"subject:Patient.address-postalcode": hidden["postcode"]}),
        ("/Observation", {"subject:Patient.general-practitioner": hidden["gp"]}),
        ("/Observation", {"subject": f"Patient/{P}", "_text": hidden["postcode"]}),
        ("/Patient", {"_id": P, "_has:RelatedPerson:patient:phone": HOUSEHOLD_PHONE}),
        ("/Patient", {"_id": P, "_has:Encounter:patient:location": hidden["home"]}),
        ("/Organization", {"_id": hidden["gp"].split("/")[1], "_has:Patient:general-practitioner:_id": P}),
        ("/Location", {"_id": hidden["home"].split("/")[1], "_has:Encounter:location:patient": P}),
    ]
    for path, params in searches:
        assert entries(demo.get(path, params=params)), (path, params)  # the search itself is right
        assert entries(demo.get(path, params=params, headers=glass)) == [], (path, params)
    for key, param in ((hidden["gp"], "Patient:general-practitioner"), (hidden["home"], "Encounter:location")):
        kind, rid = key.split("/")
        r = demo.get(f"/{kind}", params={"_id": rid, "_revinclude": param}, headers=glass)
        assert [x["resourceType"] for x in entries(r)] == [kind]
        assert len(entries(demo.get(f"/{kind}", params={"_id": rid, "_revinclude": param}))) > 1


def test_older_versions_are_redacted_too(demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any]) -> None:
    old = demo.get(f"/Patient/{P}/_history/{hidden['first']}", headers=glass)
    assert_redacted(old, hidden)
    assert_redacted(demo.get(f"/Patient/{P}/_history", headers=glass), hidden)
    assert OWN_PHONE in demo.get(f"/Patient/{P}/_history/{hidden['first']}").text


def test_everything_is_redacted(demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any]) -> None:
    r = demo.get(f"/Patient/{P}/$everything", params={"_count": "1000"}, headers=glass)
    assert_redacted(r, hidden)
    got = refs(entries(r))
    assert {f"Encounter/{hidden['visit']}", f"Observation/{hidden['obs']}", f"RelatedPerson/{hidden['household']}"} <= got
    assert not {x for x in got if x.split("/")[0] in ("Location", "Organization", "PractitionerRole")} - {
        "Organization/demo-org-ambulance"}
    full = demo.get(f"/Patient/{P}/$everything", params={"_count": "1000"})
    assert hidden["gp"] in refs(entries(full)) and hidden["home"] in refs(entries(full))


def test_a_bundle_get_is_redacted(demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any]) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"RelatedPerson/{hidden['household']}"}},
        {"request": {"method": "GET", "url": f"Encounter?patient={P}&_include=Encounter:location"}}]}
    assert_redacted(demo.post("", json=batch, headers=glass), hidden)


def test_a_redacted_copy_put_back_after_break_glass_is_refused_and_the_record_keeps_everything(
        demo: httpx.Client, glass: dict[str, str], hidden: dict[str, Any], as_: Any, engine: Engine) -> None:
    """Hazard H054. The paramedic who broke the glass reads the home visit and the Patient
    (redacted, labelled REDACTED) and writes them back (a status corrected, a note added). Taken,
    the copy would replace the record: the visit's home location, the practice that made it and
    its narrative, the patient's address, phone and GP, gone for their own care too. Refused with
    422 at the tag, audited as a failed write, and the patient's GP still reads it all."""
    gp = as_(GP)
    visit_path, patient_path = f"/Encounter/{hidden['visit']}", f"/Patient/{P}"
    before = {path: demo.get(path, headers=gp).json() for path in (visit_path, patient_path)}
    audit = AuditStore(engine)
    start = audit.position()
    for path, change in ((visit_path, {"status": "finished"}), (patient_path, {"active": False})):
        copy = demo.get(path, headers=glass).json()
        labels = copy["meta"]["security"]
        assert labels[-1]["code"] == "REDACTED" and "address" not in copy
        r = demo.put(path, json={**copy, **change}, headers=glass)
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "business-rule"
        assert issue["expression"] == [f"{copy['resourceType']}.meta.security[{len(labels) - 1}]"]
        assert "a subsetted (redacted or summary) copy cannot be written back" in issue["diagnostics"]
    for path, full in before.items():
        assert demo.get(path, headers=gp).json() == full  # the same version: nothing lost
    visit, patient = before[visit_path], before[patient_path]
    assert visit["location"][0]["location"]["reference"] == hidden["home"]
    assert visit["serviceProvider"]["reference"] == hidden["gp"] and hidden["line"] in visit["text"]["div"]
    assert patient["address"][0]["line"][0] == hidden["line"] and OWN_PHONE in str(patient["telecom"])
    assert patient["generalPractitioner"][0]["reference"] == hidden["gp"]
    puts = [(e.patient, orjson.loads(e.content)) for e in audit.since(start)]
    puts = [(who, r) for who, r in puts if r.get("m") == "PUT"]
    assert {(r["p"], r["s"], r["o"]) for _, r in puts} == {(visit_path, 422, "error"), (patient_path, 422, "error")}
    assert P in {who for who, _ in puts}  # the refused write of their record is in the patient's log
