"""Search: compiling a parsed :class:`~carerecord.fhir.search_query.Query` to SQL and running it
(http://hl7.org/fhir/R4/search.html).

Every clause becomes a predicate on the ``resources`` row, mostly ``rid IN (SELECT rid FROM
idx_<type> WHERE pkey = :key AND <value test>)``, which both SQLite and PostgreSQL answer from
the (pkey, value) indexes. Chains and ``_has`` nest the same predicates. Pages are cut by a
keyset cursor on ``rid`` (or an offset when ``_sort`` names other keys), so links stay valid
while data changes. Included resources are fetched for the page only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from carerecord.errors import Invalid
from carerecord.fhir import model
from carerecord.fhir.indexing import normalize
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import ANY, Clause, Query, Value
from carerecord.store import paging
from carerecord.store import schema as s
from carerecord.store.records import now_us

_R, _V = s.resources, s.resource_versions
_TABLE_OF_TYPE = {"string": s.idx_string, "token": s.idx_token, "date": s.idx_date,
                  "number": s.idx_number, "quantity": s.idx_quantity,
                  "reference": s.idx_reference, "uri": s.idx_uri, "composite": s.idx_composite}
_TOP = "\U0010ffff"


@dataclass(slots=True)
class Hit:
    rid: int
    res_type: str
    res_id: str
    content: bytes
    mode: str = "match"


@dataclass(slots=True)
class SearchResult:
    matches: list[Hit]
    included: list[Hit] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None


class Compiler:
    """Turns clauses into SQL predicates for one registry."""

    def __init__(self, registry: SearchParamRegistry) -> None:
        self.registry = registry

    def predicate(self, clause: Clause, res_type: str, r: FromClause, *,
                  probe: bool = False) -> ColumnElement[bool]:
        """A boolean SQL expression true for the rows of ``r`` (a resources alias) of type
        ``res_type`` that satisfy ``clause``.

        As a driver (``probe`` False) it is ``rid IN (SELECT rid FROM idx ...)``: the index
        rows found become the rows to fetch. As a probe it is a correlated ``EXISTS`` on the
        (rid, pkey) index, checking only the rows the driver found, so a broad clause (a
        common code, a date range) never materialises its whole match list."""
        if clause.has is not None:
            return self._has(clause, res_type, r)
        if clause.chain is not None:
            return self._chain(clause, res_type, r, probe)
        if clause.param is None:
            return self._special(clause, r)
        code = clause.param.code
        if self.registry.get(res_type, code) is None:
            return false()
        ptype = clause.param.type
        table = _TABLE_OF_TYPE.get(ptype)
        if table is None:
            raise Invalid(f"Searching on {ptype} parameter {code!r} is not supported", clause.name)
        if clause.modifier == "missing":
            present = _rows(table, r, probe, table.c.pkey == s.param_key(res_type, code))
            if ptype == "reference":  # a Reference given only by identifier is present too
                ident = s.idx_token
                present = or_(present, _rows(ident, r, probe, ident.c.pkey == s.param_key(
                    res_type, f"{code}:identifier")))
            return or_(*[not_(present) if v.text == "true" else present for v in clause.values])
        if clause.modifier in ("identifier", "of-type"):
            table, code = s.idx_token, f"{code}:{clause.modifier}"
        key = s.param_key(res_type, code)
        if code == "_text":  # every word of the value starts a word of the narrative
            words = [[w for w in normalize(v.text).split() if w] for v in clause.values]
            return or_(*[and_(*[_rows(table, r, probe, table.c.pkey == key, table.c.value >= w,
                                       table.c.value < w + _TOP) for w in ws])
                         for ws in words if ws])
        if ptype == "composite":
            types = self.registry.component_types(res_type, code)
            tests = [composite_test(types, v, table) for v in clause.values]
        else:
            tests = [self._value(ptype, clause.modifier, v, table) for v in clause.values]
        matched = _rows(table, r, probe, table.c.pkey == key, or_(*tests))
        return not_(matched) if clause.modifier == "not" else matched

    # -- value tests, one per parameter type ---------------------------------------------------
    def _value(self, ptype: str, mod: str | None, v: Value, t: FromClause) -> ColumnElement[bool]:
        if mod == "identifier":
            return _token(v, t)
        if ptype == "token":
            if mod == "text":
                n = normalize(v.text)
                return and_(t.c.text >= n, t.c.text < n + _TOP)
            if mod == "of-type":
                return and_(t.c.system == v.system, t.c.code == v.text)
            if mod in ("below", "above"):
                return and_(t.c.system == v.system, t.c.code.in_(v.codes))
            if mod not in (None, "not"):
                raise Invalid(f"Modifier :{mod} is not supported on token parameters", mod)
            return _token(v, t)
        if ptype == "string":
            if mod == "exact":
                return t.c.exact == v.text
            n = normalize(v.text)
            if mod == "contains":
                esc = n.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                return t.c.value.like(f"%{esc}%", escape="\\")
            if mod is not None:
                raise Invalid(f"Modifier :{mod} is not supported on string parameters", mod)
            return and_(t.c.value >= n, t.c.value < n + _TOP)
        if ptype == "uri":
            if mod == "below":
                return and_(t.c.value >= v.text, t.c.value < v.text + _TOP)
            if mod == "above":
                return literal(v.text).like(t.c.value + "%")
            return t.c.value == v.text
        if ptype == "date":
            return date_test(v, t.c.low, t.c.high)
        if ptype == "number":
            return number_test(v, t.c.value)
        if ptype == "quantity":
            return and_(unit_test(v, t.c.system, t.c.code), number_test(v, t.c.value))
        if ptype == "reference":
            tests = []
            if v.text:
                same = t.c.ref_id == v.text
                tests.append(and_(same, t.c.ref_type == v.ref_type) if v.ref_type else same)
            if v.url:
                tests.append(t.c.url == v.url)
            return or_(*tests)
        raise Invalid(f"Searching on {ptype} parameters is not supported", ptype)

    def _special(self, clause: Clause, r: FromClause) -> ColumnElement[bool]:
        if clause.name.startswith("_list"):
            lists, ref = aliased(_R), s.idx_reference
            return exists().where(
                lists.c.res_type == "List", lists.c.res_id.in_([v.text for v in clause.values]),
                lists.c.deleted == false(), ref.c.rid == lists.c.rid,
                ref.c.pkey == s.param_key("List", "item"),
                ref.c.ref_type == r.c.res_type, ref.c.ref_id == r.c.res_id)
        if clause.name.startswith("_id"):
            ids = r.c.res_id.in_([v.text for v in clause.values])
            return not_(ids) if clause.modifier == "not" else ids
        return or_(*[date_test(v, r.c.last_updated, r.c.last_updated) for v in clause.values])

    def _chain(self, clause: Clause, res_type: str, r: FromClause, probe: bool) -> ColumnElement[bool]:
        assert clause.param is not None and clause.chain is not None
        ref = s.idx_reference
        key = s.param_key(res_type, clause.param.code)
        per_type = []
        for t in clause.chain_types:
            target = aliased(_R)
            inner = self.predicate(clause.chain, t, target)
            if keyed_by_id(clause.chain):
                inner = and_(target.c.res_type == t, target.c.deleted == false(), inner)
            found = select(target.c.res_id).where(inner)
            # One lookup per target type, so (pkey, ref_id) is an index seek for each.
            per_type.append(_rows(ref, r, probe, ref.c.pkey == key, ref.c.ref_type == t,
                                  ref.c.ref_id.in_(found)))
        return or_(*per_type)

    def _has(self, clause: Clause, res_type: str, r: FromClause) -> ColumnElement[bool]:
        assert clause.has is not None and clause.chain is not None
        src, code = clause.has
        ref = s.idx_reference
        source = aliased(_R)
        matching = select(source.c.rid).where(source.c.res_type == src,
                                              self.predicate(clause.chain, src, source))
        return r.c.res_id.in_(select(ref.c.ref_id).where(
            ref.c.pkey == s.param_key(src, code), ref.c.ref_type == res_type, ref.c.rid.in_(matching)))


def _rows(table: FromClause, r: FromClause, probe: bool,
          *conds: ColumnElement[bool]) -> ColumnElement[bool]:
    """Resource rows of ``r`` having index rows in ``table`` that meet ``conds``: a driving
    ``rid IN (...)`` or a correlated ``EXISTS`` probe (see :meth:`Compiler.predicate`)."""
    if probe:
        return exists().where(table.c.rid == r.c.rid, *conds)
    return r.c.rid.in_(select(table.c.rid).where(*conds))


# How selective a clause usually is (lower drives the query). A reference to one resource or
# an identifier finds a handful of rows; a code or name prefix more; a date range most.
_RANK = {"reference": 1, "token": 3, "uri": 3, "string": 4, "composite": 4, "quantity": 5,
         "number": 5, "date": 7}


def keyed_by_id(clause: Clause) -> bool:
    """Whether the clause's predicate matches on res_id (_id, _list, _lastUpdated, _has) rather
    than on index rows, so res_type and deleted must be filtered beside it."""
    return clause.param is None or clause.has is not None


def rank(clause: Clause) -> int:
    if clause.modifier in ("missing", "not"):
        return 99  # matches most rows: never the driver
    if clause.param is None:
        return 0 if clause.name.startswith("_id") else 50  # _id is a key lookup
    if clause.chain is not None or clause.has is not None:
        return 6
    if clause.param.code in ("identifier", "patient", "subject") or clause.modifier == "identifier":
        return 1
    return _RANK.get(clause.param.type, 10)


def _keys_in(type_col: ColumnElement[str], id_col: ColumnElement[str],
             keys: list[tuple[str, str]]) -> ColumnElement[bool]:
    """(type, id) in ``keys``, as one "type = ? AND id IN (...)" per type, which SQLite answers
    from an index (it scans for a row-value IN)."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    return or_(*[and_(type_col == t, id_col.in_(ids)) for t, ids in by_type.items()])


