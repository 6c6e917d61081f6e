"""Direct SQL for the pages of the common searches: the same query the searcher builds with
SQLAlchemy's expression layer (search.py), written as text with bound parameters.

Why: a search by NHS number spent three fifths of its CPU in SQLAlchemy, building the
expression tree of the plan and the page, generating its cache key and setting up the
execution (py-spy, 2026-11-23: 1.76 ms of CPU a request in process, the SQL itself 0.08 ms).
For the shape most searches have (one resource type, no compartment, no ``_sort``, and only
plain clauses on the token, string, reference, date, uri, number and quantity indexes, with
no modifier but ``:exact`` on strings and ``:identifier`` on tokens, or chains of such clauses)
the plan is simple enough to write out directly. Everything else (``_has``, ``:missing``,
``:not``, ``:text``, ``:below``, composites, sorts, compartments, several types, chains for
callers the access guard restricts, and chains some resource answers through a local reference
to a resource contained in it: :func:`local_references`) goes through search.py as before.
The access guard's restriction of a caller (SQLAlchemy conditions on the resources row) is
compiled to SQL text once per request (:func:`conditions_sql`) and placed where the plan has it.

The text mirrors search.py clause by clause, and must keep doing so: the driving clause is
chosen by the same :func:`~carerecord.store.search.rank`, a driver whose index hands out rows
in rid order reads the page off the index, other drivers gather their rids first, other
clauses probe each candidate by rid with every other column unindexable (``+col`` on SQLite,
``OFFSET 0`` on PostgreSQL), and the page's content is fetched by rid. tests/search/test_direct.py
compares the two on generated searches on both databases; the plan tests EXPLAIN both.
Values are always bound parameters; only constants (table and column names) are in the text.
"""

# ruff: noqa: S608 - the SQL text here is made of constants (tables, columns, operators) and
# placeholders; every value is a bound parameter (_Sql.bind).
from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg

from carerecord.errors import Invalid
from carerecord.fhir.indexing import normalize
from carerecord.fhir.search_query import ANY, TEXT_SEARCHES, Clause, Query, Value
from carerecord.store import paging
from carerecord.store import schema as s
from carerecord.store.records import now_us

_TOP = "\U0010ffff"
_TABLES = {"string": "idx_string", "token": "idx_token", "date": "idx_date", "number": "idx_number",
           "quantity": "idx_quantity", "reference": "idx_reference", "uri": "idx_uri"}
_MODIFIERS = {"token": (None, "identifier"), "string": (None, "exact"), "reference": (None,),
              "date": (None,), "uri": (None,), "number": (None,), "quantity": (None,)}


