"""The per-person resource collector and the small helpers every builder shares."""

from __future__ import annotations

from datetime import date, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from carerecord.demo.people import Person

if TYPE_CHECKING:
    from carerecord.demo.health import Health


@cache
def _bst(year: int) -> tuple[date, date]:
    """First and last day of British Summer Time (last Sunday of March to last Sunday of October)."""
    march, october = date(year, 3, 31), date(year, 10, 31)
    return (march - timedelta(days=(march.weekday() + 1) % 7),
            october - timedelta(days=(october.weekday() + 1) % 7))


def stamp(day: date, minute_of_day: int) -> str:
    """A FHIR dateTime in UK local time with its offset (+00:00 in winter, +01:00 in summer)."""
    start, end = _bst(day.year)
    offset = "+01:00" if start <= day < end else "+00:00"
    return f"{day.isoformat()}T{minute_of_day // 60:02d}:{minute_of_day % 60:02d}:00{offset}"


def weekday(day: date, *, later: bool = False) -> date:
    """The day itself if a weekday, else the Friday before (or with ``later`` the Monday after):
    surgeries are shut at weekends. Past events move earlier so they never reach today."""
    wd = day.weekday()
    if wd < 5:
        return day
    return day + timedelta(days=7 - wd) if later else day - timedelta(days=wd - 4)


def ref(resource_type: str, rid: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{rid}"}


class Record:
    """All resources of one person, in the order they go into the person's Bundle, and the
    facts later parts of the record need from earlier ones (when each condition began)."""

    __slots__ = ("person", "resources", "_counts", "patient_ref", "onsets", "health", "medicines")

    def __init__(self, person: Person) -> None:
        self.person = person
        self.resources: list[dict[str, Any]] = []
        self._counts: dict[str, int] = {}
        self.patient_ref = f"Patient/{person.pid}"
        self.onsets: dict[str, date] = {}  # long-term condition key -> onset
        self.health: Health | None = None  # drawn by timeline (health.draw) before any measurement
        self.medicines: list[tuple[str, str]] = []  # long-term (medicine key, condition key), repeats.choose

    def new_id(self, kind: str) -> str:
        """The next id for a resource of ``kind`` (e.g. "cond" -> demo-000007-cond-2)."""
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        return self.person.rid(kind, n)

    def subject(self) -> dict[str, str]:
        """A fresh Reference to the person's Patient."""
        return {"reference": self.patient_ref}

    def add(self, resource: dict[str, Any]) -> dict[str, Any]:
        self.resources.append(resource)
        return resource
