"""Searching contained resources: ``_contained`` and ``_containedType``
(http://hl7.org/fhir/R4/search.html#contained).

Contained resources are indexed at write time like resources, under surrogate rids and keys of
their own (``schema.contained``), so they are matched by their own search parameters and no
ordinary search ever meets them. ``_contained=true`` searches them instead of resources,
``both`` searches both. ``_containedType=contained`` (this server's default) returns each
matching contained resource alone, as the spec suggests with the fullUrl of its container
followed by ``#id``; ``container`` returns the containers instead (resources of other types than
the one searched, as the spec allows).

Everything about the container's row goes through the searcher's own ``plan`` (live, in the
compartment searched, and, for a guarded searcher, inside what the caller may see), so a
contained resource is never found through a container its caller could not find; the guard
then judges each contained match by its container (``access/guard.py``).

Pages are keyset pages on one key: a contained resource's (negative) surrogate rid, a
resource's rid, so ``both`` lists the contained matches, then the others, in one order.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    String,
    and_,
    cast,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)

from carerecord.fhir import model
from carerecord.fhir.search_query import Query
from carerecord.store import paging
from carerecord.store import schema as s
from carerecord.store.search import Hit, Searcher, SearchResult, rank

_C, _R, _V = s.contained, s.resources, s.resource_versions


def run_contained(searcher: Searcher, conn: Connection, q: Query, count: int) -> SearchResult:
    """One page of a search with ``_contained`` true or both (see the module docstring), and
    its total when asked for, and its ``_include``/``_revinclude`` (of containers as of any
    resource; of contained resources returned alone by :func:`forward_from_contained` and
    :func:`reverse_to_contained`). ``q`` was checked by ``search_query.parse``: no _list,
    _lastUpdated or _sort with _contained."""
    page, total = queries(searcher, q, count)
    cursor = paging.decode(q.cursor)
    reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
    rows = list(conn.execute(page).all())
    more = len(rows) > count
    rows = rows[:count]
    if reverse:
        rows.reverse()
    result = SearchResult([_hit(row) for row in rows])
    if rows:
        has_next = more if not reverse else cursor is not None and cursor.direction == paging.PREV
        has_prev = (cursor is not None) if not reverse else more
        result.next_cursor = paging.Cursor(paging.NEXT, (), rows[-1][0]).encode() if has_next else None
        result.prev_cursor = paging.Cursor(paging.PREV, (), rows[0][0]).encode() if has_prev else None
    if q.total in ("accurate", "estimate") or q.summary == "count":
        result.total = int(conn.execute(total).scalar_one())
    if q.include or q.revinclude:
        result.included = searcher.includes(conn, q, result.matches)
    return result


def queries(searcher: Searcher, q: Query, count: int) -> tuple[Select[Any], Select[Any]]:
    """The SELECTs of one page (rows: key, contained type and id or NULLs, the resource's or
    container's rid, type, id and content; up to ``count + 1``, in page order) and of the count."""
    matched = _matched(searcher, q)
    # The container's row: live, in the compartment, and what the searcher's plan allows.
    host = searcher.plan(Query((), compartment=q.compartment)).conds
    plain = searcher.where(q) if q.contained == "both" else None
    cursor = paging.decode(q.cursor)
    reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
    if q.contained_type == "container":
        return _containers(matched, host, plain, cursor, reverse, count)
    return _contained(matched, host, plain, cursor, reverse, count)


def _matched(searcher: Searcher, q: Query) -> ColumnElement[bool]:
    """The contained resources (rows of ``contained``) of the searched types that satisfy every
    clause, each clause compiled against their own index rows (``schema.contained_key``)."""
    compiler = searcher.compiler  # on rows of contained: the contained keys (search.key_of)
    if not q.res_types and not q.clauses:
        return true()
    per_type = []
    for t in q.res_types or tuple(sorted(model.resource_types())):
        if any(c.param is not None and c.has is None and searcher.registry.get(t, c.param.code) is None
               for c in q.clauses):
            continue
        ordered = sorted(q.clauses, key=rank)  # the most selective drives, the others probe
        per_type.append(and_(_C.c.res_type == t, *[compiler.predicate(c, t, _C, probe=i > 0)
                                                    for i, c in enumerate(ordered)]))
    return or_(*per_type) if per_type else false()


def _contained(matched: ColumnElement[bool], host: list[ColumnElement[bool]],
               plain: list[ColumnElement[bool]] | None, cursor: paging.Cursor | None, reverse: bool,
               count: int) -> tuple[Select[Any], Select[Any]]:
    """(page, count) of contained resources returned alone, then (``both``) resources."""
    def branch(key: ColumnElement[int], ctype: ColumnElement[Any], cid: ColumnElement[Any],
               frm: Any, conds: list[ColumnElement[bool]], positioned: bool) -> Select[Any]:
        if positioned and cursor is not None and cursor.direction != paging.LAST:
            conds = [*conds, paging.position([], key, cursor)]
        return (select(key.label("key"), ctype.label("c_type"), cid.label("c_id"), _R.c.rid,
                       _R.c.res_type, _R.c.res_id, _V.c.content)
                .select_from(frm).where(*conds))

    versions = and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version)
    inner = _C.join(_R, _R.c.rid == _C.c.container).join(_V, versions)
    outer = _R.join(_V, versions)
    nothing = cast(null(), String)

    def union(positioned: bool) -> Any:
        parts = [branch(_C.c.rid, _C.c.res_type, _C.c.res_id, inner, [matched, *host], positioned)]
        if plain is not None:
            parts.append(branch(_R.c.rid, nothing, nothing, outer, plain, positioned))
        return parts[0].subquery("u") if len(parts) == 1 else union_all(*parts).subquery("u")

    u = union(True)
    page = select(u).order_by(*paging.order_by([], u.c.key, reverse)).limit(count + 1)
    total = select(func.count()).select_from(union(False))
    return page, total


