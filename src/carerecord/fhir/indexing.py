"""Write-time extraction of search index rows from a resource, and its Patient compartments.

Semantics follow http://hl7.org/fhir/R4/search.html per parameter type, with these server
choices (documented here because search must query with the same ones):

- string: ``normalized`` is lower-cased (casefolded), accents removed (NFKD minus combining
  marks) and whitespace collapsed; ``exact`` is the original. Any string primitive counts; a
  HumanName gives each of family, given, prefix, suffix and text, plus the parts joined
  (``"Dr John Smith"``); an Address each line, city, district, state, postalCode, country, text.
- token: a Coding gives (system, code, normalized display); a CodeableConcept each coding plus
  (None, None, normalized text); an Identifier (system, value, normalized type.text) and, per
  type coding, a row under ``<code>:of-type`` of (type system, ``"<type code>|<value>"``, None);
  a ContactPoint (its system, its value); any primitive (None, value), booleans as
  ``"true"``/``"false"``; boolean expressions (Patient ``deceased``) their result.
- date: (low, high) inclusive microseconds since 1970-01-01T00:00Z. Partial dates cover their
  whole year/month/day; a dateTime without a timezone, and a date, are taken as UTC; a Period
  without end has ``high = DATE_MAX``, without start ``low = DATE_MIN``. Timing gives each event
  and its repeat.boundsPeriod. Unparseable values and Age/Range onsets give no date row.
- number / quantity: (value, low, high), low/high = value -/+ half the unit of the last digit
  (http://hl7.org/fhir/R4/search.html#number). JSON parsed to float loses trailing zeros
  ("1.50" reads as 1.5 -> 1.45..1.55); ``decimal.Decimal`` values keep them (1.495..1.505).
  A Quantity with a code gives (system, code, ...), with a unit also (None, unit, ...); Money
  (urn:iso:std:iso:4217, currency, ...); a Range (value = low else high, low.value, high.value),
  an open end being -/+inf. SampledData gives nothing.
- reference: ``Type/id`` -> (Type, id, None); an absolute URL ending in Type/id -> (Type, id,
  url); urn:uuid/urn:oid and other URLs -> (None, None, url); canonicals -> (None, None, url
  without ``|version``); a local ``#id`` naming a contained resource -> (its type, None,
  ``#id``), so chains follow it into the contained resource (search.html#contained; ``#`` alone
  and an id no contained resource has give nothing). No resource id holds ``#`` and ref_id
  stays NULL, so such a row never meets a search, _include or compartment by type and id.
  Reference.identifier gives a token row under ``<code>:identifier``.
- Rows of the synthetic codes ``<code>:of-type`` and ``<code>:identifier`` go to the token list.
- composite (best effort): per selected element, the cartesian product (at most 64) of each
  component's rows, a row being that component type's row without the parameter code, e.g.
  ``("code-value-quantity", (("http://loinc.org", "8480-6", "systolic"), (ucum, "mm[Hg]",
  120.0, 119.5, 120.5)))``.
- special (Location ``near``) and ``_id``/``_lastUpdated`` (indexed by the store) give nothing.

Expressions are compiled by ``carerecord.fhir.paths`` into typed chains; the chains of every
parameter of a resource type are merged into one trie, cached on the registry, and each resource
is walked once, visiting only the keys it has.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, NamedTuple

from carerecord.errors import Invalid
from carerecord.fhir.model import patient_compartment, primitive_types
from carerecord.fhir.paths import (
    compile_expression,
    local_type,
    parse_reference,
    run,
    runnable,
    step_function,
)
from carerecord.fhir.search_params import SearchParam, SearchParamRegistry, default_registry

DATE_MIN = -(2**63)  # low of a Period without start
DATE_MAX = 2**63 - 1  # high of a Period without end
STORE_INDEXED = frozenset({"_id", "_lastUpdated"})
STRING, TOKEN, DATE, NUMBER, QUANTITY, REFERENCE, URI, COMPOSITE = range(8)
_TABLE = {"string": STRING, "token": TOKEN, "date": DATE, "number": NUMBER, "quantity": QUANTITY,
          "reference": REFERENCE, "uri": URI}
_MAX_COMBOS = 64
Acc = tuple[dict[Any, None], ...]  # one ordered set per IndexRows field
Norm = Callable[[str, list[Any], Acc, Any], None]  # (param code, values, acc, root resource)


class IndexRows(NamedTuple):
    """All index rows of one resource, deduplicated, one list per parameter type."""

    string: list[tuple[str, str, str]]  # (param, normalized, exact)
    token: list[tuple[str, str | None, str | None, str | None]]  # (param, system, code, text)
    date: list[tuple[str, int, int]]  # (param, low, high) inclusive microseconds, UTC
    number: list[tuple[str, float, float, float]]  # (param, value, low, high)
    quantity: list[tuple[str, str | None, str | None, float, float, float]]
    reference: list[tuple[str, str | None, str | None, str | None]]  # (param, type, id, url)
    uri: list[tuple[str, str]]
    composite: list[tuple[str, tuple[object, ...]]]
    # Not made by extract(), added by the store (store/prepare.extra_rows): the _content words
    # (carerecord.fhir.text), and (type, id, rows) of each contained resource, in order.
    content: tuple[str, ...] = ()
    contained: tuple[tuple[str, str, IndexRows], ...] = ()


# ---------------------------------------------------------------- value normalization
@lru_cache(maxsize=16384)
def normalize(text: str) -> str:
    """The case- and accent-insensitive form of a string for string search and token :text:
    casefolded, NFKD with combining marks removed, whitespace runs made one space, trimmed."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


