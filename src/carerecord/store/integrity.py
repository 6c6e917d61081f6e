"""``carerecord check``: verifies the store's invariants.

* every resource's current version exists, versions run 1..n without gaps;
* the current content of every live resource parses, and its resourceType, id and
  meta.versionId match the row;
* deleted resources have no index or compartment rows; no index row points at a missing
  resource, nor at a contained resource (negative rid) that is no longer listed in ``contained``,
  whose rows belong to live containers;
* no live resource's current version is a SUBSETTED or REDACTED copy (a ``_summary`` or redacted read
  written back before writes refused it, hazard H054: what it left out is in earlier versions).
Each problem is reported as a sentence; the check never changes anything.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, and_, func, select

from carerecord.fhir import subsetted
from carerecord.store import schema as s

_R, _V = s.resources, s.resource_versions


def check_integrity(engine: Engine, *, limit: int = 100) -> tuple[list[str], dict[str, int]]:
    """(problems, counts). Stops listing after ``limit`` problems."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        counts["resources"] = conn.execute(select(func.count()).select_from(_R)).scalar_one()
        counts["live resources"] = conn.execute(
            select(func.count()).select_from(_R).where(_R.c.deleted.is_(False))).scalar_one()
        counts["versions"] = conn.execute(select(func.count()).select_from(_V)).scalar_one()
        for name, table in s.INDEX_TABLES.items():
            counts[f"{name} index rows"] = conn.execute(select(func.count()).select_from(table)).scalar_one()

        gaps = conn.execute(
            select(_V.c.rid, func.count(), func.max(_V.c.version)).group_by(_V.c.rid)
            .having(func.count() != func.max(_V.c.version))).all()
        problems += [f"resource rid {r[0]} has {r[1]} versions but its newest is {r[2]}" for r in gaps]
        missing = conn.execute(
            select(_R.c.res_type, _R.c.res_id, _R.c.version).select_from(
                _R.outerjoin(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version)))
            .where(_V.c.rid.is_(None))).all()
        problems += [f"{t}/{i} has no row for its current version {v}" for t, i, v in missing]

        counts["contained resources"] = conn.execute(select(func.count()).select_from(s.contained)).scalar_one()
        # A contained resource's rows hang off its surrogate (negative) rid in ``contained``,
        # whose container must be a live resource (schema.contained).
        for table in (*s.INDEX_TABLES.values(), s.compartments, s.contained):
            rid = s.contained.c.container if table is s.contained else table.c.rid
            orphans = conn.execute(
                select(func.count()).select_from(table.outerjoin(_R, _R.c.rid == rid))
                .where(rid >= 0, (_R.c.rid.is_(None)) | (_R.c.deleted.is_(True)))).scalar_one()
            if table is not s.contained and table is not s.compartments:
                c = s.contained
                orphans += conn.execute(
                    select(func.count()).select_from(table.outerjoin(c, c.c.rid == table.c.rid))
                    .where(table.c.rid < 0, c.c.rid.is_(None))).scalar_one()
            if orphans:
                problems.append(f"{orphans} row(s) in {table.name} belong to missing or deleted resources")

        rows = conn.execution_options(yield_per=2000).execute(
            select(_R.c.res_type, _R.c.res_id, _R.c.version, _V.c.content)
            .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
            .where(_R.c.deleted.is_(False)))
        for t, i, v, content in rows:
            if len(problems) >= limit:
                break
            problems += _content_problems(t, i, v, content)
    return problems[:limit], counts


def _content_problems(t: str, i: str, v: int, content: bytes | None) -> list[str]:
    if content is None:
        return [f"{t}/{i} is live but version {v} has no content"]
    try:
        doc: Any = orjson.loads(content)
    except orjson.JSONDecodeError:
        return [f"{t}/{i} version {v} is not valid JSON"]
    out = []
    if doc.get("resourceType") != t or doc.get("id") != i:
        out.append(f"{t}/{i} version {v} holds {doc.get('resourceType')}/{doc.get('id')}")
    if (doc.get("meta") or {}).get("versionId") != str(v):
        out.append(f"{t}/{i} version {v} says meta.versionId {(doc.get('meta') or {}).get('versionId')}")
    if subsetted.marked(content) and subsetted.locations(doc):
        out.append(f"{t}/{i} version {v} is a SUBSETTED or REDACTED (summary or redacted) copy written back: "
                   "what it left out is in its earlier versions (hazard H054)")
    return out
