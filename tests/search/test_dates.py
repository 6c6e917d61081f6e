"""Date search (http://hl7.org/fhir/R4/search.html#date): prefixes on ranges, the precision of
partial dates, datetimes with timezones and Periods, compared with the oracle."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
Choose = Callable[[Sequence[Any]], Any]


def date_text(choose: Choose, *, tz_required: bool, precisions: Sequence[str]) -> str:
    """A date/dateTime near a few boundaries (year and month ends, leap day, midnight),
    at a random precision and timezone."""
    y, m, d = choose([(2019, 12, 31), (2020, 1, 1), (2020, 2, 28), (2020, 2, 29), (2020, 3, 1),
                      (2020, 6, 15), (2020, 12, 31), (2021, 1, 1)])
    precision = choose(precisions)
    if precision == "year":
        return f"{y}"
    if precision == "month":
        return f"{y}-{m:02d}"
    if precision == "day":
        return f"{y}-{m:02d}-{d:02d}"
    hh, mm = choose([(0, 0), (0, 30), (12, 0), (23, 30), (23, 59)])
    zones = ["Z", "+01:00", "-05:00", "+14:00", "-12:00"] + ([] if tz_required else [""])
    tz = choose(zones)
    if precision == "minute":
        return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}{tz}"
    ss = choose([0, 59])
    if precision == "second":
        return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}{tz}"
    return f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}.{choose(['0', '5', '250', '999'])}{tz}"


ALL = ("year", "month", "day", "minute", "second", "fraction")


def observation(i: int, **effective: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final",
            "code": {"text": "x"}, **effective}


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(4101)
    out: list[dict[str, Any]] = []
    for i in range(40):
        kind = rng.choice(["dateTime", "dateTime", "period", "instant"])
        if kind == "dateTime":
            out.append(observation(i, effectiveDateTime=date_text(
                rng.choice, tz_required=True, precisions=("year", "month", "day", "second"))))
        elif kind == "instant":
            out.append(observation(i, effectiveInstant=date_text(
                rng.choice, tz_required=True, precisions=("second", "fraction"))))
        else:
            a = date_text(rng.choice, tz_required=True, precisions=("year", "month", "day", "second"))
            b = date_text(rng.choice, tz_required=True, precisions=("year", "month", "day", "second"))
            lo, hi = sorted([a, b], key=lambda t: oracle.date_span(t).start)  # type: ignore[arg-type, return-value]
            period = rng.choice([{"start": lo, "end": hi}, {"start": lo}, {"end": hi}])
            out.append(observation(i, effectivePeriod=period))
    out.append(observation(100))  # no date at all
    # Hand-made edge cases (named so the explicit tests can refer to them).
    out += [
        observation(101, effectiveDateTime="2020"),
        observation(102, effectiveDateTime="2020-03"),
        observation(103, effectiveDateTime="2020-03-04"),
        observation(104, effectiveDateTime="2020-03-04T23:30:00-05:00"),  # 2020-03-05T04:30Z
        observation(105, effectiveDateTime="2020-03-05T00:30:00+01:00"),  # 2020-03-04T23:30Z
        observation(106, effectivePeriod={"start": "2020-03-01", "end": "2020-03-31"}),
        observation(107, effectivePeriod={"start": "2020-03-04T10:00:00Z"}),  # ongoing
        observation(108, effectivePeriod={"end": "2019-06"}),
        observation(109, effectiveInstant="2020-03-04T12:00:00.250Z"),
    ]
    for i, born in enumerate(["2020", "2020-03", "2020-03-04", "2019-12-31", "2021-01-01", "1950-07-15"]):
        out.append({"resourceType": "Patient", "id": f"p{i}", "birthDate": born})
    out.append({"resourceType": "Patient", "id": "p-none"})
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


@pytest.mark.parametrize(("value", "expected"), [
    ("2020", {"p0", "p1", "p2"}),  # the year contains each of its months and days
    ("2020-03", {"p1", "p2"}),  # but not the whole year 2020
    ("2020-03-04", {"p2"}),
    ("eq2020-03-04", {"p2"}),
    ("ne2020-03", {"p0", "p3", "p4", "p5"}),
    ("gt2020-03-04", {"p0", "p1", "p4"}),  # ranges reaching past the day
    ("ge2020-03-04", {"p0", "p1", "p2", "p4"}),
    ("lt2020", {"p3", "p5"}),
    ("le2020", {"p0", "p1", "p2", "p3", "p5"}),
    ("sa2020", {"p4"}),
    ("eb2020-03", {"p3", "p5"}),
    ("gt2019-12-31T23:59:59Z", {"p0", "p1", "p2", "p4"}),
])
def test_partial_dates_are_ranges(db: Fhir, data: oracle.Oracle, value: str, expected: set[str]) -> None:
    assert check(db, data, "Patient", [("birthdate", value)]) == expected


def test_datetimes_compare_in_utc_whatever_their_timezone(db: Fhir, data: oracle.Oracle) -> None:
    day4 = check(db, data, "Observation", [("date", "2020-03-04")])
    assert {"o103", "o105", "o109"} <= day4 and "o104" not in day4
    day5 = check(db, data, "Observation", [("date", "2020-03-05")])
    assert "o104" in day5 and "o105" not in day5
    assert "o104" in check(db, data, "Observation", [("date", "2020-03-05T04:30:00Z")])
    assert "o104" in check(db, data, "Observation", [("date", "2020-03-05T05:30:00+01:00")])
    assert "o104" not in check(db, data, "Observation", [("date", "2020-03-04T23:30:00Z")])


def test_an_instant_is_matched_to_the_millisecond(db: Fhir, data: oracle.Oracle) -> None:
    assert "o109" in check(db, data, "Observation", [("date", "2020-03-04T12:00:00Z")])
    assert "o109" in check(db, data, "Observation", [("date", "2020-03-04T12:00:00.25Z")])
    assert "o109" not in check(db, data, "Observation", [("date", "2020-03-04T12:00:00.251Z")])


def test_periods_match_by_overlap_and_open_ends_are_unbounded(db: Fhir, data: oracle.Oracle) -> None:
    assert "o106" in check(db, data, "Observation", [("date", "2020-03")])  # contained in March
    assert "o106" not in check(db, data, "Observation", [("date", "2020-03-04")])  # not in one day
    assert "o106" in check(db, data, "Observation", [("date", "gt2020-03-04")])  # overlaps after
    assert "o106" in check(db, data, "Observation", [("date", "lt2020-03-04")])  # and before
    assert "o107" in check(db, data, "Observation", [("date", "gt2999")])  # ongoing: no end
    assert "o107" not in check(db, data, "Observation", [("date", "2020")])  # never contained
    assert "o107" in check(db, data, "Observation", [("date", "sa2020-03-04T09:59:59Z")])
    assert "o108" in check(db, data, "Observation", [("date", "lt1900")])  # no start
    assert "o108" in check(db, data, "Observation", [("date", "eb2019-07")])
    assert "o108" not in check(db, data, "Observation", [("date", "eb2019-06-30")])


def test_no_value_never_matches_a_prefix_but_is_found_by_missing(db: Fhir, data: oracle.Oracle) -> None:
    for prefix in PREFIXES:
        assert "o100" not in check(db, data, "Observation", [("date", f"{prefix}2020")])
    assert check(db, data, "Patient", [("birthdate:missing", "true")]) == {"p-none"}
    assert "p-none" not in check(db, data, "Patient", [("birthdate:missing", "false")])


def test_ap_matches_values_near_the_date(db: Fhir, data: oracle.Oracle) -> None:
    got = check(db, data, "Patient", [("birthdate", "ap2020-03-04")])
    assert "p2" in got and "p5" not in got


def test_and_of_repeats_and_or_of_commas(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("birthdate", "ge2020-01-01"), ("birthdate", "lt2020-12-31")]) \
        == {"p0", "p1", "p2"}
    assert check(db, data, "Patient", [("birthdate", "2019-12-31,2021")]) == {"p3", "p4"}
    check(db, data, "Observation", [("date", "ge2020-02"), ("date", "le2020-03-01"), ("date", "ne2020-02-29")])


@FEW
@given(st.data())
def test_random_dates_and_prefixes_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, draw: st.DataObject) -> None:
    def choose(seq: Sequence[Any]) -> Any:
        return draw.draw(st.sampled_from(list(seq)))

    prefix = choose(PREFIXES)
    value = date_text(choose, tz_required=False, precisions=ALL)
    check(db, data, "Observation", [("date", f"{prefix}{value}")])


@FEW
@given(st.data())
def test_random_or_and_and_of_dates_agree_with_the_oracle(db: Fhir, data: oracle.Oracle,
                                                          draw: st.DataObject) -> None:
    def choose(seq: Sequence[Any]) -> Any:
        return draw.draw(st.sampled_from(list(seq)))

    def one() -> str:
        return choose(PREFIXES[:8]) + date_text(choose, tz_required=False, precisions=ALL)

    pairs = [("date", ",".join(one() for _ in range(choose([1, 2, 3])))) for _ in range(choose([1, 2]))]
    check(db, data, "Observation", pairs)


@pytest.mark.parametrize("value", ["2023-02-30", "2023-13", "2021-02-29", "2020-01-01T25:00Z",
                                   "2020-01-01T10:61Z", "yesterday", "2020-1-1", "ge", "gt20x0",
                                   "2020-01-01T10:00+25:00"])
def test_impossible_or_malformed_dates_are_400_naming_the_value(db: Fhir, value: str) -> None:
    message = db.error("Observation", {"date": value})
    assert "date" in message.lower() or value in message


def test_a_bad_date_in_an_or_list_is_400_too(db: Fhir) -> None:
    assert "2023-02-30" in db.error("Patient", {"birthdate": "2020,2023-02-30"})