_DT = re.compile(r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?"
                 r"(Z|[+-]\d\d:\d\d)?)?)?)?")
_DAY = 86_400_000_000


def _days(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil)."""
    y -= m <= 2
    era, yoe = divmod(y, 400)
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


@lru_cache(maxsize=8192)
def date_bounds(text: str) -> tuple[int, int] | None:
    """Inclusive (low, high) microseconds since the epoch that a FHIR date, dateTime or instant
    covers, by its precision; no timezone means UTC. None if ``text`` is not a valid value.
    Agrees with ``carerecord.fhir.dates.date_range`` (which search uses), only faster."""
    m = _DT.fullmatch(text)
    if m is None:
        return None
    ys, ms, ds, hh, mi, ss, frac, tz = m.groups()
    y = int(ys)
    if ms is None:
        return _days(y, 1, 1) * _DAY, _days(y + 1, 1, 1) * _DAY - 1
    mo = int(ms)
    if not 1 <= mo <= 12:
        return None
    if ds is None:
        return _days(y, mo, 1) * _DAY, _days(y + mo // 12, mo % 12 + 1, 1) * _DAY - 1
    d, start = int(ds), _days(y, mo, 1)
    if not 1 <= d <= _days(y + mo // 12, mo % 12 + 1, 1) - start:
        return None
    low = (start + d - 1) * _DAY
    if hh is None:
        return low, low + _DAY - 1
    h, mn = int(hh), int(mi)
    if h > 23 or mn > 59:
        return None
    if tz and tz != "Z":
        off = (int(tz[1:3]) * 60 + int(tz[4:6])) * 60_000_000
        low -= off if tz[0] == "+" else -off
    low += (h * 3600 + mn * 60) * 1_000_000
    if ss is None:
        return low, low + 60_000_000 - 1
    if int(ss) > 60:
        return None
    low += min(int(ss), 59) * 1_000_000
    if not frac:
        return low, low + 999_999
    low += int((frac + "00000")[:6])
    return low, low + 10 ** max(0, 6 - len(frac)) - 1


def number_bounds(value: Any) -> tuple[float, float, float] | None:
    """(value, low, high) with low/high half a unit of the last digit away (100 -> 99.5..100.5,
    1.5 -> 1.45..1.55, Decimal('1.50') -> 1.495..1.505); None for non-numbers and booleans."""
    if type(value) is int:
        return float(value), value - 0.5, value + 0.5
    if type(value) is float or isinstance(value, Decimal):
        return _decimal_bounds(value)
    return None


@lru_cache(maxsize=8192, typed=True)
def _decimal_bounds(value: float | Decimal) -> tuple[float, float, float] | None:
    if type(value) is float:
        try:
            value = Decimal(repr(value))
        except InvalidOperation:
            return None
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    half = Decimal(5).scaleb(int(value.as_tuple().exponent) - 1)
    return float(value), float(value - half), float(value + half)


# ---------------------------------------------------------------- normalizers per (search type, FHIR type)
def _s_prim(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[STRING]
    for v in vals:
        if type(v) is str and v:
            d[(code, normalize(v), v)] = None


def _as_list(v: Any) -> list[Any]:
    return v if type(v) is list else [v]


def _s_parts(keys: tuple[str, ...], joined: bool) -> Norm:
    def strings(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
        for v in vals:
            if type(v) is dict:
                parts = [p for k in keys for p in _as_list(v.get(k)) if type(p) is str]
                if joined and len(parts) > 1:
                    parts.append(" ".join(parts))
                _s_prim(code, parts, acc, root)
                _s_prim(code, [v.get("text")], acc, root)
    return strings


def _coding(d: dict[Any, None], code: str, c: Any) -> None:
    if type(c) is dict and (c.get("system") is not None or c.get("code") is not None):
        disp = c.get("display")
        d[(code, c.get("system"), c.get("code"), normalize(disp) if type(disp) is str else None)] = None


def _t_coding(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for c in vals:
        _coding(acc[TOKEN], code, c)


def _t_concept(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[TOKEN]
    for cc in vals:
        if type(cc) is dict:
            for c in cc.get("coding") or ():
                _coding(d, code, c)
            text = cc.get("text")
            if type(text) is str and text:
                d[(code, None, None, normalize(text))] = None


def _t_identifier(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[TOKEN]
    for i in vals:
        if type(i) is not dict or (i.get("value") is None and i.get("system") is None):
            continue
        typ: dict[str, Any] = i["type"] if type(i.get("type")) is dict else {}
        text = typ.get("text")
        d[(code, i.get("system"), i.get("value"), normalize(text) if type(text) is str else None)] = None
        if i.get("value") is not None:
            for c in typ.get("coding") or ():
                if type(c) is dict and c.get("code") is not None:
                    d[(code + ":of-type", c.get("system"), f"{c['code']}|{i['value']}", None)] = None


def _t_contact(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[TOKEN]
    for c in vals:
        if type(c) is dict and c.get("value") is not None:
            d[(code, c.get("system"), c["value"], None)] = None


def _t_prim(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[TOKEN]
    for v in vals:
        if v is not None and type(v) is not dict:
            d[(code, None, ("true" if v else "false") if type(v) is bool else str(v), None)] = None


def _d_prim(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[DATE]
    for v in vals:
        b = date_bounds(v) if type(v) is str else None
        if b is not None:
            d[(code, b[0], b[1])] = None


def _d_period(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for p in vals:
        if type(p) is dict and (p.get("start") or p.get("end")):
            lo = date_bounds(p["start"]) if type(p.get("start")) is str else None
            hi = date_bounds(p["end"]) if type(p.get("end")) is str else None
            acc[DATE][(code, lo[0] if lo else DATE_MIN, hi[1] if hi else DATE_MAX)] = None


def _d_timing(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for t in vals:
        if type(t) is dict:
            _d_prim(code, t.get("event") or [], acc, root)
            rep = t.get("repeat")
            if type(rep) is dict and rep.get("boundsPeriod"):
                _d_period(code, [rep["boundsPeriod"]], acc, root)


def _n_prim(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for v in vals:
        b = number_bounds(v)
        if b is not None:
            acc[NUMBER][(code, *b)] = None


def _range(r: Any) -> tuple[dict[str, Any], tuple[float, float, float]] | None:
    """(the low-or-high quantity, (value, low, high)) of a Range; None if it has no values."""
    if type(r) is not dict:
        return None
    lo, hi = r.get("low"), r.get("high")
    lb = number_bounds(lo.get("value")) if type(lo) is dict else None
    hb = number_bounds(hi.get("value")) if type(hi) is dict else None
    if lb is None and hb is None:
        return None
    q: dict[str, Any] = lo if lb is not None else hi  # type: ignore[assignment]
    return q, ((lb or hb)[0], lb[0] if lb else float("-inf"), hb[0] if hb else float("inf"))  # type: ignore[index]


def _n_range(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for r in vals:
        got = _range(r)
        if got is not None:
            acc[NUMBER][(code, *got[1])] = None


def _quantity_rows(d: dict[Any, None], code: str, q: dict[str, Any], b: tuple[float, float, float]) -> None:
    c, u = q.get("code"), q.get("unit")
    if c is not None:
        d[(code, q.get("system"), c, *b)] = None
    # The human unit gets a row of its own (system None) unless it is the code itself: a
    # search "n||unit" matches the code in any system, so that row would find nothing new.
    if u is not None and (u != c or q.get("system") is None):
        d[(code, None, u, *b)] = None
    if c is None and u is None:
        d[(code, None, None, *b)] = None


def _q_quantity(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for q in vals:
        b = number_bounds(q.get("value")) if type(q) is dict else None
        if b is not None:
            _quantity_rows(acc[QUANTITY], code, q, b)


def _q_money(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for m in vals:
        b = number_bounds(m.get("value")) if type(m) is dict else None
        if b is not None:
            cur = m.get("currency")
            acc[QUANTITY][(code, "urn:iso:std:iso:4217" if cur else None, cur, *b)] = None


def _q_range(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for r in vals:
        got = _range(r)
        if got is not None:
            _quantity_rows(acc[QUANTITY], code, got[0], got[1])


def _r_reference(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    d = acc[REFERENCE]
    for v in vals:
        if type(v) is not dict:
            continue
        ref = v.get("reference")
        parsed = parse_reference(ref) if type(ref) is str else None
        if parsed is None and type(ref) is str and ref[:1] == "#":
            local = local_type(ref, root)
            if local is not None:
                d[(code, local, None, ref)] = None
        elif parsed is not None:
            if parsed[2] is not None:  # absolute: the store makes its own ones relative first,
                parsed = (None, None, parsed[2])  # so this names another server's resource
            d[(code, *parsed)] = None
        ident = v.get("identifier")
        if type(ident) is dict and (ident.get("value") is not None or ident.get("system") is not None):
            acc[TOKEN][(code + ":identifier", ident.get("system"), ident.get("value"), None)] = None


def _r_url(strip_version: bool, key: str | None = None) -> Norm:
    def urls(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
        for v in vals:
            v = v.get(key) if key and type(v) is dict else v
            if type(v) is str and v:
                acc[REFERENCE][(code, None, None, v.split("|", 1)[0] if strip_version else v)] = None
    return urls


def _r_resource(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for r in vals:
        if type(r) is dict and r.get("resourceType") and r.get("id"):
            acc[REFERENCE][(code, r["resourceType"], r["id"], None)] = None


def _u_prim(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
    for v in vals:
        if type(v) is str and v:
            acc[URI][(code, v)] = None


_QUANTITIES = ("Quantity", "Age", "Duration", "Count", "Distance", "SimpleQuantity", "MoneyQuantity")
_NORMS: dict[tuple[str, str], Norm] = {
    **{("string", t): _s_prim for t in primitive_types()},
    ("string", "HumanName"): _s_parts(("prefix", "given", "family", "suffix"), True),
    ("string", "Address"): _s_parts(("line", "city", "district", "state", "postalCode", "country"), False),
    **{("token", t): _t_prim for t in primitive_types()},
    ("token", "Coding"): _t_coding, ("token", "CodeableConcept"): _t_concept,
    ("token", "Identifier"): _t_identifier, ("token", "ContactPoint"): _t_contact,
    **{("date", t): _d_prim for t in ("date", "dateTime", "instant", "string")},
    ("date", "Period"): _d_period, ("date", "Timing"): _d_timing,
    **{("number", t): _n_prim for t in ("decimal", "integer", "positiveInt", "unsignedInt")},
    ("number", "Range"): _n_range,
    **{("quantity", t): _q_quantity for t in _QUANTITIES},
    ("quantity", "Money"): _q_money, ("quantity", "Range"): _q_range,
    ("reference", "Reference"): _r_reference, ("reference", "canonical"): _r_url(True),
    ("reference", "uri"): _r_url(False), ("reference", "url"): _r_url(False),
    ("reference", "Attachment"): _r_url(False, "url"), ("reference", "Resource"): _r_resource,
    **{("uri", t): _u_prim for t in ("uri", "url", "canonical", "oid", "uuid", "string")},
}


def infer_type(value: Any) -> str:
    """A best guess at the FHIR type of an element from its shape (for fhirpathpy fallbacks)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "decimal"
    if not isinstance(value, dict):
        return "string"
    keys = value.keys()
    for key, typ in (("resourceType", "Resource"), ("coding", "CodeableConcept"), ("family", "HumanName"),
                     ("given", "HumanName"), ("line", "Address"), ("city", "Address"),
                     ("postalCode", "Address"), ("reference", "Reference"), ("currency", "Money"),
                     ("start", "Period"), ("end", "Period"), ("event", "Timing"), ("repeat", "Timing"),
                     ("low", "Range"), ("high", "Range"), ("unit", "Quantity"), ("contentType", "Attachment")):
        if key in keys:
            return typ
    if "value" in keys and "system" in keys:
        if value.get("system") in ("phone", "fax", "email", "pager", "url", "sms", "other"):
            return "ContactPoint"
        return "Identifier" if isinstance(value.get("value"), str) else "Quantity"
    if "code" in keys or "system" in keys:
        return "Coding"
    if "value" in keys:
        return "Quantity" if not isinstance(value.get("value"), str) else "Identifier"
    return "CodeableConcept" if "text" in keys else "Element"


