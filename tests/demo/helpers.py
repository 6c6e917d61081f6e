"""Helpers for reading the generated community in tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from carerecord.demo import DEMO_TODAY

Resource = dict[str, Any]
PEOPLE = 200
TODAY = DEMO_TODAY
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def of_type(items: list[Resource], resource_type: str) -> list[Resource]:
    return [r for r in items if r["resourceType"] == resource_type]


def codings(value: object) -> Iterator[dict[str, Any]]:
    """Every Coding (an object with "system" and "code") anywhere inside ``value``."""
    if isinstance(value, dict):
        if "system" in value and "code" in value and isinstance(value["code"], str):
            yield value
        for item in value.values():
            yield from codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from codings(item)


def references(value: object) -> Iterator[str]:
    """Every Reference.reference string anywhere inside ``value``."""
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str):
            yield ref
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)


def codes_of(person: list[Resource], resource_type: str) -> set[str]:
    """The first code of each resource of a type in one person's record."""
    return {r["code"]["coding"][0]["code"] for r in of_type(person, resource_type)}

