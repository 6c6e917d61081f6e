"""Values the store hands back: a stored version of a resource, and time helpers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def iso_instant(us: int) -> str:
    """A FHIR ``instant`` for a microsecond timestamp, e.g. 2026-11-23T10:00:00.123456Z."""
    return f"{_iso_second(us // 1_000_000)}.{us % 1_000_000:06d}Z"


@lru_cache(maxsize=256)  # every Bundle's timestamp, every write's lastUpdated: seconds repeat
def _iso_second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(us: int) -> str:
    """An HTTP date (RFC 9110 IMF-fixdate, e.g. ``Mon, 23 Nov 2026 10:00:00 GMT``) for a
    microsecond timestamp, for Last-Modified. Formatted here: ``email.utils.format_datetime``
    cost 6% of a read's CPU (py-spy, 2026-11-23)."""
    t = time.gmtime(us // 1_000_000)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of one resource as stored. ``content`` is the exact JSON served; None when
    this version is a deletion."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    deleted: bool
    content: bytes | None
    method: str = ""
    # The Patient compartments it is in, where the read that found it looked them up
    # (Repository.read does): the audit trail's patients without parsing the content.
    patients: tuple[str, ...] | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def location(self) -> str:
        return f"{self.res_type}/{self.res_id}/_history/{self.version}"

    @property
    def last_modified(self) -> str:
        return http_date(self.last_updated)