class _Sql:
    """Bound values in order, and the placeholder of the dialect."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.mark = "%s" if postgres else "?"
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return self.mark


def eligible(q: Query, has_param: Any, *, chains: bool = True) -> bool:
    """Whether ``q`` has the shape written out here (``has_param(type, code)``: the registry's
    lookup; a clause on an unknown parameter matches nothing and is left to search.py).
    ``chains``: whether chained clauses may be written here (the access guard allows them only
    for callers it does not restrict: the inner rows of a chain must otherwise be held to
    what the caller could read, which only search.py's compiler adds)."""
    if (len(q.res_types) != 1 or q.compartment is not None or q.sort or not q.clauses
            or q.contained != "false"):
        return False
    res_type = q.res_types[0]
    for c in q.clauses:
        if c.chain is not None:
            if not (chains and _chain_ok(c, res_type, has_param)):
                return False
        elif not _plain_ok(c, res_type, has_param):
            return False
    return True


def _plain_ok(c: Clause, res_type: str, has_param: Any) -> bool:
    p = c.param
    if (p is None or c.chain is not None or c.has is not None or p.code in TEXT_SEARCHES
            or p.type not in _TABLES or c.modifier not in _MODIFIERS[p.type]
            or has_param(res_type, p.code) is None or not c.values):
        return False
    return p.type != "reference" or all(v.text or v.url for v in c.values)


def _chain_ok(c: Clause, res_type: str, has_param: Any) -> bool:
    """A chain (``subject:Patient.name=x``, at any depth) whose every inner clause is plain."""
    p, inner = c.param, c.chain
    if (p is None or inner is None or c.has is not None or p.type != "reference" or c.modifier is not None
            or has_param(res_type, p.code) is None or not c.chain_types):
        return False
    return all(_chain_ok(inner, t, has_param) if inner.chain is not None else _plain_ok(inner, t, has_param)
               for t in c.chain_types)


def _col(alias: str, name: str, probe: bool, sql: _Sql) -> str:
    """A column of an index table; in a probe every column but rid is kept from choosing an
    index (``+col`` on SQLite, search.py ``_Unindexed``)."""
    return f"+{alias}.{name}" if probe and not sql.postgres and name != "rid" else f"{alias}.{name}"


def _token(v: Value, c: Any, sql: _Sql) -> str:
    if v.system == ANY:
        return f"{c('code')} = {sql.bind(v.text)}"
    if v.system is None:
        return f"({c('code')} = {sql.bind(v.text)} AND {c('system')} IS NULL)"
    if not v.text:
        return f"{c('system')} = {sql.bind(v.system)}"
    return f"({c('code')} = {sql.bind(v.text)} AND {c('system')} = {sql.bind(v.system)})"


def _date(v: Value, low: str, high: str, sql: _Sql) -> str:
    plo, phi, p = int(v.low), int(v.high), v.prefix
    b = sql.bind
    if p == "eq":
        return f"({low} >= {b(plo)} AND {low} <= {b(phi)} AND {high} <= {b(phi)})"
    if p == "ne":
        return f"({low} < {b(plo)} OR {high} > {b(phi)})"
    if p == "gt":
        return f"{high} > {b(phi)}"
    if p == "lt":
        return f"{low} < {b(plo)}"
    if p == "ge":
        return f"({high} > {b(phi)} OR ({low} >= {b(plo)} AND {high} <= {b(phi)}))"
    if p == "le":
        return f"({low} < {b(plo)} OR ({low} >= {b(plo)} AND {high} <= {b(phi)}))"
    if p == "sa":
        return f"{low} > {b(phi)}"
    if p == "eb":
        return f"({high} < {b(plo)} AND {low} < {b(plo)})"
    width = max(abs(now_us() - plo) // 10, 86400_000000)
    return f"({low} <= {b(phi + width)} AND {high} >= {b(plo - width)})"


def _number(v: Value, value: str, sql: _Sql) -> str:
    p, n, b = v.prefix, v.number, sql.bind
    if p == "eq":
        return f"({value} >= {b(v.low)} AND {value} < {b(v.high)})"
    if p == "ne":
        return f"({value} < {b(v.low)} OR {value} >= {b(v.high)})"
    if p == "gt":
        return f"{value} > {b(n)}"
    if p == "lt":
        return f"{value} < {b(n)}"
    if p == "sa":
        return f"{value} >= {b(v.high)}"
    if p == "eb":
        return f"{value} < {b(v.low)}"
    if p == "ge":
        return f"{value} >= {b(n)}"
    if p == "le":
        return f"{value} <= {b(n)}"
    spread = abs(n) * 0.1
    return f"({value} >= {b(n - spread)} AND {value} <= {b(n + spread)})"


def _value(ptype: str, mod: str | None, v: Value, c: Any, sql: _Sql) -> str:
    """One value's test (search.py ``Compiler._value``)."""
    if ptype == "token":
        return _token(v, c, sql)
    if ptype == "string":
        n = normalize(v.text)
        if mod == "exact":
            return f"({c('value')} = {sql.bind(n)} AND {c('exact')} = {sql.bind(v.text)})"
        return f"({c('value')} >= {sql.bind(n)} AND {c('value')} < {sql.bind(n + _TOP)})"
    if ptype == "uri":
        return f"{c('value')} = {sql.bind(v.text)}"
    if ptype == "date":
        return _date(v, c("low"), c("high"), sql)
    if ptype == "number":
        return _number(v, c("value"), sql)
    if ptype == "quantity":
        if v.system not in (None, ANY):
            unit = f"({c('system')} = {sql.bind(v.system)} AND {c('code')} = {sql.bind(v.text)})"
        elif v.text:
            unit = f"{c('code')} = {sql.bind(v.text)}"
        else:
            unit = "1 = 1"
        return f"({unit} AND {_number(v, c('value'), sql)})"
    tests = []  # reference
    if v.text:
        same = f"{c('ref_id')} = {sql.bind(v.text)}"
        tests.append(f"({same} AND {c('ref_type')} = {sql.bind(v.ref_type)})" if v.ref_type else same)
    if v.url:
        tests.append(f"{c('url')} = {sql.bind(v.url)}")
    return tests[0] if len(tests) == 1 else f"({' OR '.join(tests)})"


def _index_test(clause: Clause, res_type: str, alias: str, probe: bool, sql: _Sql) -> str:
    """The key and the OR of the values on the clause's index rows (``Compiler.index_test``)."""
    assert clause.param is not None
    code = clause.param.code
    if clause.modifier == "identifier":
        code = f"{code}:identifier"
    def c(name: str) -> str:
        return _col(alias, name, probe, sql)
    key = f"{c('pkey')} = {sql.bind(s.param_key(res_type, code))}"
    ptype = "token" if clause.modifier == "identifier" else clause.param.type
    tests = [_value(ptype, clause.modifier, v, c, sql) for v in clause.values]
    return f"{key} AND {tests[0] if len(tests) == 1 else '(' + ' OR '.join(tests) + ')'}"


_SQLITE, _POSTGRES = sqlite.dialect(), psycopg.dialect(paramstyle="format")  # positional marks
_PREFIX = "SELECT resources.rid \nFROM resources \nWHERE "


def conditions_sql(conds: list[Any], postgres: bool) -> tuple[str, list[Any]] | None:
    """SQLAlchemy conditions on the ``resources`` row (the access guard's restriction) as SQL
    text with positional marks and their values, compiled once per request; None if they do
    not compile to a plain WHERE on ``resources`` (then the page is left to search.py)."""
    stmt = select(s.resources.c.rid).where(*conds)
    compiled = stmt.compile(dialect=_POSTGRES if postgres else _SQLITE,
                            compile_kwargs={"render_postcompile": True})
    text = str(compiled)
    if not text.startswith(_PREFIX) or compiled.positiontup is None:
        return None
    return text[len(_PREFIX):], [compiled.params[name] for name in compiled.positiontup]


def _table(clause: Clause) -> str:
    assert clause.param is not None
    return "idx_token" if clause.modifier == "identifier" else _TABLES[clause.param.type]


def _driver(clause: Clause, res_type: str, r: str, alias: str, sql: _Sql) -> str:
    """``r``'s rows meeting ``clause``, as ``r.rid IN (SELECT rid ...)`` (search.py ``_rows``,
    not probing)."""
    if clause.chain is not None:
        return _chain(clause, res_type, r, alias, None, sql)
    return (f"{r}.rid IN (SELECT {alias}.rid FROM {_table(clause)} {alias} "
            f"WHERE {_index_test(clause, res_type, alias, False, sql)})")


def _probe(clause: Clause, res_type: str, r: str, alias: str, sql: _Sql) -> str:
    """A correlated EXISTS on the clause's index rows of the candidate ``r.rid`` (search.py
    ``_exists``), every column but rid unindexable."""
    if clause.chain is not None:
        return _chain(clause, res_type, r, alias, alias, sql)
    test = _index_test(clause, res_type, alias, True, sql)
    return (f"EXISTS (SELECT 1 FROM {_table(clause)} {alias} WHERE {alias}.rid = {r}.rid AND {test}"
            f"{' OFFSET 0' if sql.postgres else ''})")


def _chain(clause: Clause, res_type: str, r: str, alias: str, probe: str | None, sql: _Sql) -> str:
    """A chained clause on ``r``'s rows (search.py ``Compiler._chain``): for each target type,
    the reference rows whose target is a resource of that type meeting the inner clause
    (itself plain or chained, on a resources alias of its own nesting depth). ``probe``: as a
    correlated EXISTS on the candidate ``r.rid``, else as ``r.rid IN (...)``."""
    assert clause.param is not None and clause.chain is not None
    inner = clause.chain
    depth = int(r.rsplit("_", 1)[1]) + 1 if r.startswith("nested_") else 0
    target = f"nested_{depth}"
    per_type = []
    for n, t in enumerate(clause.chain_types):
        x = f"{alias}_{n}"

        def c(name: str, x: str = x) -> str:
            return _col(x, name, probe is not None, sql)
        conds = [f"{c('pkey')} = {sql.bind(s.param_key(res_type, clause.param.code))}",
                 f"{c('ref_type')} = {sql.bind(t)}"]
        found = _driver(inner, t, target, f"{x}_i", sql)
        conds.append(f"{c('ref_id')} IN (SELECT {target}.res_id FROM resources {target} WHERE {found})")
        if probe is None:
            per_type.append(f"{r}.rid IN (SELECT {x}.rid FROM idx_reference {x} WHERE {' AND '.join(conds)})")
        else:
            per_type.append(f"EXISTS (SELECT 1 FROM idx_reference {x} WHERE {x}.rid = {r}.rid AND "
                            f"{' AND '.join(conds)}{' OFFSET 0' if sql.postgres else ''})")
    return per_type[0] if len(per_type) == 1 else f"({' OR '.join(per_type)})"


def local_references(q: Query, postgres: bool) -> tuple[str, list[Any]]:
    """One row, true when some resource has a local ``#id`` reference (to a resource contained
    in it, fhir/indexing.py) under a key and target type that a chain of ``q`` follows, at any
    depth. Such a chain must also look inside the contained resources (search.html#contained),
    which is search.py's (``Compiler._local``); without one the text below is the whole answer.
    Each pair is one seek on ix_reference_target (pkey, ref_id NULL, ref_type)."""
    sql = _Sql(postgres)
    tests = [f"EXISTS (SELECT 1 FROM idx_reference WHERE pkey = {sql.bind(key)} AND ref_id IS NULL "
             f"AND ref_type = {sql.bind(t)})" for key, t in _chained_pairs(q.clauses, q.res_types[0])]
    return f"SELECT {' OR '.join(tests) or ('false' if postgres else '0')}", sql.params


def _chained_pairs(clauses: list[Clause], res_type: str) -> dict[tuple[int, str], None]:
    """(key, target type) of every reference a chain in ``clauses`` follows, in order."""
    out: dict[tuple[int, str], None] = {}
    for c in clauses:
        if c.chain is None or c.param is None:
            continue
        for t in c.chain_types:
            out[(s.param_key(res_type, c.param.code), t)] = None
            out.update(_chained_pairs([c.chain], t))
    return out


def chain_targets(clause: Clause, res_type: str, postgres: bool) -> tuple[str, list[Any]]:
    """(type, id) of up to two live resources a chained clause's inner clause finds, over its
    target types: as ``_chain`` finds them (search.py narrows a chain with one target to a plain
    reference)."""
    assert clause.chain is not None
    sql = _Sql(postgres)
    parts = []
    for n, t in enumerate(clause.chain_types):
        head = f"SELECT * FROM (SELECT CAST({sql.bind(t)} AS TEXT) AS t, nested_0.res_id FROM resources nested_0"
        found = _driver(clause.chain, t, "nested_0", f"t{n}", sql)  # binds after the type: text order
        parts.append(f"{head} WHERE {found} LIMIT 2) q{n}")
    return f"{' UNION ALL '.join(parts)} LIMIT 2", sql.params


def page(q: Query, count: int, rank: Any, in_rid_order: Any, postgres: bool,
         extra: tuple[str, list[Any]] = ("", [])) -> tuple[str, list[Any]]:
    """The SQL and parameters of one page of ``q`` (which must be :func:`eligible`): rid, type,
    id and content of up to ``count + 1`` matches in page order (search.py ``page_query``).
    ``extra``: further conditions on the ``resources`` row as SQL text and its values (see
    :func:`conditions_sql`), placed where search.py's plan has them (after ``deleted``)."""
    sql = _Sql(postgres)

    def conditions(where: list[str]) -> None:
        if extra[0]:
            where.append(f"({extra[0]})")
            sql.params.extend(extra[1])
    res_type = q.res_types[0]
    ordered = sorted(q.clauses, key=rank)
    driver, probes = ordered[0], ordered[1:]
    cursor = paging.decode(q.cursor)
    reverse = cursor is not None and cursor.direction in (paging.PREV, paging.LAST)
    if cursor is not None and cursor.direction != paging.LAST and cursor.values:
        raise Invalid("The _cursor does not belong to this search", "_cursor")
    false = "false" if postgres else "0"
    desc = " DESC" if reverse else ""
    after = None
    if cursor is not None and cursor.direction != paging.LAST:
        after = ">" if cursor.direction == paging.NEXT else "<"

    def probe_sql() -> list[str]:
        return [_probe(clause, res_type, "resources", f"p{n}", sql) for n, clause in enumerate(probes)]

    if in_rid_order(driver, res_type):
        # The driver's index rows come in rid order: the page is read off the index.
        where = [_index_test(driver, res_type, "d", False, sql), f"resources.deleted = {false}"]
        conditions(where)
        where += probe_sql()
        if after:
            where.append(f"d.rid {after} {sql.bind(cursor.rid)}")  # type: ignore[union-attr]
        inner = (f"SELECT DISTINCT d.rid FROM {_table(driver)} d JOIN resources ON resources.rid = d.rid "
                 f"WHERE {' AND '.join(where)} ORDER BY d.rid{desc} LIMIT {sql.bind(count + 1)}")
    else:
        where = [f"resources.deleted = {false}", _driver(driver, res_type, "resources", "d", sql)]
        conditions(where)
        where += probe_sql()
        if after:
            where.append(f"resources.rid {after} {sql.bind(cursor.rid)}")  # type: ignore[union-attr]
        inner = (f"SELECT resources.rid FROM resources WHERE {' AND '.join(where)} "
                 f"ORDER BY resources.rid{desc} LIMIT {sql.bind(count + 1)}")
    text = ("SELECT pg.rid, pg.res_type, pg.res_id, pv.content FROM resources pg "
            "JOIN resource_versions pv ON pv.rid = pg.rid AND pv.version = pg.version "
            f"WHERE pg.rid IN ({inner}) ORDER BY pg.rid{desc}")
    return text, sql.params


# -- _include and _revinclude (search.py Searcher._forward and _reverse) ----------------------------
def forward_include(rids: list[int], keys: list[int], target: str | None,
                    postgres: bool) -> tuple[str, list[Any]]:
    """The resources the reference rows of ``rids`` under ``keys`` point at (of type
    ``target`` if given), live ones, with their content: the rows are found by rid, every other
    column of the reference index unindexable (so the plan never walks a whole key)."""
    sql = _Sql(postgres)
    where = [f"ref.rid IN ({', '.join(sql.bind(r) for r in rids)})",
             f"{_col('ref', 'pkey', True, sql)} IN ({', '.join(sql.bind(k) for k in keys)})",
             f"r.deleted = {'false' if postgres else '0'}"]
    if target:
        where.append(f"{_col('ref', 'ref_type', True, sql)} = {sql.bind(target)}")
    return ("SELECT DISTINCT r.rid, r.res_type, r.res_id, v.content FROM idx_reference ref "
            "JOIN resources r ON r.res_type = ref.ref_type AND r.res_id = ref.ref_id "
            "JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version "
            f"WHERE {' AND '.join(where)}"), sql.params


def reverse_include(keys: list[int], ids: list[str], res_type: str, postgres: bool) -> tuple[str, list[Any]]:
    """The resources whose reference rows under ``keys`` point at ``res_type``/``ids``, with
    their content: a seek on (pkey, ref_id, ref_type)."""
    sql = _Sql(postgres)
    where = [f"ref.pkey IN ({', '.join(sql.bind(k) for k in keys)})",
             f"ref.ref_id IN ({', '.join(sql.bind(i) for i in ids)})",
             f"ref.ref_type = {sql.bind(res_type)}"]
    return ("SELECT DISTINCT r.rid, r.res_type, r.res_id, v.content FROM idx_reference ref "
            "JOIN resources r ON r.rid = ref.rid "
            "JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version "
            f"WHERE {' AND '.join(where)}"), sql.params