def _containers(matched: ColumnElement[bool], host: list[ColumnElement[bool]],
                plain: list[ColumnElement[bool]] | None, cursor: paging.Cursor | None, reverse: bool,
                count: int) -> tuple[Select[Any], Select[Any]]:
    """(page, count) of the resources containing a match, and (``both``) matching resources."""
    found: ColumnElement[bool] = _R.c.rid.in_(select(_C.c.container).where(matched))
    if plain is not None:
        found = or_(found, and_(*plain))
    conds = [*host, found]
    total = select(func.count()).select_from(_R).where(*conds)
    if cursor is not None and cursor.direction != paging.LAST:
        conds.append(paging.position([], _R.c.rid, cursor))
    rids = select(_R.c.rid).where(*conds).order_by(*paging.order_by([], _R.c.rid, reverse)).limit(count + 1)
    r, v = _R.alias("page"), _V.alias("page_version")
    page = (select(r.c.rid.label("key"), cast(null(), String).label("c_type"), cast(null(), String).label("c_id"),
                   r.c.rid, r.c.res_type, r.c.res_id, v.c.content)
            .join(v, and_(v.c.rid == r.c.rid, v.c.version == r.c.version))
            .where(r.c.rid.in_(rids)).order_by(*paging.order_by([], r.c.rid, reverse)))
    return page, total


def _hit(row: Any) -> Hit:
    """A page row as a match: a resource, or a contained resource with its container."""
    key, ctype, cid, rid, res_type, res_id, content = row
    if ctype is None:
        return Hit(rid, res_type, res_id, bytes(content))
    container = Hit(rid, res_type, res_id, bytes(content))
    return Hit(key, ctype, cid, orjson.dumps(_inner(container.content, s.container_of(key)[1], ctype, cid)),
               container=container)


def _inner(content: bytes, position: int, ctype: str, cid: str) -> dict[str, Any]:
    """The contained resource at ``position`` of a container's content (by type and id should
    the list not line up: entries that are not resources are skipped when indexing)."""
    inner = orjson.loads(content).get("contained") or []
    if position < len(inner) and inner[position].get("resourceType") == ctype \
            and str(inner[position].get("id") or "") == cid:
        return inner[position]  # type: ignore[no-any-return]
    return next(c for c in inner if isinstance(c, dict) and c.get("resourceType") == ctype
                and str(c.get("id") or "") == cid)


