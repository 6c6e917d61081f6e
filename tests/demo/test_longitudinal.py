"""The longitudinal record (reviews.py, labs.py, repeats.py, immunisations.py): how much data
people have, and that its frequencies follow the guidance the generator cites."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import date, timedelta

import pytest

from carerecord.demo import DEMO_TODAY, RESOURCES_PER_PERSON, codes, person_resources
from carerecord.demo.people import profile
from carerecord.demo.reviews import HISTORY_YEARS
from tests.demo.helpers import Resource, of_type

SEED = 2026
SAMPLE = range(2000, 3500)  # people outside the 200-person demo, so this is a second sample
BP = "75367002"


def _day(value: str) -> date:
    return date.fromisoformat(value[:10])


def _first_code(resource: Resource) -> str:
    return str(resource["code"]["coding"][0]["code"])


@pytest.fixture(scope="module")
def sample() -> list[tuple[int, list[Resource]]]:
    return [(i, person_resources(i, SEED, DEMO_TODAY)) for i in SAMPLE]


def test_the_mean_is_about_thirty_resources_a_person_as_resources_per_person_says(
        sample: list[tuple[int, list[Resource]]]) -> None:
    mean = statistics.fmean(len(r) for _, r in sample)
    assert 26 <= mean <= 36
    assert abs(mean - RESOURCES_PER_PERSON) <= 0.08 * RESOURCES_PER_PERSON


def test_older_people_have_more_data_and_children_little(sample: list[tuple[int, list[Resource]]]) -> None:
    by_band: dict[str, list[int]] = {}
    for i, record in sample:
        age = profile(i, SEED, DEMO_TODAY).age
        band = "child" if age < 18 else "18-39" if age < 40 else "40-64" if age < 65 else "65-79" if age < 80 else "80+"
        by_band.setdefault(band, []).append(len(record))
    means = [statistics.fmean(by_band[b]) for b in ("child", "18-39", "40-64", "65-79", "80+")]
    assert means == sorted(means) and means[0] < 10 and means[-1] > 3 * RESOURCES_PER_PERSON / 2


def test_more_long_term_conditions_mean_more_data(sample: list[tuple[int, list[Resource]]]) -> None:
    adults = [(len(profile(i, SEED, DEMO_TODAY).chronic), len(r)) for i, r in sample
              if 40 <= profile(i, SEED, DEMO_TODAY).age < 80]
    none = statistics.fmean(n for k, n in adults if k == 0)
    one = statistics.fmean(n for k, n in adults if k == 1)
    several = statistics.fmean(n for k, n in adults if k >= 2)
    assert none < one < several


def test_diabetics_have_hba1c_about_twice_a_year_as_nice_ng28_asks(sample: list[tuple[int, list[Resource]]]) -> None:
    """NICE NG28: 6-monthly once stable; QOF: one in the last 12 months. Diabetes diagnosed before
    the window, at home, so every year counts."""
    window = DEMO_TODAY - timedelta(days=365 * HISTORY_YEARS)
    per_year, last_year = [], []
    for _, record in sample:
        [diabetes] = [c for c in of_type(record, "Condition") if _first_code(c) == codes.CONDITIONS["diabetes_t2"].code] \
            or [None]
        if diabetes is None or _day(diabetes["onsetDateTime"]) > window:
            continue
        tests = [_day(o["effectiveDateTime"]) for o in of_type(record, "Observation")
                 if _first_code(o) == codes.OBS_HBA1C[0].code]
        per_year.append(len(tests) / HISTORY_YEARS)
        last_year.append(any(d > DEMO_TODAY - timedelta(days=365) for d in tests))
    assert len(per_year) >= 30
    assert 1.2 <= statistics.fmean(per_year) <= 2.0
    assert max(per_year) <= 2.0  # never more often than six-monthly
    assert 0.65 <= sum(last_year) / len(last_year) <= 0.95


def test_a_patients_blood_pressure_search_finds_a_few_to_a_few_dozen(sample: list[tuple[int, list[Resource]]]) -> None:
    """The benchmark's Observation?patient=X&code=BP&date=geD: from one of the patient's own BP dates."""
    counts = [sum(_first_code(o) == BP for o in of_type(r, "Observation")) for _, r in sample]
    measured = [n for n in counts if n]
    assert len(measured) >= 0.6 * len(counts)
    assert 2 <= statistics.fmean(measured) <= 12 and max(measured) <= 40


def test_lab_reports_group_results_taken_at_the_review_and_reported_after(
        sample: list[tuple[int, list[Resource]]]) -> None:
    reports = 0
    for _, record in sample:
        observations = {o["id"]: o for o in of_type(record, "Observation")}
        grouped = set()
        for report in of_type(record, "DiagnosticReport"):
            reports += 1
            results = [observations[ref["reference"].split("/")[1]] for ref in report["result"]]
            assert results and report["issued"] > report["effectiveDateTime"]
            for result in results:
                assert result["effectiveDateTime"] == report["effectiveDateTime"]
                assert result["encounter"] == report["encounter"]
                assert result["category"][0]["coding"][0]["code"] == "laboratory"
                grouped.add(result["id"])
        lab = {o["id"] for o in observations.values() if o["category"][0]["coding"][0]["code"] == "laboratory"}
        assert lab - grouped <= {o["id"] for o in observations.values() if "encounter" not in o}  # the showcase eGFR
    assert reports > len(sample) / 2


def test_repeat_issues_come_from_an_authorisation_and_stay_within_it(sample: list[tuple[int, list[Resource]]]) -> None:
    issues_seen = 0
    for _, record in sample:
        orders = {m["id"]: m for m in of_type(record, "MedicationRequest") if m["intent"] == "order"}
        issues: Counter[str] = Counter()
        for issue in (m for m in of_type(record, "MedicationRequest") if m["intent"] == "instance-order"):
            auth = orders[issue["basedOn"][0]["reference"].split("/")[1]]
            assert issue["medicationCodeableConcept"] == auth["medicationCodeableConcept"]
            assert issue["authoredOn"] >= auth["authoredOn"] and _day(issue["authoredOn"]) < DEMO_TODAY
            assert (issue["status"] == "active") == (_day(issue["authoredOn"]) > DEMO_TODAY - timedelta(days=7))
            issues[auth["id"]] += 1
        issues_seen += sum(issues.values())
        for auth_id, n in issues.items():
            auth = orders[auth_id]
            assert n <= auth["dispenseRequest"]["numberOfRepeatsAllowed"] + 1
            [info] = [e for e in auth["extension"] if e["url"].endswith("MedicationRepeatInformation")]
            assert {"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": n} in info["extension"]
        repeats = [m for m in orders.values() if m["courseOfTherapyType"]["coding"][0]["code"] == "continuous"
                   and "encounter" in m]  # the showcase's orders are not the yearly authorisations
        current = Counter(m["medicationCodeableConcept"]["coding"][0]["code"] for m in repeats if m["status"] == "active")
        assert all(n == 1 for n in current.values())  # one current authorisation per medicine
    assert issues_seen > 5 * len(sample)


def test_most_people_aged_65_and_over_have_their_flu_vaccination_each_autumn(
        sample: list[tuple[int, list[Resource]]]) -> None:
    """UKHSA: about 78% of people 65 and over vaccinated in 2023/24; none under two."""
    flu = codes.VACCINATIONS["flu"].code
    seasons = range(DEMO_TODAY.year - HISTORY_YEARS, DEMO_TODAY.year)  # complete seasons only
    rates = []
    for i, record in sample:
        p = profile(i, SEED, DEMO_TODAY)
        given = [_day(m["occurrenceDateTime"]) for m in of_type(record, "Immunization")
                 if m["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == flu]
        assert all(d.month in (9, 10, 11, 12) for d in given)
        assert all((d - p.birth).days >= 365 * 2 for d in given)
        if p.age >= 65 + HISTORY_YEARS:
            rates.append(sum(any(d.year == y for d in given) for y in seasons) / len(seasons))
    assert 0.65 <= statistics.fmean(rates) <= 0.9


def test_immunisations_carry_a_dmd_vaccine_and_the_uk_core_procedure(
        sample: list[tuple[int, list[Resource]]]) -> None:
    vaccines = {c.code for c in codes.VACCINES.values()}
    found = [m for _, r in sample for m in of_type(r, "Immunization")]
    assert len(found) > len(sample)
    for imm in found:
        assert imm["vaccineCode"]["coding"][0]["code"] in vaccines
        assert imm["extension"][0]["url"] == codes.VACCINATION_PROCEDURE
        assert imm["primarySource"] == ("performer" in imm) == ("location" in imm)


def test_care_home_residents_are_weighed_monthly_by_the_home(sample: list[tuple[int, list[Resource]]]) -> None:
    residents = [(i, r) for i, r in sample if profile(i, SEED, DEMO_TODAY).care_home is not None]
    assert residents
    for i, record in residents:
        home = profile(i, SEED, DEMO_TODAY).care_home
        assert home is not None
        carers = {f"Practitioner/{s.practitioner}" for s in home.members("care_worker")}
        weights = sorted(_day(o["effectiveDateTime"]) for o in of_type(record, "Observation")
                         if o["performer"][0]["reference"] in carers)
        assert weights and all(25 <= (b - a).days <= 40 for a, b in zip(weights, weights[1:], strict=False))


def test_the_persona_people_have_what_the_access_tests_read() -> None:
    """tests/access reads people 0-7 (personas.py): person 2 needs a page of Observations with a
    next page, person 3 (the care home resident) an active order."""
    two = person_resources(2, SEED, DEMO_TODAY)
    assert len(of_type(two, "Observation")) >= 2
    three = person_resources(3, SEED, DEMO_TODAY)
    assert any(m["status"] == "active" for m in of_type(three, "MedicationRequest"))
