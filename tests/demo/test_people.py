"""Patients: NHS numbers, addresses, registration, and the shape of the community."""

from __future__ import annotations

import re

import nhs_number

from carerecord.demo.identifiers import NHS_NUMBER
from tests.demo.helpers import PEOPLE, TODAY, Resource, codes_of, of_type

DEMENTIA = {"52448006", "26929004"}
POSTCODE = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][ABD-HJLNP-UW-Z]{2}$")


def _nhs(patient: Resource) -> str:
    (value,) = [i["value"] for i in patient["identifier"] if i["system"] == NHS_NUMBER]
    return str(value)


def _age(patient: Resource) -> int:
    born = str(patient["birthDate"])
    years = TODAY.year - int(born[:4])
    return years - ((TODAY.month, TODAY.day) < (int(born[5:7]), int(born[8:10])))


def _in_care_home(person: list[Resource]) -> bool:
    return any(e["type"][0]["text"] == "Residential care" for e in of_type(person, "EpisodeOfCare"))


def test_every_nhs_number_passes_modulus_11(people: list[list[Resource]]) -> None:
    for person in people:
        number = _nhs(person[0])
        weights = sum(int(d) * w for d, w in zip(number[:9], range(10, 1, -1), strict=True))
        assert (11 - weights % 11) % 11 == int(number[9])
        assert nhs_number.is_valid(number)


def test_nhs_numbers_are_in_the_999_synthetic_range(people: list[list[Resource]]) -> None:
    assert all(_nhs(person[0]).startswith("999") for person in people)


def test_nhs_numbers_are_unique(people: list[list[Resource]]) -> None:
    assert len({_nhs(person[0]) for person in people}) == PEOPLE


def test_every_patient_is_registered_with_their_gp_practice(people: list[list[Resource]],
                                                            shared: list[Resource]) -> None:
    practices = {f"Organization/{o['id']}" for o in of_type(shared, "Organization")
                 if o["identifier"][0]["value"].startswith("Y9")}
    for person in people:
        assert person[0]["generalPractitioner"][0]["reference"] in practices


def test_addresses_are_in_west_yorkshire_towns_with_valid_format_postcodes(
        people: list[list[Resource]]) -> None:
    for person in people:
        address = person[0]["address"][0]
        assert address["city"] in {"Leeds", "Bradford", "Wakefield", "Huddersfield", "Halifax"}
        assert POSTCODE.match(address["postalCode"]), address["postalCode"]


def test_ages_run_from_babies_to_the_very_old(people: list[list[Resource]]) -> None:
    ages = [_age(person[0]) for person in people]
    assert min(ages) < 5 and max(ages) >= 90
    assert 0.15 <= sum(a >= 65 for a in ages) / PEOPLE <= 0.45


def test_about_eight_percent_live_in_a_care_home_at_its_address(people: list[list[Resource]],
                                                                shared: list[Resource]) -> None:
    residents = [p for p in people if _in_care_home(p)]
    assert 0.04 <= len(residents) / PEOPLE <= 0.13
    homes = {loc["address"]["postalCode"] for loc in of_type(shared, "Location")
             if loc["type"][0]["coding"][0]["code"] == "NCCF"}
    for person in residents:
        assert person[0]["address"][0]["postalCode"] in homes
        assert _age(person[0]) >= 75


def test_about_seven_percent_live_with_dementia_mostly_the_oldest(people: list[list[Resource]]) -> None:
    with_dementia = [p for p in people if codes_of(p, "Condition") & DEMENTIA]
    assert 0.04 <= len(with_dementia) / PEOPLE <= 0.11
    assert sum(_age(p[0]) >= 75 for p in with_dementia) >= 0.8 * len(with_dementia)


def test_most_care_home_residents_live_with_dementia(people: list[list[Resource]]) -> None:
    residents = [p for p in people if _in_care_home(p)]
    assert sum(bool(codes_of(p, "Condition") & DEMENTIA) for p in residents) > len(residents) / 2


def test_care_home_residents_have_a_care_team_with_the_home_and_their_gp(
        people: list[list[Resource]]) -> None:
    for person in filter(_in_care_home, people):
        (episode,) = [e for e in of_type(person, "EpisodeOfCare") if e["type"][0]["text"] == "Residential care"]
        team_ids = {t["reference"] for t in episode["team"]}
        (team,) = [t for t in of_type(person, "CareTeam") if f"CareTeam/{t['id']}" in team_ids]
        on_behalf = {m["onBehalfOf"]["reference"] for m in team["participant"]}
        assert episode["managingOrganization"]["reference"] in on_behalf
        assert person[0]["generalPractitioner"][0]["reference"] in on_behalf


def test_dnacpr_flags_are_for_a_few_older_people(people: list[list[Resource]]) -> None:
    flagged = [p for p in people if of_type(p, "Flag")]
    assert 0 < len(flagged) <= 0.15 * PEOPLE
    assert all(_age(p[0]) >= 75 for p in flagged)
    assert all(codes_of(p, "Flag") == {"450476008"} for p in flagged)