# -- _include and _revinclude of contained resources returned alone ----------------------------------
def forward_from_contained(searcher: Searcher, conn: Connection, hits: list[Hit], src: str, code: str,
                           target: str | None) -> list[Hit]:
    """What the contained resources ``hits`` (returned alone, ``Hit.container`` set) refer to
    under ``src:code``: stored resources, by their own reference rows (the contained keys), and
    by ``#id`` the other resources contained in the same container, returned alone like them
    (they are not in the entry of the resource that refers to them)."""
    hits = [h for h in hits if src in ("*", h.res_type)]
    keys = searcher._keys(src, code, s.contained_key)
    if not hits or not keys:
        return []
    ref, target_r, target_v = s.idx_reference, _R.alias("inc_target"), _V.alias("inc_target_version")
    stored = (select(target_r.c.rid, target_r.c.res_type, target_r.c.res_id, target_v.c.content)
              .select_from(ref)
              .join(target_r, and_(target_r.c.res_type == ref.c.ref_type, target_r.c.res_id == ref.c.ref_id))
              .join(target_v, and_(target_v.c.rid == target_r.c.rid, target_v.c.version == target_r.c.version))
              .where(ref.c.rid.in_([h.rid for h in hits]), ref.c.pkey.in_(keys), target_r.c.deleted == false()))
    if target:
        stored = stored.where(ref.c.ref_type == target)
    out = [Hit(*row) for row in conn.execute(stored.distinct())]
    source, sibling = _C.alias("inc_source"), _C.alias("inc_sibling")
    local = (select(sibling.c.rid, sibling.c.res_type, sibling.c.res_id, sibling.c.container)
             .select_from(ref).join(source, source.c.rid == ref.c.rid)
             .join(sibling, and_(sibling.c.container == source.c.container, sibling.c.res_type == ref.c.ref_type,
                                 ref.c.url == literal("#", String) + sibling.c.res_id))
             .where(ref.c.rid.in_([h.rid for h in hits]), ref.c.pkey.in_(keys), ref.c.ref_id.is_(None)))
    if target:
        local = local.where(ref.c.ref_type == target)
    return out + _alone(local, {h.container.rid: h.container for h in hits if h.container is not None}, conn)


def reverse_to_contained(searcher: Searcher, conn: Connection, hits: list[Hit], src: str, code: str) -> list[Hit]:
    """What refers to the contained resources ``hits`` under ``src:code``: only their own
    container can (by ``#id``), and the other resources contained in it, returned alone."""
    containers = {h.container.rid: h.container for h in hits if h.container is not None}
    ref, out = s.idx_reference, []
    # Each contained resource is named by #id only within its own container: the id alone
    # would also name another container's resource of that id.
    targets = [(h.container.rid, h.res_type, f"#{h.res_id}") for h in hits if h.container is not None]
    top = searcher._keys(src, code)
    if top:
        named = or_(*[and_(ref.c.rid == c, ref.c.ref_type == t, ref.c.url == u) for c, t, u in targets])
        found = conn.execute(select(ref.c.rid).distinct().where(
            ref.c.pkey.in_(top), ref.c.ref_id.is_(None), named)).scalars()
        out += [dataclasses.replace(containers[rid]) for rid in found]  # its own Hit: includes mark it
    inner = searcher._keys(src, code, s.contained_key)
    if inner:
        sibling = _C.alias("rev_sibling")
        beside = or_(*[and_(sibling.c.container == c, ref.c.ref_type == t, ref.c.url == u) for c, t, u in targets])
        local = (select(sibling.c.rid, sibling.c.res_type, sibling.c.res_id, sibling.c.container).distinct()
                 .select_from(sibling).join(ref, ref.c.rid == sibling.c.rid)
                 .where(sibling.c.container.in_(list(containers)), ref.c.pkey.in_(inner),
                        ref.c.ref_id.is_(None), beside))
        out += _alone(local, containers, conn)
    return out


def _alone(rows: Select[Any], containers: dict[int, Hit], conn: Connection) -> list[Hit]:
    """Contained resources (rows: rid, type, id, container rid) as hits returned alone, read
    from their containers' content. Only resources inside the same containers are asked for, so
    a local reference never leads out of a container."""
    out = []
    for rid, ctype, cid, container in conn.execute(rows):
        whole = containers[container]
        out.append(Hit(rid, ctype, cid, orjson.dumps(_inner(whole.content, s.container_of(rid)[1], ctype, cid)),
                       container=whole))
    return out
