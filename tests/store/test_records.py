"""Time formatting of the store's records against the standard library's own formatters."""

from datetime import UTC, datetime
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from carerecord.store.records import http_date, iso_instant

# 1970 to 9999: what a Last-Modified can hold
_US = st.integers(min_value=0, max_value=253_402_300_799_999_999)


@given(_US)
def test_http_date_is_rfc9110_imf_fixdate(us: int) -> None:
    expected = format_datetime(datetime.fromtimestamp(us // 1_000_000, UTC), usegmt=True)
    assert http_date(us) == expected


def test_http_date_example() -> None:
    assert http_date(1_795_428_000_123_456) == "Mon, 23 Nov 2026 10:00:00 GMT"


@given(st.integers(min_value=0, max_value=7_258_118_400_000_000))  # to 2200
def test_iso_instant_round_trips_to_the_microsecond(us: int) -> None:
    text = iso_instant(us)
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    since = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    assert (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds == us
