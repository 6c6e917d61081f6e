"""Custom search parameters and reindexing.

SearchParameter resources written to the store become part of the repository's registry:
at start-up (:func:`load_custom_parameters`) and as soon as one is written, so new writes index
them at once. ``carerecord reindex`` (:func:`reindex`) then rebuilds the index rows of the
resources already stored (``_text`` and ``_content`` words and contained resources included), so older data is found by
the new parameter too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import and_, select

from carerecord.errors import Invalid
from carerecord.fhir.indexing import extract, patient_compartments
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.store import schema as s
from carerecord.store.prepare import Prepared, extra_rows

_R, _V = s.resources, s.resource_versions


def check_search_parameter(resource: dict[str, Any]) -> None:
    """Refuse a SearchParameter the registry could not use (bad code, base or expression)."""
    try:
        SearchParamRegistry(params=()).add(resource)
    except Invalid as err:
        raise Invalid(f"This SearchParameter cannot be used for searching: {err.message}",
                      err.issues[0].expression) from None


def stored_search_parameters(engine: Any) -> list[dict[str, Any]]:
    """Every live SearchParameter resource in the store."""
    with engine.connect() as conn:
        rows = conn.execute(select(_V.c.content).join(
            _R, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
            .where(_R.c.res_type == "SearchParameter", _R.c.deleted.is_(False))).scalars()
        return [orjson.loads(content) for content in rows]


def add_custom_parameters(registry: SearchParamRegistry, docs: list[dict[str, Any]]) -> int:
    """Add the SearchParameters whose URL is not an official one (or whose expression
    differs) to ``registry``; returns how many were added."""
    added = 0
    for doc in docs:
        known = registry.by_url(doc.get("url", ""))
        if known is None or known.expression != doc.get("expression"):
            try:
                registry.add(doc)
                added += 1
            except Invalid:
                continue  # stored before it was checked: skipped
    return added


def load_custom_parameters(repo: Any) -> int:
    """Add every stored custom SearchParameter to the repository's registry."""
    return add_custom_parameters(repo.registry, stored_search_parameters(repo.engine))


def reindex(repo: Any, types: list[str] | None = None, *, batch: int = 1000,
            progress: Callable[[int], None] | None = None) -> int:
    """Rebuild index and compartment rows of all live resources (of ``types`` if given), in
    batches of ``batch``, each batch one transaction. Returns the number reindexed."""
    done = 0
    last = 0
    while True:
        q = (select(_R.c.rid, _R.c.res_type, _R.c.res_id, _R.c.version, _R.c.last_updated, _V.c.content)
             .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
             .where(_R.c.deleted.is_(False), _R.c.rid > last).order_by(_R.c.rid).limit(batch))
        if types:
            q = q.where(_R.c.res_type.in_(types))
        with repo.unit() as unit:
            rows = unit.conn.execute(q).all()
            if not rows:
                return done
            pairs = []
            for rid, t, i, v, lu, content in rows:
                doc = orjson.loads(content)
                indexed = extra_rows(extract(doc, repo.registry), doc, repo.registry)
                pairs.append((rid, Prepared(t, i, v, lu, doc, content, indexed, patient_compartments(doc))))
            unit._drop_indexes([rid for rid, _ in pairs])
            unit._insert_indexes(pairs)
        done += len(rows)
        last = rows[-1].rid
        if progress:
            progress(len(rows))
