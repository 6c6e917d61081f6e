"""References: relative, and each resolves to a generated resource in scope."""

from __future__ import annotations

import re

from tests.demo.helpers import Resource, references

RELATIVE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def _keys(items: list[Resource]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in items}


def test_every_reference_is_relative_type_slash_id(resources: list[Resource]) -> None:
    bad = [ref for r in resources for ref in references(r) if not RELATIVE.match(ref)]
    assert bad == []


def test_every_shared_reference_resolves_within_the_shared_bundle(shared: list[Resource]) -> None:
    known = _keys(shared)
    assert [ref for r in shared for ref in references(r) if ref not in known] == []


def test_every_person_reference_resolves_to_their_own_or_a_shared_resource(
        shared: list[Resource], people: list[list[Resource]]) -> None:
    known = _keys(shared)
    for person in people:
        scope = known | _keys(person)
        assert [ref for r in person for ref in references(r) if ref not in scope] == []


def test_a_person_never_points_at_another_persons_resources(people: list[list[Resource]]) -> None:
    for person in people:
        patient = f"Patient/{person[0]['id']}"
        own_prefix = person[0]["id"].replace("demo-patient-", "demo-")
        for resource in person:
            for ref in references(resource):
                if ref.startswith("Patient/"):
                    assert ref == patient
            if resource is not person[0]:
                assert resource["id"].startswith(own_prefix + "-")
