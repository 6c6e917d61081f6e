"""Persona tests of search criteria (issue 4): the inner clause of a chain or a ``_has`` sees
only what the caller may see, so a search cannot reveal that a resource they may not read
exists (a sensitive-labelled Condition at another organisation, another patient's record, a
type their role may not read, a category the patient's consent withholds), even through a
resource they may see. Over real HTTP against the demo community."""

from __future__ import annotations

from typing import Any

import httpx

from tests.access.personas import (
    ACT,
    GP,
    PARAMEDIC,
    PATIENT,
    RECEPTIONIST,
    deny_to,
    entries,
    new_id,
    observation,
    open_encounter,
    pid,
    privacy_consent,
    put,
    refs,
)

SCT = "http://snomed.info/sct"
GONORRHOEA = "15628003"  # a sexual health diagnosis: labelled SEX


def condition(patient: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": new_id("cond"), "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": SCT, "code": code}]},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]}, **extra}


def sensitive(patient: str) -> dict[str, Any]:
    """A SEX-labelled Condition written by the first GP practice."""
    return condition(patient, GONORRHOEA, meta={"source": "https://gp.example/Organization/demo-org-gp0",
                                                "security": [{"system": ACT, "code": "SEX"}]})


def test_has_does_not_reveal_a_sensitive_condition_outside_its_organisation(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(4), "demo-org-ambulance")
    put(demo, sensitive(pid(4)))
    query = {"_has:Condition:subject:code": f"{SCT}|{GONORRHOEA}", "_id": pid(4)}
    assert refs(entries(demo.get("/Patient", params=query, headers=as_(GP)))) == {f"Patient/{pid(4)}"}
    assert entries(demo.get("/Patient", params=query, headers=as_(PARAMEDIC))) == []
    assert demo.get(f"/Patient/{pid(4)}", headers=as_(PARAMEDIC)).status_code == 200  # they do see the patient


def test_a_chain_does_not_reveal_a_sensitive_condition_outside_its_organisation(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(5), "demo-org-ambulance")
    reason = put(demo, sensitive(pid(5)))
    visit = put(demo, {"resourceType": "Encounter", "id": new_id("enc"), "status": "in-progress",
                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                       "subject": {"reference": f"Patient/{pid(5)}"},
                       "serviceProvider": {"reference": "Organization/demo-org-ambulance"},
                       "reasonReference": [{"reference": f"Condition/{reason['id']}"}]})
    query = {"patient": pid(5), "reason-reference:Condition.code": f"{SCT}|{GONORRHOEA}"}
    assert refs(entries(demo.get("/Encounter", params=query, headers=as_(GP)))) == {f"Encounter/{visit['id']}"}
    assert entries(demo.get("/Encounter", params=query, headers=as_(PARAMEDIC))) == []
    assert demo.get(f"/Encounter/{visit['id']}", headers=as_(PARAMEDIC)).status_code == 200


def test_a_chain_does_not_reach_into_another_patients_record(demo: httpx.Client, as_: Any) -> None:
    theirs = put(demo, condition(pid(2), "73211009"))  # person 2's diabetes
    mine = put(demo, observation(pid(0), focus=[{"reference": f"Condition/{theirs['id']}"}]))
    query = {"subject": f"Patient/{pid(0)}", "focus:Condition.code": f"{SCT}|73211009"}
    assert refs(entries(demo.get("/Observation", params=query))) == {f"Observation/{mine['id']}"}
    assert entries(demo.get("/Observation", params=query, headers=as_(PATIENT))) == []
    assert demo.get(f"/Observation/{mine['id']}", headers=as_(PATIENT)).status_code == 200


def test_has_does_not_look_at_types_the_role_may_not_read(demo: httpx.Client, as_: Any) -> None:
    [diagnosis] = entries(demo.get("/Condition", params={"subject": f"Patient/{pid(0)}", "_count": "1"}))
    code = diagnosis["code"]["coding"][0]
    query = {"_id": pid(0), "_has:Condition:subject:code": f"{code['system']}|{code['code']}"}
    assert refs(entries(demo.get("/Patient", params=query, headers=as_(GP)))) == {f"Patient/{pid(0)}"}
    assert entries(demo.get("/Patient", params=query, headers=as_(RECEPTIONIST))) == []


def test_has_respects_consent_withholding_a_category(demo: httpx.Client, as_: Any) -> None:
    open_encounter(demo, pid(7), "demo-org-ambulance")
    put(demo, condition(pid(7), "38341003"))  # hypertension, no label
    query = {"_id": pid(7), "_has:Condition:subject:code": f"{SCT}|38341003"}
    h = as_(PARAMEDIC)
    assert refs(entries(demo.get("/Patient", params=query, headers=h))) == {f"Patient/{pid(7)}"}
    consent = put(demo, privacy_consent(pid(7), deny_to("demo-org-ambulance", "Condition")))
    try:
        assert entries(demo.get("/Patient", params=query, headers=h)) == []
        assert demo.get(f"/Patient/{pid(7)}", headers=h).status_code == 200
    finally:
        demo.delete(f"/Consent/{consent['id']}")
