"""Keyset paging (http://hl7.org/fhir/R4/search.html#paging, http.html#paging).

A page link carries a cursor: the sort values and rid of the row it continues from, and a
direction. The next page is "rows after that position", never "skip N rows", so pages do not
drift when resources are created or deleted between requests, and the last page costs what
the first does. Sort keys are compared with NULLs last in both directions (the spec leaves
missing values to the server), and rid breaks ties so the order is total.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, false, or_

from carerecord.errors import Invalid

NEXT, PREV, LAST = "n", "p", "l"


@dataclass(frozen=True, slots=True)
class Cursor:
    direction: str  # NEXT: rows after the position; PREV: rows before it; LAST: the final page
    values: tuple[Any, ...] = ()
    rid: int = 0

    def encode(self) -> str:
        raw = orjson.dumps([self.direction, list(self.values), self.rid])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str | None) -> Cursor | None:
    """The cursor of a ``_cursor`` value; Invalid if it was not made by this server."""
    if not text:
        return None
    if text == "last":
        return Cursor(LAST)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        direction, values, rid = orjson.loads(raw)
        if direction not in (NEXT, PREV) or not isinstance(values, list) or not isinstance(rid, int):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise Invalid("The _cursor value is not one this server gave out", "_cursor") from None
    return Cursor(direction, tuple(values), rid)


def _after(key: ColumnElement[Any], value: Any, desc: bool) -> ColumnElement[bool]:
    """Rows whose key comes strictly after ``value`` in the (NULLS LAST) order."""
    if value is None:
        return false()
    return or_(key < value if desc else key > value, key.is_(None))


def _before(key: ColumnElement[Any], value: Any, desc: bool) -> ColumnElement[bool]:
    if value is None:
        return key.is_not(None)
    return key > value if desc else key < value


def _equal(key: ColumnElement[Any], value: Any) -> ColumnElement[bool]:
    return key.is_(None) if value is None else key == value


def position(keys: list[tuple[ColumnElement[Any], bool]], rid: ColumnElement[int],
             cursor: Cursor) -> ColumnElement[bool]:
    """Rows after (NEXT) or before (PREV) the cursor's position in the order of ``keys``
    (each (expression, descending)) then rid ascending."""
    if len(cursor.values) != len(keys):
        raise Invalid("The _cursor does not belong to this search", "_cursor")
    step = _after if cursor.direction == NEXT else _before
    clauses = []
    for i, (key, desc) in enumerate(keys):
        same = [_equal(k, v) for (k, _), v in zip(keys[:i], cursor.values[:i], strict=True)]
        clauses.append(and_(*same, step(key, cursor.values[i], desc)))
    same_all = [_equal(k, v) for (k, _), v in zip(keys, cursor.values, strict=True)]
    clauses.append(and_(*same_all, rid > cursor.rid if cursor.direction == NEXT else rid < cursor.rid))
    return or_(*clauses)


def order_by(keys: list[tuple[ColumnElement[Any], bool]], rid: ColumnElement[int],
             reverse: bool) -> list[ColumnElement[Any]]:
    """ORDER BY terms for the keys then rid, or the exact reverse (to read a page backwards)."""
    out: list[ColumnElement[Any]] = []
    for key, desc in keys:
        down = desc != reverse
        nulls_first = reverse  # NULLS LAST forwards means NULLS FIRST backwards
        term = key.desc() if down else key.asc()
        out.append(term.nulls_first() if nulls_first else term.nulls_last())
    out.append(rid.desc() if reverse else rid.asc())
    return out
