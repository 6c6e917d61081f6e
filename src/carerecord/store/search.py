"""Search: compiling a parsed :class:`~carerecord.fhir.search_query.Query` to SQL and running it
(http://hl7.org/fhir/R4/search.html).

Every clause becomes a predicate on the ``resources`` row, mostly ``rid IN (SELECT rid FROM
idx_<type> WHERE pkey = :key AND <value test>)``, which both SQLite and PostgreSQL answer from
the (pkey, value) indexes. Chains and ``_has`` nest the same predicates. Pages are cut by a
keyset cursor on ``rid`` (or an offset when ``_sort`` names other keys), so links stay valid
while data changes. Included resources are fetched for the page only.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    FromClause,
    Select,
    String,
    Table,
    and_,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import Exists, ScalarSelect
from sqlalchemy.sql.visitors import InternalTraversal, replacement_traverse

from carerecord.errors import Invalid
from carerecord.fhir import model
from carerecord.fhir.indexing import normalize
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import ANY, TEXT_SEARCHES, Clause, Query, Value
from carerecord.fhir.text import search_words
from carerecord.store import codesystems, direct, paging
from carerecord.store import schema as s
from carerecord.store.content import ContentMatch, settle
from carerecord.store.records import now_us

_R, _V = s.resources, s.resource_versions
_TABLE_OF_TYPE = {"string": s.idx_string, "token": s.idx_token, "date": s.idx_date,
                  "number": s.idx_number, "quantity": s.idx_quantity,
                  "reference": s.idx_reference, "uri": s.idx_uri, "composite": s.idx_composite}
_TOP = "\U0010ffff"
# One alias per index table for the driving clause, made once (an alias's column collection
# costs more to build than the rest of a simple search), distinct from the tables the probes
# use so their EXISTS subqueries are not correlated with it.
_R_TARGET, _V_TARGET = _R.alias("target"), _V.alias("target_version")  # of _include
_R_PAGE, _V_PAGE = _R.alias("page"), _V.alias("page_version")  # the content of a page
_DRIVING: dict[str, FromClause] = {t.name: t.alias(f"d_{t.name}") for t in _TABLE_OF_TYPE.values()}


@dataclass(slots=True)
class Hit:
    rid: int
    res_type: str
    res_id: str
    content: bytes
    mode: str = "match"
    container: Hit | None = None  # a contained resource's container (search.html#contained)


@dataclass(slots=True)
class Plan:
    """How a search runs. ``conds`` hold on the ``resources`` row; ``probes`` are the clauses
    checked per candidate by correlated EXISTS. When ``index`` is set, the driving clause's
    index rows (``index_conds`` on that alias) hand out the matches in rid order."""

    conds: list[ColumnElement[bool]]
    probes: list[Clause] = field(default_factory=list)
    index: FromClause | None = None
    index_conds: list[ColumnElement[bool]] = field(default_factory=list)
    in_rid_order: bool = False
    res_type: str = ""


@dataclass(slots=True)
class SearchResult:
    matches: list[Hit]
    included: list[Hit] = field(default_factory=list)
    total: int | None = None
    next_cursor: str | None = None
    prev_cursor: str | None = None


class Compiler:
    """Turns clauses into SQL predicates for one registry. Which keys name the index rows of a
    (type, parameter) follows from the rows a clause is on: ``schema.param_key`` for a
    ``resources`` alias, ``schema.contained_key`` for an alias of ``contained`` (contained
    resources, store/contained.py, and the contained targets of chains). The compiler holds no
    state of a search, so one serves every thread."""

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
        keyer = key_of(r)
        if clause.modifier == "missing":
            present = _rows(table, r, probe, table.c.pkey == keyer(res_type, code))
            if ptype == "reference":  # a Reference given only by identifier is present too
                ident = s.idx_token
                present = or_(present, _rows(ident, r, probe, ident.c.pkey == keyer(
                    res_type, f"{code}:identifier")))
            return or_(*[not_(present) if v.text == "true" else present for v in clause.values])
        if code in TEXT_SEARCHES:  # each word of a value starts a word of the resource
            key = keyer(res_type, code)
            words = [ws for v in clause.values if (ws := search_words(code, v.text))]
            if code == "_content":  # full-text indexed (store/content.py)
                return ContentMatch(r.c.rid, key, words, probe)
            return or_(*[and_(*[_rows(table, r, probe, table.c.pkey == key, table.c.value >= w,
                                       table.c.value < w + _TOP) for w in ws]) for ws in words])
        table = self.index_table(clause)
        if probe:  # built on the probe view: no tree rewrite (_by_rid) on the hot path
            matched = _exists(table, r, self.index_test(clause, res_type, _PROBE_VIEWS[table.name], keyer))
        else:
            matched = _rows(table, r, probe, *self.index_test(clause, res_type, table, keyer))
        return not_(matched) if clause.modifier == "not" else matched

    def index_table(self, clause: Clause) -> Table:
        """The index table a plain clause (see :func:`plain`) is answered from."""
        assert clause.param is not None
        if clause.modifier in ("identifier", "of-type"):
            return s.idx_token
        return _TABLE_OF_TYPE[clause.param.type]

    def index_test(self, clause: Clause, res_type: str, t: FromClause,
                   key: Callable[[str, str], int] = s.param_key) -> list[ColumnElement[bool]]:
        """The conditions on rows of ``t`` (the clause's index table or an alias of it) that
        satisfy a plain clause: its key (of a resource's rows unless ``key`` says otherwise),
        and any of its values (a ``:not`` is negated by the caller)."""
        assert clause.param is not None
        code, ptype = clause.param.code, clause.param.type
        if clause.modifier in ("identifier", "of-type"):
            code = f"{code}:{clause.modifier}"
        if ptype == "composite":
            types = self.registry.component_types(res_type, code)
            tests = [composite_test(types, v, t) for v in clause.values]
        else:
            tests = [self._value(ptype, clause.modifier, v, t) for v in clause.values]
        return [t.c.pkey == key(res_type, code), or_(*tests)]

    def in_rid_order(self, clause: Clause, res_type: str) -> bool:
        """Whether the index hands out the rows matching ``clause`` in rid order: one value
        tested by equality on every column of the value index before ``rid`` (schema.py),
        e.g. a token with system and code, or a typed reference. Such a clause can drive a
        page straight off the index, stopping after the page, whatever the match count."""
        if (clause.param is None or not plain(clause) or len(clause.values) != 1
                or self.registry.get(res_type, clause.param.code) is None):
            return False
        v, ptype, mod = clause.values[0], clause.param.type, clause.modifier
        if mod == "identifier" or (ptype == "token" and mod is None):
            return v.system not in (None, ANY) and bool(v.text)
        if ptype == "reference" and mod is None:
            return bool(v.text and v.ref_type and not v.url)
        if ptype == "uri" and mod is None:
            return True
        return ptype == "string" and mod == "exact"

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
                return and_(t.c.system == v.system, t.c.code.in_(codesystems.closure(v)))
            if mod not in (None, "not"):
                raise Invalid(f"Modifier :{mod} is not supported on token parameters", mod)
            return _token(v, t)
        if ptype == "string":
            if mod == "exact":  # value (indexed) is the normalised exact: an index seek
                return and_(t.c.value == normalize(v.text), t.c.exact == v.text)
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
        """A chained clause on the rows of ``r`` (resources, or contained resources): for each
        target type, reference rows whose target is a live resource of that type meeting the
        inner clause, or (a local ``#id`` reference, search.html#contained) a resource
        contained in the same container meeting it under the contained keys."""
        assert clause.param is not None and clause.chain is not None
        ref = s.idx_reference
        key = key_of(r)(res_type, clause.param.code)
        per_type = []
        for t in clause.chain_types:
            target = _inner(r)
            inner = self.predicate(clause.chain, t, target)
            if keyed_by_id(clause.chain):
                inner = and_(target.c.res_type == t, target.c.deleted == false(), inner)
            found = select(target.c.res_id).where(inner)
            # One lookup per target type, so (pkey, ref_id) is an index seek for each.
            top = [ref.c.pkey == key, ref.c.ref_type == t, ref.c.ref_id.in_(found)]
            local = self._local(clause.chain, t, r, key, probe)
            if probe:
                per_type.append(or_(_rows(ref, r, True, *top), local))
            else:  # one IN over both: an OR of two IN lists made PostgreSQL scan the resources
                per_type.append(r.c.rid.in_(union_all(select(ref.c.rid).where(*top), local)))
        return or_(*per_type)

    def _local(self, inner: Clause, t: str, r: FromClause, key: int, probe: bool) -> Any:
        """The rows of ``r`` whose reference under ``key`` is a local ``#id`` naming a resource of
        type ``t`` contained beside it (in ``r`` itself, or in the container ``r`` is contained
        in) that meets ``inner``: as a correlated EXISTS when ``probe``, else the SELECT of
        their rids. Local reference rows have ref_id NULL and the reference in url
        (fhir/indexing.py), so (pkey, NULL, type) is a seek on ix_reference_target."""
        depth = _DEPTHS.get(r, -1) + 1
        x, c = _local_aliases(depth)
        inside = is_contained(r)
        link = [x.c.pkey == key, x.c.ref_type == t, x.c.ref_id.is_(None), c.c.res_type == t,
                x.c.url == literal("#", String) + c.c.res_id, self.predicate(inner, t, c)]
        if probe:
            link.append(c.c.container == (r.c.container if inside else r.c.rid))
            return exists(select(literal(1)).select_from(x).join(c, true())
                          .where(x.c.rid == r.c.rid, *[_by_rid(cond, x) for cond in link])
                          .suffix_with("OFFSET 0", dialect="postgresql"))
        if inside:  # the container of a contained source: its own contained row's
            src = _LOCAL_SOURCES[depth] if depth < len(_LOCAL_SOURCES) else s.contained.alias()
            return (select(x.c.rid).select_from(x).join(src, src.c.rid == x.c.rid)
                    .join(c, c.c.container == src.c.container).where(*link))
        return select(x.c.rid).select_from(x).join(c, c.c.container == x.c.rid).where(*link)

    def _has(self, clause: Clause, res_type: str, r: FromClause) -> ColumnElement[bool]:
        assert clause.has is not None and clause.chain is not None
        src, code = clause.has
        if is_contained(r):
            return self._has_local(clause, res_type, r)
        ref = s.idx_reference
        source = _inner(r)
        matching = select(source.c.rid).where(source.c.res_type == src,
                                              self.predicate(clause.chain, src, source))
        return r.c.res_id.in_(select(ref.c.ref_id).where(
            ref.c.pkey == s.param_key(src, code), ref.c.ref_type == res_type, ref.c.rid.in_(matching)))

    def _has_local(self, clause: Clause, res_type: str, r: FromClause) -> ColumnElement[bool]:
        """``_has`` on contained resources (rows of ``r``, an alias of ``contained``): only the
        resources of its own container can refer to a contained resource (by ``#id``,
        references.html#contained), so the sources are the container and the other resources
        contained in it."""
        assert clause.has is not None and clause.chain is not None
        src, code = clause.has
        depth = _DEPTHS.get(r, -1) + 1
        x, sib = _local_aliases(depth)
        container = _inner(r)
        points = [x.c.ref_type == res_type, x.c.ref_id.is_(None), x.c.url == literal("#", String) + r.c.res_id]
        by_container = exists(select(literal(1)).select_from(x).where(
            x.c.rid == r.c.container, x.c.pkey == s.param_key(src, code), *points,
            x.c.rid.in_(select(container.c.rid).where(container.c.res_type == src,
                                                      self.predicate(clause.chain, src, container)))))
        by_sibling = exists(select(literal(1)).select_from(sib).join(x, x.c.rid == sib.c.rid).where(
            sib.c.container == r.c.container, sib.c.res_type == src, sib.c.rid != r.c.rid,
            x.c.pkey == s.contained_key(src, code), *points, self.predicate(clause.chain, src, sib)))
        return or_(by_container, by_sibling)


def is_contained(r: FromClause) -> bool:
    """Whether ``r`` holds contained resources (``contained`` or an alias of it), whose index
    rows are under the contained keys, rather than resources."""
    return "container" in r.c


def key_of(r: FromClause) -> Callable[[str, str], int]:
    """The key function of the index rows of the rows of ``r`` (see :class:`Compiler`)."""
    return s.contained_key if is_contained(r) else s.param_key


# The resources aliases of inner clauses (chain targets, _has sources), one per nesting depth,
# made once: making an alias (its column collection) was a fifth of a chained search's CPU
# (py-spy, 2026-11-23). Sibling subqueries may share one; an enclosing and an enclosed one never
# do, so no inner subquery is mistaken for correlated to an outer one. Deeper than these, fresh
# aliases, remembered with their depth.
def _narrowed(cur: Any, clause: Clause, res_type: str, postgres: bool) -> Clause:
    """A chained clause whose inner clause finds exactly one target resource, as the plain
    reference clause to that resource (the same rows: reference rows of that type and id);
    any other clause as it is. A prescriber's prescriptions by
    ``requester:PractitionerRole.practitioner.identifier`` had to gather all 25,000 of them to
    sort out the first page (4.4 ms at 100,000 people); a reference to one resource is read off
    its index in rid order, stopping after the page."""
    if clause.chain is None:
        return clause
    text, params = direct.chain_targets(clause, res_type, postgres)
    cur.execute(text, tuple(params))
    found = cur.fetchall()
    if len(found) != 1:
        return clause
    t, target = found[0]
    return Clause(clause.name, clause.param, None, [Value(text=str(target), ref_type=str(t))])


def _postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _driver_hits(conn: Connection, statement: tuple[str, list[Any]]) -> list[Hit]:
    """The hits of a statement of store/direct.py, run on the driver in the connection's
    transaction (no result machinery: SQLAlchemy's building, caching and execution of the
    include queries were three fifths of an _include/_revinclude search's CPU)."""
    text, params = statement
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cur.execute(text, tuple(params))
        return [Hit(r[0], r[1], r[2], bytes(r[3])) for r in cur.fetchall()]
    finally:
        cur.close()


_NESTED = tuple(aliased(_R, name=f"nested_{depth}") for depth in range(8))
_DEPTHS: weakref.WeakKeyDictionary[FromClause, int] = weakref.WeakKeyDictionary(
    {alias: depth for depth, alias in enumerate(_NESTED)})


def _inner(r: FromClause) -> FromClause:
    """The alias for the rows of a clause nested in one on ``r``."""
    depth = _DEPTHS.get(r, -1) + 1
    if depth < len(_NESTED):
        return _NESTED[depth]
    alias = aliased(_R)
    _DEPTHS[alias] = depth
    return alias


# The same for local references (Compiler._local): the reference rows and the contained
# resources they name, one pair per nesting depth, and the contained row of a contained source.
_LOCAL_REFS = tuple(s.idx_reference.alias(f"local_ref_{depth}") for depth in range(8))
_LOCALS = tuple(s.contained.alias(f"local_{depth}") for depth in range(8))
_LOCAL_SOURCES = tuple(s.contained.alias(f"local_source_{depth}") for depth in range(8))
_DEPTHS.update({alias: depth for depth, alias in enumerate(_LOCALS)})


def _local_aliases(depth: int) -> tuple[FromClause, FromClause]:
    """(reference rows, contained resources) aliases for a local reference at ``depth``."""
    if depth < len(_LOCALS):
        return _LOCAL_REFS[depth], _LOCALS[depth]
    x, c = s.idx_reference.alias(), s.contained.alias()
    _DEPTHS[c] = depth
    return x, c


def _rows(table: FromClause, r: FromClause, probe: bool,
          *conds: ColumnElement[bool]) -> ColumnElement[bool]:
    """Resource rows of ``r`` having index rows in ``table`` that meet ``conds``: a driving
    ``rid IN (...)`` or a correlated ``EXISTS`` probe (see :meth:`Compiler.predicate`)."""
    if probe:
        return _exists(table, r, [_by_rid(c, table) for c in conds])
    return r.c.rid.in_(select(table.c.rid).where(*conds))


def _exists(table: FromClause, r: FromClause, conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """The correlated probe: rows of ``table`` for the candidate ``r.rid`` meeting ``conds``
    (already unindexable but for rid). OFFSET 0 keeps PostgreSQL from turning the EXISTS into
    a semi-join it may reorder to run first: it did, for a name prefix it guessed at 1 row (876
    at 100,000 people), before the birthdate driver. As a correlated subplan it checks only
    the candidates."""
    return exists(select(literal(1)).where(table.c.rid == r.c.rid, *conds)
                  .suffix_with("OFFSET 0", dialect="postgresql"))


class _ProbeView:
    """An index table's columns as a probe uses them: ``rid`` as is, every other column
    wrapped in :class:`_Unindexed` (made once, at import)."""

    def __init__(self, table: Table) -> None:
        self.c = _Columns({col.name: col if col.name == "rid" else _Unindexed(col) for col in table.c})


class _Columns(dict[str, Any]):
    """``view.c.code`` and ``view.c["code"]`` alike."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _fetch_page(page: Select[Any], reverse: bool) -> Select[Any]:
    """rid, type, id and content of the rids ``page`` selects, in page order. The outer query
    reads ``resources`` under its own alias, so the page's subquery (which reads the table
    itself) is not correlated with it."""
    r, v = _R_PAGE, _V_PAGE
    return (select(r.c.rid, r.c.res_type, r.c.res_id, v.c.content)
            .join(v, and_(v.c.rid == r.c.rid, v.c.version == r.c.version))
            .where(r.c.rid.in_(page)).order_by(*paging.order_by([], r.c.rid, reverse)))


class _Unindexed(ColumnElement[Any]):
    """A column no index may serve: ``+col`` on SQLite (its documented way to keep a term
    from choosing an index), the column itself elsewhere."""

    inherit_cache = True
    _traverse_internals = [("col", InternalTraversal.dp_clauseelement)]

    def __init__(self, col: ColumnElement[Any]) -> None:
        self.col = col
        self.type = col.type


@compiles(_Unindexed)
def _compile_unindexed(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.col, **kw))


@compiles(_Unindexed, "sqlite")
def _compile_unindexed_sqlite(element: _Unindexed, compiler: Any, **kw: Any) -> str:
    return "+" + str(compiler.process(element.col, **kw))


def unindexed(col: ColumnElement[Any]) -> ColumnElement[Any]:
    """``col`` as no index may serve it (see :class:`_Unindexed`): for correlated probes written
    outside this module (store/care_dates.py), which must seek the candidate's rows by rid."""
    return _Unindexed(col)


_PROBE_VIEWS: dict[str, Any] = {}  # filled below, once _Unindexed exists


def _by_rid(cond: ColumnElement[bool], table: FromClause) -> ColumnElement[bool]:
    """``cond`` with every column of ``table`` but rid made unindexable, so a probe seeks the
    candidate's own rows by rid and tests them (a resource has a few dozen rows per table).
    Without this SQLite, lacking statistics, took the value index for a probe (ix_date_range
    (pkey=? AND low>?)), walking every birthdate after the one searched for each candidate:
    7 s a search at 100,000 people; and with the value indexes covering, a scan of all rows
    of the key looked cheap to it. Subqueries (a chain's inner search) keep their indexes."""
    def replace(el: Any) -> Any:
        if isinstance(el, (Select, ScalarSelect, Exists)):
            return el  # not descended into
        if isinstance(el, Column) and el.table is table and el.name != "rid":
            return _Unindexed(el)
        return None
    return cast(ColumnElement[bool], replacement_traverse(cond, {}, replace))  # type: ignore[call-overload]


# How selective a clause usually is (lower drives the query). A reference to one resource or
# an identifier finds a handful of rows; a code or name prefix more; a date range most.
_DAY = 86400_000000  # microseconds
INCLUDE_ROUNDS = 4  # _include/_revinclude:iterate rounds at most (a bound on one request's work)
_RANK = {"reference": 1, "token": 3, "uri": 3, "string": 4, "composite": 4, "quantity": 5,
         "number": 5, "date": 7}


def plain(clause: Clause) -> bool:
    """Whether the clause is answered by value tests on its own index rows (no chain, _has,
    _text or _content, special parameter, or a :missing or :not that is true where rows are absent)."""
    return (clause.param is not None and clause.chain is None and clause.has is None
            and clause.modifier not in ("missing", "not") and clause.param.code not in TEXT_SEARCHES
            and clause.param.type in _TABLE_OF_TYPE)


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
    if clause.param.type == "date" and all(v.prefix == "eq" and v.high - v.low <= _DAY for v in clause.values):
        return 2  # a day (a birthdate): a few rows among thousands, narrower than a name prefix
    return _RANK.get(clause.param.type, 10)


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
    if p == "eq":  # low <= phi follows (low <= high) and bounds the index range on low
        return and_(low >= plo, low <= phi, high <= phi)
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
        return and_(high < plo, low < plo)  # low < plo follows, and bounds the index range
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


_PROBE_VIEWS.update({t.name: _ProbeView(t) for t in _TABLE_OF_TYPE.values()})


class Searcher:
    """Runs searches against one engine."""

    def __init__(self, registry: SearchParamRegistry) -> None:
        self.registry = registry
        self.compiler = Compiler(registry)
        self.direct = True  # pages of the common shapes as SQL text (store/direct.py)

    def plan(self, q: Query) -> Plan:
        """Decide how the query runs (see :class:`Plan`): for one resource type, the most
        selective clause that finds index rows drives and the others probe the rows it found."""
        types = q.res_types or tuple(sorted(model.resource_types()))
        plan = Plan([_R.c.deleted == false()])
        conds = plan.conds
        if q.compartment is not None:
            comp = s.compartments
            conds.append(_R.c.rid.in_(select(comp.c.rid).where(comp.c.patient_id == q.compartment)))
        if len(types) != 1:
            if q.res_types:
                conds.append(_R.c.res_type.in_(types))
            for c in q.clauses:
                if c.param is None and c.chain is None and c.has is None:
                    conds.append(self.compiler.predicate(c, types[0], _R))
                else:
                    conds.append(or_(*[and_(_R.c.res_type == t, self.compiler.predicate(c, t, _R))
                                       for t in types if self.registry.get(t, c.param.code
                                                                           if c.param else "")]))
            return plan
        res_type = types[0]
        ordered = sorted(q.clauses, key=rank)
        driver = ordered[0] if ordered and rank(ordered[0]) < 50 else None
        if q.compartment is not None:
            driver = None  # the compartment's rows drive
        if driver is None or keyed_by_id(driver):
            conds.append(_R.c.res_type == res_type)
        plan.probes = [c for c in ordered if c is not driver]
        if (driver is not None and plain(driver)
                and self.registry.get(res_type, driver.param.code if driver.param else "") is not None):
            d = _DRIVING[self.compiler.index_table(driver).name]
            plan.index, plan.index_conds = d, self.compiler.index_test(driver, res_type, d)
            plan.in_rid_order = self.compiler.in_rid_order(driver, res_type)
        elif driver is not None:
            conds.append(self.compiler.predicate(driver, res_type, _R))
        if plan.index is not None and not plan.in_rid_order:
            # An index range (a name prefix, a date range, OR-ed values) is not in rid order:
            # its rids are gathered and the resources fetched by rid.
            conds.append(_R.c.rid.in_(select(plan.index.c.rid).where(*plan.index_conds)))
            plan.index = None
        conds += [self.compiler.predicate(c, res_type, _R, probe=True) for c in plan.probes]
        plan.res_type = res_type
        return plan

    def where(self, q: Query) -> list[ColumnElement[bool]]:
        """The query as conditions on ``resources`` alone (for counts and conditional
        interactions)."""
        plan = self.plan(q)
        if plan.index is not None:
            return [*plan.conds, _R.c.rid.in_(select(plan.index.c.rid).where(*plan.index_conds))]
        return plan.conds

    def matching_rids(self, q: Query) -> Select[tuple[int]]:
        return select(_R.c.rid).where(*self.where(q))

    def count(self, conn: Connection, q: Query) -> int:
        """How many resources match (see :meth:`count_query`)."""
        codesystems.resolve(conn, q)
        settle(conn)
        return int(conn.execute(self.count_query(q)).scalar_one())

    def count_query(self, q: Query) -> Select[Any]:
        """The SELECT counting the matches. When the driver's index rows decide alone (no compartment,
        no probe keyed on the resource row), the count is taken on the index: index rows exist
        only for current, undeleted resources of the key's type (repository.py), so the
        resources table need not be visited."""
        plan = self.plan(q)
        index = plan.index
        if index is None and q.compartment is None and len(q.res_types) == 1:
            driver = min(q.clauses, key=rank, default=None)
            if driver is not None and plain(driver) and driver not in plan.probes:
                index = _DRIVING[self.compiler.index_table(driver).name]
                plan.index_conds = self.compiler.index_test(driver, plan.res_type, index)
        if index is not None and q.compartment is None and not any(map(keyed_by_id, plan.probes)):
            probes = [self.compiler.predicate(c, plan.res_type, index, probe=True) for c in plan.probes]
            return select(func.count(index.c.rid.distinct())).where(*plan.index_conds, *probes)
        return select(func.count()).select_from(_R).where(*self.where(q))

    def page_query(self, q: Query, count: int) -> Select[Any]:
        """The SELECT of one page: rid, type, id, content and the sort keys of up to
        ``count + 1`` matches (one more tells whether there is a next page), in page order
        (reversed when reading backwards from a PREV or LAST cursor)."""
        plan = self.plan(q)
        keys = [self._sort_key(q, code, desc) for code, desc in q.sort]
        cursor = paging.decode(q.cursor)
        reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
        conds = list(plan.conds)
        if plan.index is not None and not keys:
            # The driver's index rows come in rid order: the page is read off the index and
            # stops after count + 1 (DISTINCT: one resource may have equal rows twice).
            d = plan.index
            inner = [*plan.index_conds, *conds]
            if cursor is not None and cursor.direction != paging.LAST:
                inner.append(paging.position([], d.c.rid, cursor))
            page = (select(d.c.rid).distinct().join(_R, _R.c.rid == d.c.rid).where(*inner)
                    .order_by(*paging.order_by([], d.c.rid, reverse)).limit(count + 1))
            return _fetch_page(page, reverse)
        if plan.index is not None:
            conds.append(_R.c.rid.in_(select(plan.index.c.rid).where(*plan.index_conds)))
        if cursor is not None and cursor.direction != paging.LAST:
            conds.append(paging.position(keys, _R.c.rid, cursor))
        if not keys:
            # The page's rids first, then their content: PostgreSQL, misjudging a chain's
            # match count, otherwise joined the content of all 2,045 matches before sorting
            # (500 ms at 100,000 people).
            page = (select(_R.c.rid).where(*conds)
                    .order_by(*paging.order_by([], _R.c.rid, reverse)).limit(count + 1))
            return _fetch_page(page, reverse)
        return (select(_R.c.rid, _R.c.res_type, _R.c.res_id, _V.c.content, *[k for k, _ in keys])
                .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
                .where(*conds).order_by(*paging.order_by(keys, _R.c.rid, reverse)).limit(count + 1))

    def run(self, conn: Connection, q: Query, count: int) -> SearchResult:
        """One page of matches (keyset paging, see ``store.paging``), the total when asked
        for, and the included resources of the page."""
        codesystems.resolve(conn, q)  # :below/:above closures, from stored CodeSystems too
        settle(conn)  # inside a write unit: what it wrote is in the _content index
        if q.contained != "false":
            from carerecord.store.contained import run_contained

            return run_contained(self, conn, q, count)
        cursor = paging.decode(q.cursor)
        reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
        rows = self._direct_page(conn, q, count)
        if rows is None:
            rows = list(conn.execute(self.page_query(q, count)).all())
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

    def direct_ok(self, q: Query) -> bool:
        """Whether the page of ``q`` may be read with store/direct.py's SQL text (a subclass
        that adds conditions to every plan must say no)."""
        return self.direct and direct.eligible(q, self.registry.get)

    def direct_conditions(self, q: Query, postgres: bool) -> tuple[str, list[Any]] | None:
        """Conditions this searcher's plan of ``q`` adds on the resources row, as SQL text and
        values for direct pages (none here); None when they cannot be written as text."""
        return "", []

    def _direct_page(self, conn: Connection, q: Query, count: int) -> list[Any] | None:
        if not self.direct_ok(q):
            return None
        postgres = conn.dialect.name == "postgresql"
        extra = self.direct_conditions(q, postgres)
        if extra is None:
            return None
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:  # on the driver, in the connection's transaction: no result machinery to set up
            if any(c.chain is not None for c in q.clauses):
                # A chain some resource answers through a local reference (to a resource
                # contained in it) is left to the compiler (Compiler._local); the text here
                # follows references to resources only. One statement of index seeks decides.
                text, params = direct.local_references(q, postgres)
                cur.execute(text, tuple(params))
                if cur.fetchone()[0]:
                    return None
                q = dataclasses.replace(q, clauses=[_narrowed(cur, c, q.res_types[0], postgres)
                                                    for c in q.clauses])
            text, params = direct.page(q, count, rank, self.compiler.in_rid_order, postgres, extra)
            cur.execute(text, tuple(params))
            return [(r[0], r[1], r[2], bytes(r[3])) for r in cur.fetchall()]
        finally:
            cur.close()

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

    def includes(self, conn: Connection, q: Query, hits: list[Hit],
                 admit: Callable[[list[Hit]], list[Hit]] | None = None) -> list[Hit]:
        """_include and _revinclude (with :iterate, up to INCLUDE_ROUNDS rounds) for a page of
        matches. ``admit`` filters each round's new resources before the next round iterates
        from them (the access guard's hook, so :iterate never walks through a hidden one)."""
        seen = {h.rid for h in hits}
        out: list[Hit] = []
        frontier = hits
        for round_no in range(INCLUDE_ROUNDS):
            found: list[Hit] = []
            inner = [h for h in frontier if h.container is not None]  # contained, returned alone
            for src, code, target, iterate in q.include:
                if round_no and not iterate:
                    continue
                rids = [h.rid for h in frontier if src in ("*", h.res_type) and h.container is None]
                if rids:
                    found += self._forward(conn, rids, src, code, target)
                if inner:
                    from carerecord.store.contained import forward_from_contained
                    found += forward_from_contained(self, conn, inner, src, code, target)
            for src, code, _target, iterate in q.revinclude:
                if round_no and not iterate:
                    continue
                keys = [(h.res_type, h.res_id) for h in frontier if h.container is None]
                if keys:
                    found += self._reverse(conn, keys, src, code)
                if inner:
                    from carerecord.store.contained import reverse_to_contained
                    found += reverse_to_contained(self, conn, inner, src, code)
            fresh = []
            for h in found:
                if h.rid not in seen:
                    seen.add(h.rid)
                    h.mode = "include"
                    fresh.append(h)
            if admit is not None:
                fresh = admit(fresh)
            out += fresh
            frontier = fresh
            if not fresh:
                break
        return out

    def _keys(self, src: str, code: str, key: Callable[[str, str], int] = s.param_key) -> list[int]:
        """The keys of the reference parameter ``code`` (or all, ``*``) of ``src`` (or all types)."""
        types = [src] if src != "*" else sorted(model.resource_types())
        keys = []
        for t in types:
            params = self.registry.for_type(t)
            codes = [code] if code != "*" else [c for c, p in params.items() if p.type == "reference"]
            keys += [key(t, c) for c in codes if c in params]
        return keys

    def _forward(self, conn: Connection, rids: list[int], src: str, code: str,
                 target: str | None) -> list[Hit]:
        keys = self._keys(src, code)
        if not keys:  # no such reference parameter: nothing to include
            return []
        if self.direct:
            return _driver_hits(conn, direct.forward_include(rids, keys, target, _postgres(conn)))
        ref, r2, v2 = s.idx_reference, _R_TARGET, _V_TARGET
        q = (select(r2.c.rid, r2.c.res_type, r2.c.res_id, v2.c.content)
             .select_from(ref)
             .join(r2, and_(r2.c.res_type == ref.c.ref_type, r2.c.res_id == ref.c.ref_id))
             .join(v2, and_(v2.c.rid == r2.c.rid, v2.c.version == r2.c.version))
             .where(ref.c.rid.in_(rids), _by_rid(ref.c.pkey.in_(keys), ref),
                    r2.c.deleted == false()))
        if target:  # the page's own rows, by rid: never a walk of every row of the key
            q = q.where(_by_rid(ref.c.ref_type == target, ref))
        return [Hit(*row) for row in conn.execute(q.distinct())]

    def _reverse(self, conn: Connection, keys: list[tuple[str, str]], src: str,
                 code: str) -> list[Hit]:
        """Resources whose ``src:code`` references point at ``keys``: one query per target
        type, each a seek on (pkey, ref_id, ref_type); an OR of the types made SQLite walk every
        row of the key (77 ms at 100,000 people against 0.02 ms)."""
        ref = s.idx_reference
        by_type: dict[str, list[str]] = {}
        for t, i in keys:
            by_type.setdefault(t, []).append(i)
        out: list[Hit] = []
        pkeys = self._keys(src, code)
        if not pkeys:
            return out
        for t, ids in by_type.items():
            if self.direct:
                out += _driver_hits(conn, direct.reverse_include(pkeys, ids, t, _postgres(conn)))
                continue
            q = (select(_R.c.rid, _R.c.res_type, _R.c.res_id, _V.c.content)
                 .select_from(ref)
                 .join(_R, _R.c.rid == ref.c.rid)
                 .join(_V, and_(_V.c.rid == _R.c.rid, _V.c.version == _R.c.version))
                 .where(ref.c.pkey.in_(pkeys), ref.c.ref_id.in_(ids), ref.c.ref_type == t))
            out += [Hit(*row) for row in conn.execute(q.distinct())]
        return out
