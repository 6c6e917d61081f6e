"""FHIR date, dateTime and instant values as ranges of microseconds since the epoch (UTC).

Search compares ranges (http://hl7.org/fhir/R4/search.html#date): "2020" means the whole of
2020, "2020-03-04T10:00" the whole of that minute. A value without a timezone is taken as UTC
(a documented server choice: the spec leaves it to the server)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta, timezone

MIN_US = -62135596800_000000  # 0001-01-01T00:00:00Z
MAX_US = 253402300799_999999  # 9999-12-31T23:59:59.999999Z

_RX = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(dt: datetime) -> int:
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def date_range(value: str) -> tuple[int, int]:
    """The inclusive (low, high) microsecond range a FHIR date/dateTime/instant covers.

    Raises ValueError for text that is not such a value or names an impossible date."""
    m = _RX.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a valid FHIR date or dateTime")
    y = int(m["y"])
    if m["m"] is None:
        lo = datetime(y, 1, 1, tzinfo=UTC)
        return _us(lo), _us(datetime(y, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    mo = int(m["m"])
    if not 1 <= mo <= 12:
        raise ValueError(f"{value!r} has month {mo}")
    if m["d"] is None:
        last = calendar.monthrange(y, mo)[1]
        return (_us(datetime(y, mo, 1, tzinfo=UTC)),
                _us(datetime(y, mo, last, 23, 59, 59, 999999, tzinfo=UTC)))
    d = int(m["d"])
    if m["H"] is None:
        start = datetime(y, mo, d, tzinfo=UTC)  # ValueError on 2023-02-30
        return _us(start), _us(start) + 86400_000000 - 1
    tz = UTC
    if m["tz"] and m["tz"] != "Z":
        sign = 1 if m["tz"][0] == "+" else -1
        hh, mm = int(m["tz"][1:3]), int(m["tz"][4:6])
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    hour, minute = int(m["H"]), int(m["M"])
    if hour == 24:
        raise ValueError(f"{value!r} has hour 24")
    if m["S"] is None:
        start = datetime(y, mo, d, hour, minute, tzinfo=tz)
        return _us(start), _us(start) + 60_000000 - 1
    sec = int(m["S"])
    frac = m["f"] or ""
    micro = int((frac + "000000")[:6]) if frac else 0
    start = datetime(y, mo, d, hour, minute, min(sec, 59), micro, tzinfo=tz)
    if not frac:
        return _us(start), _us(start) + 1_000000 - 1
    width = 10 ** max(0, 6 - len(frac))
    return _us(start), _us(start) + width - 1
