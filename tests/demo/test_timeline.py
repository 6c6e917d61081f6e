"""The timeline of each record: past is past, surgeries open on weekdays, admissions go to wards."""

from __future__ import annotations

from datetime import date

from carerecord.demo import generate
from carerecord.fhir.validation import validate
from tests.demo.helpers import TODAY, Resource, of_type


def _day(value: str) -> date:
    return date.fromisoformat(value[:10])


def _past_dates(resource: Resource) -> list[str]:
    """The dates of things that have already happened, by resource type."""
    kind = resource["resourceType"]
    if kind == "Encounter":
        return [resource["period"]["start"], *([resource["period"]["end"]] if "end" in resource["period"] else [])]
    if kind == "Observation":
        return [resource["effectiveDateTime"], *([resource["issued"]] if "issued" in resource else [])]
    if kind == "DiagnosticReport":
        return [resource["effectiveDateTime"], resource["issued"]]
    if kind == "Immunization":
        return [resource["occurrenceDateTime"], resource["recorded"]]
    if kind == "Condition":
        return [resource["onsetDateTime"], resource["recordedDate"], *
                ([resource["abatementDateTime"]] if "abatementDateTime" in resource else [])]
    if kind == "MedicationRequest":
        return [resource["authoredOn"], *([resource["dispenseRequest"]["validityPeriod"]["start"]]
                                          if "validityPeriod" in resource.get("dispenseRequest", {}) else [])]
    if kind == "AllergyIntolerance":
        return [resource["recordedDate"]]
    if kind in ("Flag", "EpisodeOfCare", "CareTeam"):
        return [resource["period"]["start"]]
    if kind == "Appointment":
        return [resource["created"]] + ([resource["start"]] if resource["status"] != "booked" else [])
    return []


def test_nothing_but_booked_appointments_lies_in_the_future_or_before_birth(
        people: list[list[Resource]]) -> None:
    for person in people:
        born = date.fromisoformat(person[0]["birthDate"])
        for resource in person:
            for value in _past_dates(resource):
                assert born <= _day(value) <= TODAY, (resource["id"], value)


def test_gp_consultations_and_appointments_fall_on_weekdays(resources: list[Resource]) -> None:
    for appt in of_type(resources, "Appointment"):
        assert _day(appt["start"]).weekday() < 5
    gp = [e for e in of_type(resources, "Encounter") if e["class"]["code"] == "AMB"]
    assert gp and all(_day(e["period"]["start"]).weekday() < 5 for e in gp)


def test_emergency_admissions_move_from_the_emergency_department_to_a_ward(
        resources: list[Resource]) -> None:
    stays = [e for e in of_type(resources, "Encounter") if e["class"]["code"] == "IMP"]
    assert stays
    for stay in stays:
        first, second = (loc["location"]["reference"] for loc in stay["location"])
        assert first == "Location/demo-loc-hospital-ed"
        assert second.startswith("Location/demo-loc-ward-")
        assert stay["serviceProvider"]["reference"] == "Organization/demo-org-hospital"


def test_a_later_today_moves_the_whole_timeline_and_stays_valid() -> None:
    later = date(2031, 6, 14)
    bundles = list(generate(20, today=later))
    booked = [e["resource"] for b in bundles for e in b["entry"]
              if e["resource"]["resourceType"] == "Appointment" and e["resource"]["status"] == "booked"]
    assert booked and all(_day(a["start"]) > later for a in booked)
    assert [i for b in bundles for i in validate(b) if i.severity == "error"] == []