def _token(v: Value, t: FromClause, system: str = "system", code: str = "code") -> ColumnElement[bool]:
    sys_col, code_col = t.c[system], t.c[code]
    if v.system == ANY:
        return code_col == v.text
    if v.system is None:
        return and_(code_col == v.text, sys_col.is_(None))
    if not v.text:
        return sys_col == v.system
    return and_(code_col == v.text, sys_col == v.system)


def _ref(v: Value, t: FromClause, type_col: str, id_col: str) -> ColumnElement[bool]:
    same = t.c[id_col] == v.text
    return and_(same, t.c[type_col] == v.ref_type) if v.ref_type else same


def unit_test(v: Value, system: ColumnElement[str], code: ColumnElement[str]) -> ColumnElement[bool]:
    """The unit part of a quantity value. n||unit: the code or the human unit is 'unit', in any
    system (unit-text rows have system NULL, so one test on code covers both);
    n|system|code: both match; n alone: any unit."""
    if v.system not in (None, ANY):
        return and_(system == v.system, code == v.text)
    if v.text:
        return code == v.text
    return true()


def composite_test(types: tuple[str, ...], v: Value, t: FromClause) -> ColumnElement[bool]:
    """All components of one composite value against one idx_composite row (so the values
    must come from the same element, e.g. the same Observation.component)."""
    a, tests = v.parts[0], []
    tests.append(_ref(a, t, "a_system", "a_code") if types[0] == "reference"
                 else _token(a, t, "a_system", "a_code"))
    if len(types) > 1:
        b, bt = v.parts[1], types[1]
        if bt == "token":
            tests.append(_token(b, t, "b_system", "b_code"))
        elif bt == "reference":
            tests.append(_ref(b, t, "b_system", "b_code"))
        elif bt == "string":
            n = normalize(b.text)
            tests.append(and_(t.c.b_code >= n, t.c.b_code < n + _TOP))
        elif bt == "quantity":
            tests.append(and_(unit_test(b, t.c.b_system, t.c.b_code), number_test(b, t.c.b_low)))
        elif bt == "number":
            tests.append(number_test(b, t.c.b_low))
        elif bt == "date":
            tests.append(date_test(b, t.c.b_low, t.c.b_high))
    if len(types) > 2:
        tests.append(number_test(v.parts[2], t.c.c_low))
    return and_(*tests)


