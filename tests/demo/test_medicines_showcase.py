"""The medicines showcase people (demo/medicines.py): each scenario is in the 200-person demo,
carries what its check needs, and adding them changed nobody else's record."""

from __future__ import annotations

from carerecord.demo import DEMO_TODAY, codes, person_resources
from carerecord.demo.medicines import SLOTS, scenarios_of
from carerecord.demo.people import profile

SEED = 2026


def _scenarios(people: int) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i in range(people):
        for name in scenarios_of(i, SEED, profile(i, SEED, DEMO_TODAY)):
            found.setdefault(name, []).append(i)
    return found


def test_every_scenario_appears_once_in_each_block_of_a_hundred() -> None:
    found = _scenarios(200)
    assert set(found) == {*SLOTS, "mar"}
    assert all(len(people) == 2 and people[0] < 100 <= people[1] for people in found.values())


def test_the_renal_patient_has_an_egfr_the_dose_checks_read() -> None:
    [index] = _scenarios(100)["renal"]
    egfr = [r for r in person_resources(index, SEED, DEMO_TODAY)
            if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "62238-1"]
    assert egfr and egfr[0]["valueQuantity"]["value"] < 30


def test_one_repeat_of_the_repeats_patient_is_overdue_for_review() -> None:
    [index] = _scenarios(100)["repeats"]
    showcase = {codes.MEDICINES[k].code.code for k in ("amlodipine", "furosemide")}
    orders = [r for r in person_resources(index, SEED, DEMO_TODAY) if r["resourceType"] == "MedicationRequest"
              and r["medicationCodeableConcept"]["coding"][0]["code"] in showcase]
    assert [r["intent"] for r in orders] == ["order", "order"]  # the showcase's own, nothing ordinary
    reviews = [e["valueDateTime"] for r in orders for x in r.get("extension", [])
               for e in x.get("extension", []) if e["url"] == "authorisationExpiryDate"]
    assert sorted(d < DEMO_TODAY.isoformat() for d in reviews) == [False, True]


def test_people_without_a_scenario_are_unchanged_by_the_showcase() -> None:
    index = 5  # no scenario: their record holds no showcase extension or inpatient order
    assert scenarios_of(index, SEED, profile(index, SEED, DEMO_TODAY)) == []
    resources = person_resources(index, SEED, DEMO_TODAY)
    assert not any("extension" in r for r in resources if r["resourceType"] in ("Patient", "MedicationRequest"))
