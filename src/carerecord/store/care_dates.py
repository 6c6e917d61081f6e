"""The care-date condition of ``Patient/$everything``'s ``start`` and ``end`` as SQL over the
date and token index rows (the table of care dates is :mod:`carerecord.fhir.care_dates`).

A resource's care period runs from the lowest value of its type's ``start`` parameter to the
highest of its ``end`` parameter (none recorded: it goes on), or of ``start`` itself when the type
has no ``end``; it goes on, whatever its dates, while its status is one of the ``ongoing`` ones.
The resource is in range when that period meets ``[low, high]``, or when it has no care date at
all. Each test is a correlated EXISTS on the ``(rid, pkey)`` index, so the compartment's rows,
which drive the search, are each checked with a seek, and the condition joins the plan like any
other: paging, cursors and the guard's restriction are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from sqlalchemy import ColumnElement, FromClause, and_, exists, literal, or_, select

from carerecord.fhir.care_dates import CARE_DATES
from carerecord.store import schema as s
from carerecord.store.search import unindexed


def care_condition(types: Iterable[str], low: int | None, high: int | None,
                   r: FromClause = s.resources) -> ColumnElement[bool] | None:
    """Rows of ``r`` (of ``types``) whose care period meets ``[low, high]`` (microseconds; None:
    open), or that have no care date; None when neither bound is given.

    Types whose care dates have the same shape (an end parameter or not, the same ongoing
    statuses) are tested together, with the index keys of all of them: a key names one type's
    parameter, so a resource's rows carry only its own type's keys. (One test per type made a
    statement of 38 KB that took 0.4 s to compile.)"""
    if low is None and high is None:
        return None
    types = sorted(set(types))
    undated = [t for t in types if t not in CARE_DATES]
    parts: list[ColumnElement[bool]] = [r.c.res_type.in_(undated)] if undated else []
    shapes: dict[tuple[bool, tuple[str, ...] | None], list[str]] = {}
    for t in types:
        spec = CARE_DATES.get(t)
        if spec is not None:
            shapes.setdefault((spec.end is not None, spec.ongoing[1] if spec.ongoing else None), []).append(t)
    for (has_end, statuses), group in sorted(shapes.items(), key=lambda x: x[1]):
        start = [s.param_key(t, CARE_DATES[t].start) for t in group]
        tests: list[ColumnElement[bool]] = []
        if high is not None:  # it began by the range's end
            tests.append(_dated(r, start, lambda d: d.low <= high))
        if low is not None:  # and had not ended before the range began
            if has_end:
                end = [s.param_key(t, CARE_DATES[t].end or "") for t in group]
                goes_on = [~_dated(r, end, None), _dated(r, end, lambda d: d.high >= low)]
            else:
                goes_on = [_dated(r, start, lambda d: d.high >= low)]
            if statuses is not None:
                keys = [s.param_key(t, (CARE_DATES[t].ongoing or ("", ()))[0]) for t in group]
                goes_on.append(_status(r, keys, statuses))
            tests.append(or_(*goes_on))
        parts.append(and_(r.c.res_type.in_(group), or_(~_dated(r, start, None), and_(*tests))))
    return or_(*parts)


class _Probe:
    """An index table's columns but ``rid`` made unindexable (``store.search.unindexed``), so
    each test seeks the candidate's own rows by rid. Left to choose, SQLite without statistics
    took ``ix_date_range (pkey=? AND low<?)`` for these probes: a walk of every date of the key."""

    def __init__(self, table: FromClause) -> None:
        self._cols = {c.name: unindexed(c) for c in table.c if c.name != "rid"}

    def __getattr__(self, name: str) -> Any:
        return self._cols[name]


def _exists(table: FromClause, r: FromClause, *conds: ColumnElement[bool]) -> ColumnElement[bool]:
    """A correlated probe (OFFSET 0 keeps PostgreSQL from turning it into a join it may run
    first, as ``store.search`` does for its probes)."""
    return exists(select(literal(1)).where(table.c.rid == r.c.rid, *conds)
                  .suffix_with("OFFSET 0", dialect="postgresql"))


def _dated(r: FromClause, pkeys: list[int], test: Callable[[Any], ColumnElement[bool]] | None) -> ColumnElement[bool]:
    """Whether the row of ``r`` has date index rows of ``pkeys`` (meeting ``test``, if given)."""
    d = s.idx_date.alias()
    probe = _Probe(d)
    conds: list[ColumnElement[bool]] = [_keys(probe.pkey, pkeys)]
    if test is not None:
        conds.append(test(probe))
    return _exists(d, r, *conds)


def _status(r: FromClause, pkeys: list[int], statuses: tuple[str, ...]) -> ColumnElement[bool]:
    t = s.idx_token.alias()
    probe = _Probe(t)
    return _exists(t, r, _keys(probe.pkey, pkeys), probe.code.in_(statuses))


def _keys(pkey: Any, pkeys: list[int]) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], pkey == pkeys[0] if len(pkeys) == 1 else pkey.in_(pkeys))