def date_test(v: Value, low: ColumnElement[int], high: ColumnElement[int]) -> ColumnElement[bool]:
    """Range comparison of a stored [low, high] against the parameter's range by prefix."""
    plo, phi = int(v.low), int(v.high)
    inside = and_(low >= plo, high <= phi)
    p = v.prefix
    if p == "eq":
        return inside
    if p == "ne":
        return or_(low < plo, high > phi)
    if p == "gt":
        return high > phi
    if p == "lt":
        return low < plo
    if p == "ge":
        return or_(high > phi, inside)
    if p == "le":
        return or_(low < plo, inside)
    if p == "sa":
        return low > phi
    if p == "eb":
        return high < plo
    width = max(abs(now_us() - plo) // 10, 86400_000000)  # ap: 10% of the gap to now, >= 1 day
    return and_(low <= phi + width, high >= plo - width)


def number_test(v: Value, value: ColumnElement[float]) -> ColumnElement[bool]:
    p, n = v.prefix, v.number
    if p == "eq":
        return and_(value >= v.low, value < v.high)
    if p == "ne":
        return or_(value < v.low, value >= v.high)
    if p == "gt":
        return value > n
    if p == "lt":
        return value < n
    if p == "sa":  # above the whole range the search value stands for
        return value >= v.high
    if p == "eb":
        return value < v.low
    if p == "ge":
        return value >= n
    if p == "le":
        return value <= n
    spread = abs(n) * 0.1
    return and_(value >= n - spread, value <= n + spread)


class Searcher:
    """Runs searches against one engine."""

    def __init__(self, registry: SearchParamRegistry) -> None:
        self.registry = registry
        self.compiler = Compiler(registry)

    def where(self, q: Query, r: FromClause = _R) -> list[ColumnElement[bool]]:
        types = q.res_types or tuple(sorted(model.resource_types()))
        conds: list[ColumnElement[bool]] = [r.c.deleted == false()]
        if q.compartment is not None:
            comp = s.compartments
            conds.append(r.c.rid.in_(select(comp.c.rid).where(comp.c.patient_id == q.compartment)))
        if len(types) == 1:
            # Drive from the most selective clause that finds index rows; the others probe the
            # rows it found. Index rows exist only for live resources of the key's type, so
            # res_type needs filtering only when nothing drives (or _id, a key lookup, does).
            ordered = sorted(q.clauses, key=rank)
            driver = ordered[0] if ordered and rank(ordered[0]) < 50 else None
            if q.compartment is not None:
                driver = None  # the compartment's rows drive
            if driver is None or keyed_by_id(driver):
                conds.append(r.c.res_type == types[0])
            for c in ordered:
                conds.append(self.compiler.predicate(c, types[0], r, probe=c is not driver))
        else:
            if q.res_types:
                conds.append(r.c.res_type.in_(types))
            for c in q.clauses:
                if c.param is None and c.chain is None and c.has is None:
                    conds.append(self.compiler.predicate(c, types[0], r))
                else:
                    conds.append(or_(*[and_(r.c.res_type == t, self.compiler.predicate(c, t, r))
                                       for t in types if self.registry.get(t, c.param.code
                                                                           if c.param else "")]))
        return conds

    def matching_rids(self, q: Query) -> Select[tuple[int]]:
        return select(_R.c.rid).where(*self.where(q))

    def count(self, conn: Connection, q: Query) -> int:
        return int(conn.execute(select(func.count()).select_from(_R).where(*self.where(q))).scalar_one())

    def run(self, conn: Connection, q: Query, count: int) -> SearchResult:
        """One page of matches (keyset paging, see ``store.paging``), the total when asked
        for, and the included resources of the page."""
        conds = self.where(q)
        keys = [self._sort_key(q, code, desc) for code, desc in q.sort]
        cursor = paging.decode(q.cursor)
        reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
        if cursor is not None and cursor.direction != paging.LAST:
            conds.append(paging.position(keys, _R.c.rid, cursor))
        query = (select(_R.c.rid, _R.c.res_type, _R.c.res_id, _V.c.content, *[k for k, _ in keys])
                 .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
                 .where(*conds).order_by(*paging.order_by(keys, _R.c.rid, reverse)).limit(count + 1))
        rows = list(conn.execute(query).all())
        more = len(rows) > count
        rows = rows[:count]
        if reverse:
            rows.reverse()
        result = SearchResult([Hit(r[0], r[1], r[2], r[3]) for r in rows])
        if rows:
            def at(row: Any, direction: str) -> str:
                return paging.Cursor(direction, tuple(row[4:]), row[0]).encode()
            has_next = more if not reverse else cursor is not None and cursor.direction == paging.PREV
            has_prev = (cursor is not None) if not reverse else more
            result.next_cursor = at(rows[-1], paging.NEXT) if has_next else None
            result.prev_cursor = at(rows[0], paging.PREV) if has_prev else None
        if q.total in ("accurate", "estimate") or q.summary == "count":
            result.total = self.count(conn, q)
        if q.include or q.revinclude:
            result.included = self.includes(conn, q, result.matches)
        return result

    def _sort_key(self, q: Query, code: str, desc: bool) -> tuple[ColumnElement[Any], bool]:
        """The SQL expression to sort by for ``code`` and its direction. A resource with several
        values sorts by its lowest ascending and its highest descending (search.html#sort)."""
        if code == "_lastUpdated":
            return _R.c.last_updated, desc
        if code == "_id":
            return _R.c.res_id, desc
        rtype = q.res_types[0] if q.res_types else "Resource"
        sp = self.registry.get(rtype, code)
        if sp is None or sp.type not in _TABLE_OF_TYPE or sp.type == "composite":
            raise Invalid(f"Cannot sort by {code!r}", "_sort")
        t = _TABLE_OF_TYPE[sp.type]
        col = {"string": "value", "token": "code", "date": "low", "number": "value",
               "quantity": "value", "reference": "ref_id", "uri": "value"}[sp.type]
        if sp.type == "date" and desc:
            col = "high"
        agg = func.max(t.c[col]) if desc else func.min(t.c[col])
        sub = (select(agg).where(t.c.rid == _R.c.rid, t.c.pkey == s.param_key(rtype, code))
               .scalar_subquery())
        return sub, desc

    def includes(self, conn: Connection, q: Query, hits: list[Hit]) -> list[Hit]:
        """_include and _revinclude (with :iterate, up to 4 rounds) for a page of matches."""
        seen = {h.rid for h in hits}
        out: list[Hit] = []
        frontier = hits
        for round_no in range(4):
            found: list[Hit] = []
            for src, code, target, iterate in q.include:
                if round_no and not iterate:
                    continue
                rids = [h.rid for h in frontier if src in ("*", h.res_type)]
                if rids:
                    found += self._forward(conn, rids, src, code, target)
            for src, code, _target, iterate in q.revinclude:
                if round_no and not iterate:
                    continue
                keys = [(h.res_type, h.res_id) for h in frontier]
                if keys:
                    found += self._reverse(conn, keys, src, code)
            fresh = []
            for h in found:
                if h.rid not in seen:
                    seen.add(h.rid)
                    h.mode = "include"
                    fresh.append(h)
            out += fresh
            frontier = fresh
            if not fresh:
                break
        return out

    def _keys(self, src: str, code: str) -> list[int]:
        types = [src] if src != "*" else sorted(model.resource_types())
        keys = []
        for t in types:
            params = self.registry.for_type(t)
            codes = [code] if code != "*" else [c for c, p in params.items() if p.type == "reference"]
            keys += [s.param_key(t, c) for c in codes if c in params]
        return keys

    def _forward(self, conn: Connection, rids: list[int], src: str, code: str,
                 target: str | None) -> list[Hit]:
        ref = s.idx_reference
        r2 = aliased(_R)
        v2 = aliased(_V)
        q = (select(r2.c.rid, r2.c.res_type, r2.c.res_id, v2.c.content)
             .select_from(ref)
             .join(r2, and_(r2.c.res_type == ref.c.ref_type, r2.c.res_id == ref.c.ref_id))
             .join(v2, and_(v2.c.rid == r2.c.rid, v2.c.version == r2.c.version))
             .where(ref.c.rid.in_(rids), ref.c.pkey.in_(self._keys(src, code)),
                    r2.c.deleted == false()))
        if target:
            q = q.where(ref.c.ref_type == target)
        return [Hit(*row) for row in conn.execute(q.distinct())]

    def _reverse(self, conn: Connection, keys: list[tuple[str, str]], src: str,
                 code: str) -> list[Hit]:
        ref = s.idx_reference
        q = (select(_R.c.rid, _R.c.res_type, _R.c.res_id, _V.c.content)
             .select_from(ref)
             .join(_R, _R.c.rid == ref.c.rid)
             .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
             .where(ref.c.pkey.in_(self._keys(src, code)), _keys_in(ref.c.ref_type, ref.c.ref_id, keys)))
        return [Hit(*row) for row in conn.execute(q.distinct())]
