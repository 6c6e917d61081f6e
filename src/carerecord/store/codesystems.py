"""Code system hierarchies for token ``:below``/``:above`` when a search runs
(http://hl7.org/fhir/R4/search.html#token), including CodeSystem resources stored here.

:func:`resolve` fills in the subsumption closure (``Value.codes``) of every ``:below`` and
``:above`` value of a query, on the search's own connection, so a CodeSystem written in the
same transaction counts and every worker process sees the same thing. For a system it uses:

1. the live CodeSystem resource whose ``url`` is the system (the most recently updated one if
   several are), when it is complete and declares is-a (``fhir.terminology.from_code_system``);
2. otherwise the hierarchy from the R4 definitions (``fhir.terminology.generated``);
3. otherwise the search is refused with a 400 saying why.

Caching: the lookup of (rid, version) of the CodeSystem is one index seek on ``idx_uri`` per
system per search, never cached, so an update or delete takes effect at once in every
process. The parsed hierarchy is cached per process keyed on (rid, version, lastUpdated),
which changes with every write of the resource (lastUpdated too, so a database emptied and
refilled while a server runs, which reuses rids on SQLite, cannot hit an old entry); a small
LRU bounds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace

import orjson
from sqlalchemy import Connection, and_, false, select

from carerecord.errors import Invalid
from carerecord.fhir import terminology
from carerecord.fhir.search_query import Clause, Query, Value
from carerecord.fhir.terminology import Hierarchy
from carerecord.store import schema as s

_CACHE_SIZE = 32
_cache: OrderedDict[tuple[int, int, int], Hierarchy | str] = OrderedDict()
_lock = threading.Lock()


def resolve(conn: Connection, q: Query) -> None:
    """Set ``codes`` on every token ``:below``/``:above`` value of ``q`` (chains and ``_has``
    included); Invalid (400, located at the parameter) for a system whose hierarchy is not
    known."""
    found: dict[str, Hierarchy] = {}
    for clause in _clauses(q.clauses):
        if clause.modifier not in ("below", "above") or clause.param is None or clause.param.type != "token":
            continue
        values = []
        for v in clause.values:
            if v.codes:  # resolved already (a count after the page, in one search)
                values.append(v)
                continue
            system = v.system or ""  # parse_value requires system|code
            if system not in found:
                found[system] = hierarchy(conn, system, clause.name, clause.modifier)
            h = found[system]
            codes = h.below(v.text) if clause.modifier == "below" else h.above(v.text)
            values.append(replace(v, codes=tuple(sorted(codes))))
        clause.values = values


def _clauses(clauses: list[Clause]) -> Iterator[Clause]:
    for c in clauses:
        yield c
        if c.chain is not None:
            yield from _clauses([c.chain])


def hierarchy(conn: Connection, system: str, where: str = "code", modifier: str = "below") -> Hierarchy:
    """The hierarchy of ``system`` (see the module docstring for which), or Invalid located at
    ``where`` saying why none can be used."""
    stored = _stored(conn, system)
    reason = ""
    if stored is not None:
        if isinstance(stored[1], Hierarchy):
            return stored[1]
        reason = f" (CodeSystem/{stored[0]} has that url, but it cannot be used because {stored[1]})"
    generated = terminology.generated(system)
    if generated is not None:
        return generated
    raise Invalid(f"The hierarchy of {system} is not known to this server{reason}, so "
                  f":{modifier} cannot be evaluated", where)


def _stored(conn: Connection, system: str) -> tuple[str, Hierarchy | str] | None:
    """(id, hierarchy or why not) of the live CodeSystem with url ``system``, or None."""
    r, u, v = s.resources, s.idx_uri, s.resource_versions
    row = conn.execute(
        select(r.c.rid, r.c.version, r.c.last_updated, r.c.res_id).select_from(u.join(r, r.c.rid == u.c.rid))
        .where(u.c.pkey == s.param_key("CodeSystem", "url"), u.c.value == system,
               r.c.deleted == false())
        .order_by(r.c.last_updated.desc(), r.c.rid.desc()).limit(1)).first()
    if row is None:
        return None
    key = (int(row.rid), int(row.version), int(row.last_updated))
    with _lock:
        h = _cache.get(key)
        if h is not None:
            _cache.move_to_end(key)
    if h is None:
        content = conn.execute(select(v.c.content).where(
            and_(v.c.rid == row.rid, v.c.version == row.version))).scalar_one()
        h = terminology.from_code_system(orjson.loads(content))
        with _lock:
            _cache[key] = h
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return str(row.res_id), h


def closure(value: Value) -> tuple[str, ...]:
    """The codes a resolved ``:below``/``:above`` value stands for (a value never resolved is
    a programming error: it would silently match nothing)."""
    if not value.codes:
        raise RuntimeError(f"the hierarchy of {value.system} was not resolved before compiling")
    return value.codes
