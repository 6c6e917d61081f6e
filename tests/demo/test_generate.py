"""generate(): Bundle shape, determinism, independence of person N from the total, counts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import orjson
import pytest

from carerecord.demo import MAX_PEOPLE, count_resources, generate
from tests.demo.helpers import PEOPLE, Resource, of_type

SHARED_TYPES = {"Organization", "Location", "Practitioner", "PractitionerRole"}
DIGEST = ("import hashlib, orjson; from carerecord.demo import generate; h = hashlib.sha256(); "
          "[h.update(orjson.dumps(b)) for b in generate(25, 7)]; print(h.hexdigest())")


def _digest(people: int, seed: int) -> str:
    h = hashlib.sha256()
    for bundle in generate(people, seed):
        h.update(orjson.dumps(bundle))
    return h.hexdigest()


def test_every_bundle_is_a_transaction_of_puts_to_type_and_id(community: list[dict[str, Any]]) -> None:
    for bundle in community:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["request"] == {"method": "PUT",
                                        "url": f"{resource['resourceType']}/{resource['id']}"}


def test_the_first_bundle_holds_the_shared_organisations_locations_and_staff(
        shared: list[Resource]) -> None:
    assert {r["resourceType"] for r in shared} == SHARED_TYPES
    kinds = Counter(r["name"].split()[-1] for r in of_type(shared, "Organization"))
    assert kinds["Trust"] == 2  # hospital and ambulance trusts
    assert len(of_type(shared, "Practitioner")) == len(of_type(shared, "PractitionerRole"))


def test_then_one_bundle_per_person_with_one_patient_first(people: list[list[Resource]]) -> None:
    assert len(people) == PEOPLE
    for person in people:
        assert person[0]["resourceType"] == "Patient"
        assert len(of_type(person, "Patient")) == 1
        assert not {r["resourceType"] for r in person} & SHARED_TYPES


def test_resource_ids_are_unique_within_each_type(resources: list[Resource]) -> None:
    keys = Counter((r["resourceType"], r["id"]) for r in resources)
    assert [k for k, n in keys.items() if n > 1] == []


def test_same_people_and_seed_give_byte_identical_output() -> None:
    assert _digest(40, 2026) == _digest(40, 2026)


def test_output_does_not_depend_on_the_python_hash_seed() -> None:
    expected = _digest(25, 7)
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-c", DIGEST], env=env, capture_output=True, text=True,
                             check=True)
        assert out.stdout.strip() == expected


def test_a_different_seed_gives_a_different_community() -> None:
    assert _digest(10, 1) != _digest(10, 2)


def test_person_n_is_the_same_whatever_the_number_of_people(community: list[dict[str, Any]]) -> None:
    small = list(generate(12))
    assert orjson.dumps(small[1:]) == orjson.dumps(community[1:13])
    assert orjson.dumps(small[0]) == orjson.dumps(community[0])


def test_the_shared_bundle_grows_with_areas_but_keeps_its_first_sites() -> None:
    first = next(generate(PEOPLE))["entry"]
    bigger = next(generate(12_000))["entry"]
    ids = [e["request"]["url"] for e in bigger]
    assert len(ids) > len(first)
    assert {e["request"]["url"] for e in first} <= set(ids)
    assert "Organization/demo-org-gp1" in ids  # a second practice for the second 10,000 people


def test_zero_people_gives_only_the_shared_bundle() -> None:
    bundles = list(generate(0))
    assert len(bundles) == 1 and bundles[0]["entry"]


@pytest.mark.parametrize("people", [-1, MAX_PEOPLE + 1])
def test_people_outside_the_nhs_number_capacity_are_refused(people: int) -> None:
    with pytest.raises(ValueError):
        next(generate(people))


def test_count_resources_is_within_a_fifth_of_the_real_count(resources: list[Resource]) -> None:
    estimate = count_resources(PEOPLE)
    assert abs(estimate - len(resources)) <= len(resources) / 5
