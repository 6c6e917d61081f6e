"""When doses fall due on a given day, from a Dosage's FHIR Timing
(http://hl7.org/fhir/R4/datatypes.html#Timing): ``timeOfDay``, ``when`` (with ``offset``),
``frequency``/``period``/``periodUnit`` (with ``dayOfWeek``), explicit ``event`` times, and
``boundsPeriod``/``boundsDuration``; ``asNeeded`` doses have no due times (PRN).

A frequency without clock times is laid on the ward's drug-round times (:data:`ROUND_TIMES`:
once daily 08:00; twice 08:00 and 20:00; three times 08:00, 14:00, 22:00; four times 08:00,
12:00, 18:00, 22:00), and an interval in hours runs from 06:00. ``when`` events map to
:data:`EVENT_TIMES` (morning 08:00, night 22:00, meals at 08:00/12:30/18:00...). These are a
site's choices: a deployment with other round times changes the two tables. Times are local
wall-clock times of the ward (``Europe/London`` by default), so a dose due at 08:00 stays due at
08:00 across the clock change. ``count``/``countMax`` (a limited number of doses) are not
enforced here: the prescriber stops the order when the course ends."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from carerecord.services.medicines.dosage import listed

WARD_TIME = ZoneInfo("Europe/London")
ROUND_TIMES: dict[int, tuple[int, ...]] = {1: (480,), 2: (480, 1200), 3: (480, 840, 1320),
                                           4: (480, 720, 1080, 1320), 5: (360, 600, 840, 1080, 1320),
                                           6: (120, 360, 600, 840, 1080, 1320)}
"""Minutes after midnight of the drug rounds for n doses a day."""
EVENT_TIMES: dict[str, tuple[int, ...]] = {
    "WAKE": (420,), "MORN": (480,), "MORN.early": (420,), "MORN.late": (600,), "NOON": (720,),
    "AFT": (840,), "AFT.early": (780,), "AFT.late": (960,), "EVE": (1080,), "EVE.early": (1020,),
    "EVE.late": (1200,), "NIGHT": (1320,), "PHS": (1320,), "HS": (1320,),
    "C": (480, 750, 1080), "CM": (480,), "CD": (750,), "CV": (1080,),
    "AC": (450, 720, 1050), "ACM": (450,), "ACD": (720,), "ACV": (1050,),
    "PC": (510, 780, 1110), "PCM": (510,), "PCD": (780,), "PCV": (1110,)}
"""Minutes after midnight for Timing.repeat.when events (EventTiming codes)."""
_DAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MINUTES = {"min": 1, "h": 60}
_DAYS = {"d": 1, "wk": 7, "mo": 30, "a": 365}


@dataclass(frozen=True, slots=True)
class Schedule:
    """The due times of one dosage line on one day; ``as_needed`` lines have none."""

    times: tuple[datetime, ...]
    as_needed: bool


def _parse(value: Any, zone: tzinfo) -> datetime | None:
    """A FHIR date or dateTime as an aware datetime (a date or naive time in ``zone``)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else \
            datetime.combine(date.fromisoformat(value[:10]), time(0))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=zone)


def start_of(order: Mapping[str, Any], zone: tzinfo = WARD_TIME) -> datetime | None:
    """When the order starts: its timing's ``boundsPeriod.start``, else when it was authored."""
    for dosage in listed(order.get("dosageInstruction")):
        bounds = ((dosage.get("timing") or {}).get("repeat") or {}).get("boundsPeriod") or {}
        found = _parse(bounds.get("start"), zone)
        if found:
            return found
    return _parse(order.get("authoredOn"), zone)


def _clock(value: str) -> int | None:
    parts = value.split(":")
    try:
        return int(parts[0]) * 60 + int(parts[1])
    except (ValueError, IndexError):
        return None


def _minutes(repeat: Mapping[str, Any]) -> tuple[int, ...]:
    """Clock minutes of the doses on a day the line is due."""
    clock = tuple(m for m in (_clock(str(t)) for t in repeat.get("timeOfDay", ())) if m is not None)
    if clock:
        return clock
    events = [m + int(repeat.get("offset") or 0) for w in repeat.get("when", ()) for m in EVENT_TIMES.get(str(w), ())]
    if events:
        return tuple(sorted(e % 1440 for e in events))
    unit, period = str(repeat.get("periodUnit", "d")), float(repeat.get("period") or 1)
    freq = int(repeat.get("frequencyMax") or repeat.get("frequency") or 1)
    if unit in _MINUTES:
        step = max(int(period * _MINUTES[unit] / max(freq, 1)), 15)
        return tuple(range(360 % step, 1440, step))
    per_day = freq if unit == "d" and period == 1 else 1
    return ROUND_TIMES.get(per_day, ROUND_TIMES[1] if per_day < 1 else tuple(range(0, 1440, 1440 // per_day)))


def _due_today(repeat: Mapping[str, Any], day: date, start: date | None) -> bool:
    """Whether a line whose period is a day or longer falls on ``day``."""
    days = [d for d in repeat.get("dayOfWeek", ()) if d in _DAY_CODES]
    if days:
        return _DAY_CODES[day.weekday()] in days
    unit, period = str(repeat.get("periodUnit", "d")), float(repeat.get("period") or 1)
    if unit not in _DAYS:
        return True
    every = int(round(period * _DAYS[unit]))
    if every <= 1 or start is None:
        return True
    return (day - start).days % every == 0


def schedule(dosage: Mapping[str, Any], day: date, start: datetime | None = None,
             zone: tzinfo = WARD_TIME) -> Schedule:
    """The due times on ``day`` (ward wall-clock ``zone``) of one dosage line of an order that
    started at ``start``. No times before ``start`` nor outside the timing's bounds."""
    timing: Mapping[str, Any] = next(iter(listed(dosage.get("timing"))), {})
    repeat: Mapping[str, Any] = next(iter(listed(timing.get("repeat"))), {})
    as_needed = bool(dosage.get("asNeededBoolean")) or "asNeededCodeableConcept" in dosage
    bounds = repeat.get("boundsPeriod") or {}
    begin = _parse(bounds.get("start"), zone) or start
    end = _parse(bounds.get("end"), zone)
    duration = repeat.get("boundsDuration") or {}
    if begin and isinstance(duration.get("value"), int | float) and duration.get("code", duration.get("unit")) in _DAYS:
        end = begin + timedelta(days=float(duration["value"]) * _DAYS[str(duration.get("code", duration.get("unit")))])
    if as_needed:
        return Schedule((), True)
    events = [e for e in (_parse(v, zone) for v in timing.get("event", ())) if e is not None]
    if events:
        times = [e for e in events if e.astimezone(zone).date() == day]
    elif not _due_today(repeat, day, begin.astimezone(zone).date() if begin else None):
        times = []
    else:
        times = [datetime.combine(day, time(m // 60, m % 60), zone) for m in _minutes(repeat)]
    kept = tuple(t for t in times if (begin is None or t >= begin - timedelta(minutes=1)) and (end is None or t < end))
    return Schedule(kept, False)
