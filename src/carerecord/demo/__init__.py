"""A seeded, reproducible, entirely synthetic integrated care community for demos and benchmarks.

An edge layer: it imports nothing else from the project, and nothing imports it except the CLI
(and the benchmarks and tests).

:func:`generate` yields FHIR R4 transaction Bundles. The first holds the shared organisations
(GP practice, hospital trust with wards and pharmacy, community pharmacy, ambulance trust, care
homes, home-care agency), their locations and staff; then one Bundle per person holds all of that
person's resources. Every entry is a PUT to "Type/id", so loading twice changes nothing and ids are
stable, and every reference is relative and resolves within the shared Bundle or the person's own.

Reproducible: the same (people, seed, today) gives byte-identical output. Person N draws from its
own ``Random(seed * 1_000_003 + N)``, so their record does not depend on how many people are
generated; a benchmark can ask for 100,000 people and get the 200-person demo as its first 200.
The community is described in ``people.py`` and the codes, with their sources, in ``codes.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from carerecord.demo.identifiers import MAX_PEOPLE
from carerecord.demo.shared import shared_resources
from carerecord.demo.timeline import person_resources

# The demo's "today": fixed so output is reproducible; pass ``today=date.today()`` for a live demo.
DEMO_TODAY = date(2026, 11, 23)
# Mean resources in a person's Bundle: 623,970 for people 0-19,999 (seed 2026, DEMO_TODAY), measured
# with ``b = generate(20000); next(b); sum(len(x["entry"]) for x in b) / 20000`` (31.198).
RESOURCES_PER_PERSON = 31.2
# Bumped whenever the same (people, seed, today) gives different output, so a cached community
# (benchmarks/search.py's community-<N>p-seed<S>-g<V>.db) is never mistaken for another version's.
# 1: the first generator (about 10.6 resources a person); 2: longitudinal records (about 31).
GENERATOR_VERSION = 2

__all__ = ["DEMO_TODAY", "GENERATOR_VERSION", "MAX_PEOPLE", "RESOURCES_PER_PERSON", "count_resources", "generate",
           "person_resources", "transaction"]


def transaction(resources: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that PUTs each resource to "Type/id" (idempotent, keeps ids)."""
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                      for r in resources]}


def generate(people: int = 200, seed: int = 2026, *, today: date = DEMO_TODAY) -> Iterator[dict[str, Any]]:
    """Yield FHIR R4 transaction Bundles: first the shared one, then one per person.

    Streams: one person's resources are in memory at a time. ``people`` may be 0 (only the
    shared Bundle) up to :data:`MAX_PEOPLE` (the capacity of the 999 test NHS number range as
    used here). Raises ValueError outside that range.
    """
    if not 0 <= people <= MAX_PEOPLE:
        raise ValueError(f"people must be between 0 and {MAX_PEOPLE}, not {people}")
    yield transaction(shared_resources(people, seed))
    for index in range(people):
        yield transaction(person_resources(index, seed, today))


def count_resources(people: int) -> int:
    """About how many resources :func:`generate` yields for ``people`` (for progress bars)."""
    shared = sum(1 for _ in shared_resources(people, 0))  # exact, and cheap (about 1% of the total)
    return shared + round(people * RESOURCES_PER_PERSON)
