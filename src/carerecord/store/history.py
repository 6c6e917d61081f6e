"""History of resources at instance, type and system level (http://hl7.org/fhir/R4/http.html#history).

Versions are listed newest first, ordered by (last_updated, rid, version) descending. Pages are
cut with a keyset cursor (the position of the last entry shown), not an offset, so a page link
keeps pointing at the same versions while new ones are written."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, and_, exists, func, or_, select
from sqlalchemy.orm import aliased

from carerecord.errors import NotFound
from carerecord.store import schema as s
from carerecord.store.records import Stored

_R, _V = s.resources, s.resource_versions


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: list[Stored]
    next_cursor: tuple[int, int, int] | None
    total: int | None


def history(engine: Engine, res_type: str | None = None, res_id: str | None = None, *,
            since: int | None = None, at: tuple[int, int] | None = None, count: int = 50,
            cursor: tuple[int, int, int] | None = None) -> HistoryPage:
    """Versions of one resource (type and id), of one type (type only) or of all (neither).

    ``since``: versions written at or after it. ``at``: (low, high) of a time: versions that
    were current at some point in it. ``cursor``: continue after this (last_updated, rid,
    version). Instance history of an unknown resource is NotFound."""
    q = (select(_R.c.res_type, _R.c.res_id, _V.c.rid, _V.c.version, _V.c.last_updated,
                _V.c.deleted, _V.c.content, _V.c.method)
         .join(_R, _R.c.rid == _V.c.rid))
    conds = []
    if res_type is not None:
        conds.append(_V.c.res_type == res_type)
    if res_id is not None:
        conds.append(_R.c.res_id == res_id)
    if since is not None:
        conds.append(_V.c.last_updated >= since)
    if at is not None:
        later = aliased(_V)
        conds.append(_V.c.last_updated <= at[1])
        conds.append(~exists().where(and_(later.c.rid == _V.c.rid, later.c.version > _V.c.version,
                                          later.c.last_updated <= at[0])))
    base_conds = list(conds)
    if cursor is not None:
        lu, rid, ver = cursor  # (lu, rid, version) < cursor, spelt out so indexes on lu are used
        conds.append(_V.c.last_updated <= lu)
        conds.append(or_(_V.c.last_updated < lu, and_(_V.c.last_updated == lu, or_(
            _V.c.rid < rid, and_(_V.c.rid == rid, _V.c.version < ver)))))
    q = q.where(*conds).order_by(_V.c.last_updated.desc(), _V.c.rid.desc(), _V.c.version.desc())
    with engine.connect() as conn:
        rows = conn.execute(q.limit(count + 1)).all()
        total = None
        if res_id is not None:
            total = conn.execute(select(func.count()).select_from(_V.join(_R, _R.c.rid == _V.c.rid))
                                 .where(*base_conds)).scalar_one()
            if total == 0 and cursor is None:
                known = conn.execute(select(_R.c.rid).where(_R.c.res_type == res_type,
                                                            _R.c.res_id == res_id)).first()
                if known is None:
                    raise NotFound(f"{res_type}/{res_id} is not known")
    more = len(rows) > count
    rows = rows[:count]
    entries = [Stored(r.res_type, r.res_id, r.version, r.last_updated, r.deleted, r.content, r.method)
               for r in rows]
    nxt = (rows[-1].last_updated, rows[-1].rid, rows[-1].version) if more and rows else None
    return HistoryPage(entries, nxt, total)
