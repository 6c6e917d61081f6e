"""The medicines workflows end to end over real HTTP against the demo community
(api/medicines.py over services/medicines; demo/medicines.py's showcase people), with bearer
tokens as every client sends them.

The module loads the shared sites and the showcase people once; each test works on its own
person, so the tests do not depend on each other's writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from carerecord.demo import DEMO_TODAY, generate, person_resources, transaction
from carerecord.demo.medicines import HOSPITAL_NUMBER
from carerecord.services.medicines.tasks import TASK_CODES
from carerecord.services.medicines.timing import WARD_TIME
from tests.api.conftest import outcome, search
from tests.conftest import wipe
from tests.services.medicines.test_prescription_eps import essentials

SEED = 2026
MAR, PENICILLIN, WARFARIN, SIMVASTATIN, RENAL, REPEATS, INPATIENT = 3, 12, 21, 30, 41, 51, 61
CLARITHROMYCIN = {"text": "Clarithromycin 500mg tablets"}
NURSE = {"name": "actor", "valueReference": {"reference": "PractitionerRole/demo-role-hospital-2"}}
PHARMACIST = {"name": "actor", "valueReference": {"reference": "PractitionerRole/demo-role-hospital-20"}}
GP = {"name": "actor", "valueReference": {"reference": "PractitionerRole/demo-role-gp0-0"}}
COMMUNITY_PHARMACIST = {"name": "actor", "valueReference": {"reference": "PractitionerRole/demo-role-pharmacy0-0"}}


def pid(index: int) -> str:
    return f"demo-patient-{index:06d}"


@pytest.fixture(scope="module")
def demo(live_server: str, engine: Engine, system_token: str) -> Iterator[httpx.Client]:
    """A client (system token) on a database holding the demo's shared sites and showcase people."""
    wipe(engine)

    def no_leaks(response: httpx.Response) -> None:
        response.read()
        assert response.status_code != 500, response.text
        assert "Traceback" not in response.text

    with httpx.Client(base_url=live_server, timeout=60, event_hooks={"response": [no_leaks]},
                      headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {system_token}"}) as c:
        bundles = [next(generate(200, SEED))] + [transaction(person_resources(i, SEED, DEMO_TODAY))
                                                 for i in (MAR, PENICILLIN, WARFARIN, SIMVASTATIN, RENAL, REPEATS, INPATIENT)]
        for bundle in bundles:
            r = c.post("", json=bundle)
            assert r.status_code == 200, r.text
        yield c


def params(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(items)}


def override(key: str, comment: str) -> dict[str, Any]:
    return {"name": "override", "part": [{"name": "key", "valueString": key}, {"name": "comment", "valueString": comment}]}


def op(client: httpx.Client, path: str, *items: dict[str, Any]) -> dict[str, Any]:
    """POST an operation; the Parameters answer as {status, findings (dicts of parts), resources}."""
    r = client.post(path, json=params(*items))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    out: dict[str, Any] = {"findings": [], "resources": []}
    for p in body["parameter"]:
        if p["name"] == "status":
            out["status"] = p["valueCode"]
        elif p["name"] == "finding":
            out["findings"].append({q["name"]: next(v for k, v in q.items() if k.startswith("value"))
                                    for q in p["part"] if q["name"] != "evidence"})
        elif p["name"] == "resource":
            out["resources"].append(p["resource"])
    return out


def draft(client: httpx.Client, index: int, medicine: dict[str, Any], *, inpatient: bool = True,
          dose: float = 1, unit: str = "tablet") -> str:
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest", "status": "draft", "intent": "order",
        "medicationCodeableConcept": medicine, "subject": {"reference": f"Patient/{pid(index)}"},
        "requester": {"reference": "PractitionerRole/demo-role-hospital-0"},
        "dosageInstruction": [{"text": f"{dose:g} {unit} twice a day",
                               "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}]}],
        "dispenseRequest": {"performer": {"reference": "Organization/demo-org-hospital-pharmacy"}}}
    if inpatient:
        order["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                          "code": "inpatient"}]}]
    r = client.post("/MedicationRequest", json=order)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def kinds(result: dict[str, Any], blocking: bool = True) -> list[str]:
    return [f["kind"] for f in result["findings"] if f["blocking"] or not blocking]


# -- hospital --------------------------------------------------------------------------------------
def test_a_ward_order_is_signed_verified_charted_and_given(demo: httpx.Client) -> None:
    order = draft(demo, INPATIENT, {"text": "Paracetamol 500mg tablets"}, dose=1)
    checked = op(demo, f"/MedicationRequest/{order}/$check")
    assert checked["status"] == "checked"
    signed = op(demo, f"/MedicationRequest/{order}/$sign")
    assert signed["status"] == "signed", signed
    queue = search(demo, f"Task?owner=Organization/demo-org-hospital-pharmacy&code={TASK_CODES}|verify&status=requested")
    [task] = [t for t in queue if t["focus"]["reference"] == f"MedicationRequest/{order}"]
    assert op(demo, f"/Task/{task['id']}/$verify", PHARMACIST)["status"] == "verified"

    # The chart of the day the order started (the server stamps authoredOn with the real time;
    # the demo's own orders are charted on DEMO_TODAY and go on every day after it).
    authored = demo.get(f"/MedicationRequest/{order}").json()["authoredOn"]
    day = datetime.fromisoformat(authored.replace("Z", "+00:00")).astimezone(WARD_TIME).date()
    chart = demo.get(f"/Patient/{pid(INPATIENT)}/$administration-chart", params={"date": day.isoformat()})
    assert chart.status_code == 200, chart.text
    lines = [{q["name"]: q for q in p["part"]} for p in chart.json()["parameter"] if p["name"] == "line"]
    mine = [line for line in lines if line["order"]["valueReference"]["reference"] == f"MedicationRequest/{order}"]
    assert mine and mine[0]["verified"]["valueBoolean"] is True
    assert len(lines) >= 4  # the showcase's three ward orders and this one

    inhaler = search(demo, f"MedicationRequest?subject=Patient/{pid(INPATIENT)}&category=inpatient"
                           f"&code=39113611000001102")[0]
    wristband = {"name": "patientIdentifier", "valueIdentifier": {"system": HOSPITAL_NUMBER,
                                                                  "value": f"RZZ{INPATIENT:07d}"}}
    given = op(demo, f"/MedicationRequest/{inhaler['id']}/$administer", wristband,
               {"name": "status", "valueCode": "given"}, NURSE)
    assert given["status"] == "given", given
    [admin] = [r for r in given["resources"] if r["resourceType"] == "MedicationAdministration"]
    assert admin["performer"][0]["actor"]["reference"] == "PractitionerRole/demo-role-hospital-2"


def test_the_bedside_scan_of_another_patient_blocks_the_dose(demo: httpx.Client) -> None:
    """Hazard H026 (wrong-patient administration), end to end."""
    order = search(demo, f"MedicationRequest?subject=Patient/{pid(INPATIENT)}&category=inpatient&status=active")[0]
    other = {"name": "patientIdentifier", "valueIdentifier": {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                                              "value": _nhs(demo, PENICILLIN)}}
    out = op(demo, f"/MedicationRequest/{order['id']}/$administer", other, {"name": "status", "valueCode": "given"}, NURSE)
    assert out["status"] == "blocked" and kinds(out) == ["wrong-patient"] and out["resources"] == []


def _nhs(client: httpx.Client, index: int) -> str:
    patient = client.get(f"/Patient/{pid(index)}").json()
    return str(next(i["value"] for i in patient["identifier"] if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"))


def test_amoxicillin_for_the_penicillin_allergic_patient_is_blocked_until_overridden(demo: httpx.Client) -> None:
    order = draft(demo, PENICILLIN, {"text": "Amoxicillin 500mg capsules"}, unit="capsule")
    blocked = op(demo, f"/MedicationRequest/{order}/$sign")
    assert blocked["status"] == "blocked" and kinds(blocked) == ["allergy"]
    assert demo.get(f"/MedicationRequest/{order}").json()["status"] == "draft"
    key = blocked["findings"][0]["key"]
    signed = op(demo, f"/MedicationRequest/{order}/$sign", override(key, "Specialist advice: desensitised"))
    assert signed["status"] == "signed"
    assert len(search(demo, f"DetectedIssue?implicated=MedicationRequest/{order}")) == 1


@pytest.mark.parametrize(("index", "medicine", "kind"), [
    (WARFARIN, {"text": "Aspirin 75mg dispersible tablets"}, "interaction"),
    (SIMVASTATIN, CLARITHROMYCIN, "interaction"),
    (RENAL, {"text": "Metformin 500mg tablets"}, "renal"),
])
def test_each_showcase_patient_triggers_their_alert(demo: httpx.Client, index: int, medicine: dict[str, Any],
                                                    kind: str) -> None:
    order = draft(demo, index, medicine, inpatient=False)
    out = op(demo, f"/MedicationRequest/{order}/$sign")
    assert out["status"] == "blocked" and kind in kinds(out)


def test_bad_operation_input_is_an_operation_outcome_naming_the_parameter(demo: httpx.Client) -> None:
    order = search(demo, f"MedicationRequest?subject=Patient/{pid(INPATIENT)}&category=inpatient&status=active")[0]
    r = demo.post(f"/MedicationRequest/{order['id']}/$administer", json=params({"name": "status", "valueCode": "given"}))
    outcome(r, 400, expression="Parameters.parameter.where(name='patientIdentifier')")
    r = demo.post(f"/MedicationRequest/{order['id']}/$stop", json=params({"name": "reason", "valueString": " "}))
    outcome(r, 400, expression="Parameters.parameter[0].valueString")
    outcome(demo.post("/MedicationRequest/nope/$sign", json=params()), 404)
    outcome(demo.post(f"/MedicationRequest/{order['id']}/$sign", json={"resourceType": "Patient"}), 400,
            expression="resourceType")


def test_operations_need_the_scopes_of_what_they_write(demo: httpx.Client, engine: Engine, live_server: str) -> None:
    from carerecord.access.tokens import mint_system_token

    reader = mint_system_token(engine, "system/MedicationRequest.rs system/Patient.r", audience=live_server,
                               client_id="reader")
    order = search(demo, f"MedicationRequest?subject=Patient/{pid(INPATIENT)}&category=inpatient&status=active")[0]
    r = demo.post(f"/MedicationRequest/{order['id']}/$stop", json=params({"name": "reason", "valueString": "x"}),
                  headers={"Authorization": f"Bearer {reader}"})
    outcome(r, 403)
    chart = demo.get(f"/Patient/{pid(MAR)}/$administration-chart", headers={"Authorization": f"Bearer {reader}"})
    outcome(chart, 403)  # the chart also reads MedicationAdministration


def test_the_care_home_mar_shows_the_set_times(demo: httpx.Client) -> None:
    r = demo.get(f"/Patient/{pid(MAR)}/$administration-chart", params={"date": DEMO_TODAY.isoformat()})
    assert r.status_code == 200, r.text
    due = [q["valueDateTime"][11:16] for p in r.json()["parameter"] if p["name"] == "line"
           for d in p["part"] if d["name"] == "dose" for q in d["part"] if q["name"] == "due"]
    assert {"08:00", "12:00", "17:00", "22:00"} <= set(due)
    outcome(demo.get(f"/Patient/{pid(MAR)}/$administration-chart", params={"date": "23/11/2026"}), 400, expression="date")


# -- community ---------------------------------------------------------------------------------------
def test_a_repeat_past_review_is_flagged_approved_with_a_reason_routed_and_dispensed(demo: httpx.Client) -> None:
    """Hazard H029 (repeat past review), end to end: request, flag, approve, issue, dispense."""
    [amlodipine] = search(demo, f"MedicationRequest?subject=Patient/{pid(REPEATS)}&code=13892511000001100&intent=order")
    requested = op(demo, f"/MedicationRequest/{amlodipine['id']}/$request-repeat",
                   {"name": "actor", "valueReference": {"reference": f"Patient/{pid(REPEATS)}"}},
                   {"name": "comment", "valueString": "Nearly run out"})
    assert requested["status"] == "requested" and kinds(requested) == ["repeat-review"]
    [task] = requested["resources"]
    assert task["owner"] == {"reference": "Organization/demo-org-gp0"}

    blocked = op(demo, f"/Task/{task['id']}/$approve-repeat", GP)
    assert blocked["status"] == "blocked"
    approved = op(demo, f"/Task/{task['id']}/$approve-repeat", GP,
                  override(blocked["findings"][0]["key"], "Reviewed by telephone; BP fine"))
    assert approved["status"] == "approved"
    [issue] = [r for r in approved["resources"] if r["resourceType"] == "MedicationRequest" and r["intent"] == "instance-order"]
    assert issue["dispenseRequest"]["performer"]["reference"] == "Organization/demo-org-pharmacy0"
    queue = search(demo, f"Task?owner=Organization/demo-org-pharmacy0&code={TASK_CODES}|dispense&status=requested")
    assert [t["focus"]["reference"] for t in queue] == [f"MedicationRequest/{issue['id']}"]

    bundle = demo.get(f"/MedicationRequest/{issue['id']}/$prescription")
    assert bundle.status_code == 200, bundle.text
    assert all(essentials(bundle.json()).values()), essentials(bundle.json())

    dispensed = op(demo, f"/MedicationRequest/{issue['id']}/$dispense", COMMUNITY_PHARMACIST)
    assert dispensed["status"] == "dispensed"
    outcome(demo.post(f"/MedicationRequest/{issue['id']}/$dispense", json=params(COMMUNITY_PHARMACIST)), 422)


def test_the_practice_rejects_a_repeat_with_a_reason(demo: httpx.Client) -> None:
    [furosemide] = search(demo, f"MedicationRequest?subject=Patient/{pid(REPEATS)}&code=317972000&intent=order")
    requested = op(demo, f"/MedicationRequest/{furosemide['id']}/$request-repeat")
    assert kinds(requested, blocking=False) == []
    task = requested["resources"][0]
    rejected = op(demo, f"/Task/{task['id']}/$reject-repeat", GP, {"name": "reason", "valueString": "Blood test due first"})
    assert rejected["resources"][0]["status"] == "rejected"


def test_two_orders_signed_at_the_same_moment_are_checked_against_each_other(demo: httpx.Client) -> None:
    """Issue 5: two orders signed at the same moment for one patient are both checked (no race).
    Sent together, one is signed and the other is blocked by the interaction with it."""
    from concurrent.futures import ThreadPoolExecutor

    first = draft(demo, RENAL, {"text": "Warfarin 1mg tablets"}, inpatient=False)
    second = draft(demo, RENAL, {"text": "Ibuprofen 400mg tablets"}, inpatient=False)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda o: op(demo, f"/MedicationRequest/{o}/$sign"), (first, second)))
    assert sorted(r["status"] for r in results) == ["blocked", "signed"]
    [stopped] = [r for r in results if r["status"] == "blocked"]
    assert "interaction" in kinds(stopped)


def _token(engine: Engine, live_server: str, scope: str, **grantee: Any) -> str:
    """An access token of this server for a person (as sign-in would mint it)."""
    from carerecord.access.grants import Grantee
    from carerecord.access.tokens import AccessTokens

    tokens = AccessTokens(engine, live_server.removesuffix("/fhir"), live_server)
    return tokens.mint("test-app", scope, Grantee(**grantee), 300)[0]


def test_a_patient_asks_for_their_own_repeat_and_no_one_elses(demo: httpx.Client, engine: Engine,
                                                                live_server: str) -> None:
    """The patient app's call: the request is made by the patient; another patient's repeat is
    answered as if it did not exist."""
    token = _token(engine, live_server, "patient/MedicationRequest.rs patient/Task.c", kind="patient",
                   subject=f"Patient/{pid(REPEATS)}", patients=(pid(REPEATS),), patient=pid(REPEATS))
    auth = {"Authorization": f"Bearer {token}"}
    [furosemide] = search(demo, f"MedicationRequest?subject=Patient/{pid(REPEATS)}&code=317972000&intent=order")
    r = demo.post(f"/MedicationRequest/{furosemide['id']}/$request-repeat", json=params(), headers=auth)
    assert r.status_code == 200, r.text
    [task] = [p["resource"] for p in r.json()["parameter"] if p["name"] == "resource"]
    assert task["requester"] == {"reference": f"Patient/{pid(REPEATS)}"}
    [warfarin] = search(demo, f"MedicationRequest?subject=Patient/{pid(WARFARIN)}&intent=order&status=active")
    outcome(demo.post(f"/MedicationRequest/{warfarin['id']}/$request-repeat", json=params(), headers=auth), 404)


def test_a_signed_in_nurse_is_recorded_as_the_performer(demo: httpx.Client, engine: Engine, live_server: str) -> None:
    token = _token(engine, live_server, "user/MedicationRequest.rs user/MedicationAdministration.c "
                   "user/DetectedIssue.c", kind="staff", subject="Practitioner/demo-staff-hospital-3",
                   practitioner_role="PractitionerRole/demo-role-hospital-3", role="nurse",
                   organization="Organization/demo-org-hospital")
    inhaler = search(demo, f"MedicationRequest?subject=Patient/{pid(INPATIENT)}&code=39113611000001102")[0]
    r = demo.post(f"/MedicationRequest/{inhaler['id']}/$administer", headers={"Authorization": f"Bearer {token}"},
                  json=params({"name": "patientIdentifier", "valueIdentifier": {"value": _nhs(demo, INPATIENT)}},
                              {"name": "status", "valueCode": "delayed"},
                              {"name": "comment", "valueString": "Patient asleep"}))
    assert r.status_code == 200, r.text
    [admin] = [p["resource"] for p in r.json()["parameter"] if p["name"] == "resource"]
    assert admin["status"] == "on-hold"
    assert admin["performer"] == [{"actor": {"reference": "PractitionerRole/demo-role-hospital-3"}}]


def test_a_ward_order_is_changed_then_stopped(demo: httpx.Client) -> None:
    order = draft(demo, WARFARIN, {"text": "Paracetamol 500mg tablets"}, dose=2)
    assert op(demo, f"/MedicationRequest/{order}/$sign")["status"] == "signed"
    replacement = demo.get(f"/MedicationRequest/{order}").json()
    replacement["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 1
    changed = op(demo, f"/MedicationRequest/{order}/$change", {"name": "replacement", "resource": replacement},
                 {"name": "reason", "valueString": "Weight 48 kg: lower dose"})
    assert changed["status"] == "changed", changed
    new = [r for r in changed["resources"] if r["resourceType"] == "MedicationRequest" and r["id"] != order][0]
    assert new["priorPrescription"] == {"reference": f"MedicationRequest/{order}"}
    old = demo.get(f"/MedicationRequest/{order}").json()
    assert old["status"] == "stopped" and old["statusReason"]["text"] == "Weight 48 kg: lower dose"
    stopped = op(demo, f"/MedicationRequest/{new['id']}/$stop", {"name": "reason", "valueString": "Discharged"})
    assert stopped["status"] == "stopped"
    outcome(demo.post(f"/MedicationRequest/{new['id']}/$stop", json=params({"name": "reason", "valueString": "again"})),
            422, expression="MedicationRequest.status")