def _dynamic(search_type: str) -> Norm:
    def guess(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
        for v in vals:
            if type(v).__name__.startswith("FP_"):  # fhirpathpy date/time/quantity objects
                v = str(v)
            typ = infer_type(v)
            if typ == "string" and search_type in ("date", "uri", "reference"):
                typ = {"date": "dateTime", "uri": "uri", "reference": "canonical"}[search_type]
            norm = _NORMS.get((search_type, typ))
            if norm is not None:
                norm(code, [v], acc, root)
    return guess


def normalizer(search_type: str, fhir_type: str) -> Norm | None:
    """The row builder for elements of ``fhir_type`` under a parameter of ``search_type``
    (``'*'``: guessed per value), or None if such elements give no rows."""
    if fhir_type == "*":
        return _dynamic(search_type)
    return _NORMS.get((search_type, fhir_type))


def _new_acc() -> Acc:
    return ({}, {}, {}, {}, {}, {}, {}, {})


def _composite(registry: SearchParamRegistry, p: SearchParam, elem_type: str, root_type: str) -> Norm | None:
    """The row builder of a composite parameter for elements of ``elem_type`` (None if a
    component's definition is unknown or its expression is outside the compiled subset)."""
    comps: list[tuple[int, tuple[tuple[Norm, tuple[Any, ...]], ...]]] = []
    for url, expr in p.components:
        cp = registry.by_url(url)
        if cp is None or cp.type not in _TABLE:
            return None
        try:
            chains = compile_expression(expr, elem_type, root_type)
        except Exception:  # Unsupported (no fallback below the root)
            return None
        parts = tuple((n, runnable(c)) for c in chains if (n := normalizer(cp.type, c.type)) is not None)
        comps.append((_TABLE[cp.type], parts))

    def rows(code: str, vals: list[Any], acc: Acc, root: Any) -> None:
        for el in vals:
            columns = []
            for table, parts in comps:
                scratch = _new_acc()
                for norm, fns in parts:
                    items = run(fns, [el], root)
                    if items:
                        norm("", items, scratch, root)
                columns.append([row[1:] for row in scratch[table]])
            for combo in itertools.islice(itertools.product(*columns), _MAX_COMBOS):
                acc[COMPOSITE][(code, combo)] = None
    return rows


class _Node:
    """One trie node: children by JSON key, children by other step, and the row builders of the
    parameters whose path ends here."""

    __slots__ = ("gets", "fns", "emit", "inner", "_fn_map")

    def __init__(self) -> None:
        self.gets: dict[str, _Node] = {}
        self._fn_map: dict[tuple[Any, ...], _Node] = {}
        self.fns: tuple[tuple[Any, _Node], ...] = ()
        self.emit: list[tuple[Norm, str]] = []
        self.inner = False

    def child(self, step: tuple[Any, ...]) -> _Node:
        if step[0] == "get":
            return self.gets.setdefault(step[1], _Node())
        return self._fn_map.setdefault(step, _Node())

    def freeze(self) -> None:
        self.fns = tuple((step_function(s), n) for s, n in self._fn_map.items())
        self.inner = bool(self.gets or self.fns)
        for n in (*self.gets.values(), *self._fn_map.values()):
            n.freeze()


def _build(registry: SearchParamRegistry, rtype: str, codes: tuple[str, ...] | None = None) -> _Node:
    root = _Node()
    for code, p in registry.for_type(rtype).items():
        if not p.expression or code in STORE_INDEXED or (codes is not None and code not in codes):
            continue
        for chain in compile_expression(p.expression, rtype):
            norm = (_composite(registry, p, chain.type, rtype) if p.type == "composite"
                    else normalizer(p.type, chain.type))
            if norm is None:
                continue
            node = root
            for step in chain.steps:
                node = node.child(step)
            if (norm, code) not in node.emit:
                node.emit.append((norm, code))
    root.freeze()
    return root


def _walk(node: _Node, items: list[Any], acc: Acc, root: Any) -> None:
    gets = node.gets
    if gets:
        if len(items) == 1:
            item = items[0]
            if type(item) is dict:
                for k, v in item.items():
                    child = gets.get(k)
                    if child is not None:
                        vals = v if type(v) is list else [v]
                        for norm, code in child.emit:
                            norm(code, vals, acc, root)
                        if child.inner:
                            _walk(child, vals, acc, root)
        else:
            groups: dict[str, list[Any]] = {}
            for item in items:
                if type(item) is dict:
                    for k, v in item.items():
                        if k in gets:
                            if type(v) is list:
                                groups.setdefault(k, []).extend(v)
                            else:
                                groups.setdefault(k, []).append(v)
            for k, vals in groups.items():
                child = gets[k]
                for norm, code in child.emit:
                    norm(code, vals, acc, root)
                if child.inner:
                    _walk(child, vals, acc, root)
    for fn, child in node.fns:
        vals = fn(items, root)
        if vals:
            for norm, code in child.emit:
                norm(code, vals, acc, root)
            if child.inner:
                _walk(child, vals, acc, root)


def _plan(registry: SearchParamRegistry, rtype: str, compartment: bool = False) -> _Node:
    key = ("index-plan", rtype, compartment)
    plan = registry.cache.get(key)
    if not isinstance(plan, _Node):
        codes = patient_compartment().get(rtype, ()) if compartment else None
        plan = registry.cache[key] = _build(registry, rtype, codes)
    return plan


def extract(resource: dict[str, Any], registry: SearchParamRegistry | None = None,
            container: dict[str, Any] | None = None) -> IndexRows:
    """The deduplicated index rows of every parameter of the resource's type (see the module
    docstring for what each type gives). Parameters without expression, ``_id``,
    ``_lastUpdated`` and ``special`` ones give none; an unknown type gives no rows. Elements of
    an unexpected shape are skipped; a primitive holding an object or array where a row needs
    a value (only possible in unvalidated input) raises ``Invalid``. ``container``: the
    resource that ``resource`` is contained in, whose other contained resources its local
    ``#id`` references name."""
    reg = registry if registry is not None else default_registry()
    acc = _new_acc()
    # The root that local references resolve in: the resource itself, or for a contained one
    # the resource with its container's contained list (its own is empty: no nesting).
    root = resource if container is None else {**resource, "contained": container.get("contained")}
    try:
        plan = _plan(reg, resource["resourceType"])
        for norm, code in plan.emit:  # parameters on the resource itself (composites like
            norm(code, [resource], acc, root)  # Observation-code-value-quantity)
        _walk(plan, [resource], acc, root)
    except (TypeError, KeyError) as e:
        raise Invalid(f"resource cannot be indexed: {e}") from None
    s, t, d, n, q, r, u, c = (list(x) for x in acc)
    return IndexRows(s, t, d, n, q, r, u, c)


def patient_compartments(resource: dict[str, Any]) -> list[str]:
    """Ids of the Patients whose compartment holds ``resource`` (R4 CompartmentDefinition
    'patient', http://hl7.org/fhir/R4/compartmentdefinition-patient.html, with the types
    :data:`~carerecord.fhir.model.COMPARTMENT_EXTENSIONS` adds): the local ``Patient/<id>``
    values of the listed parameters; a Patient is also in its own. Absolute and urn:
    references are not local and count for none."""
    rtype = resource.get("resourceType")
    out: dict[str, None] = {}
    if rtype == "Patient" and isinstance(resource.get("id"), str):
        out[resource["id"]] = None
    if rtype in patient_compartment():
        acc = _new_acc()
        _walk(_plan(default_registry(), rtype, compartment=True), [resource], acc, resource)
        for _code, typ, rid, url in acc[REFERENCE]:
            if typ == "Patient" and url is None and rid:
                out[rid] = None
    return list(out)
