"""Parsing FHIR search parameters (http://hl7.org/fhir/R4/search.html) into clauses.

Pure: turns ``[(name, value), ...]`` from a URL or form body into :class:`Query`, checking
every value against its parameter type so that a bad value is a 400 with a clear message
before any SQL runs. Result parameters (_count, _sort, _include, ...) are parsed here too.
Unknown parameters are collected, to be reported (lenient) or refused (strict) by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from carerecord.errors import Invalid
from carerecord.fhir.dates import date_range
from carerecord.fhir.search_params import SearchParam, SearchParamRegistry
from carerecord.fhir.text import search_words

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
ANY = "\x00any"  # token system not given (matches any system)
RESULT_PARAMS = {"_count", "_sort", "_include", "_revinclude", "_total", "_summary",
                 "_elements", "_contained", "_containedType", "_format", "_pretty", "_page",
                 "_cursor", "_offset"}
IGNORED = {"_format", "_pretty"}
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
_TYPE = re.compile(r"[A-Z][A-Za-z]+$")


@dataclass(frozen=True, slots=True)
class Value:
    """One OR-ed value of a clause; which fields are used depends on the parameter type."""

    prefix: str = "eq"
    text: str = ""  # string/uri value, token code, reference id
    system: str | None = None  # token/quantity system (ANY when not given)
    low: float = 0.0
    high: float = 0.0
    number: float = 0.0
    ref_type: str | None = None
    url: str | None = None
    parts: tuple[Value, ...] = ()  # composite: one value per component
    codes: tuple[str, ...] = ()  # token :below/:above: the subsumption closure, set by the store


@dataclass(slots=True)
class Clause:
    """One search parameter occurrence: its values are OR-ed; clauses are AND-ed."""

    name: str
    param: SearchParam | None  # None for _id and _lastUpdated
    modifier: str | None
    values: list[Value]
    chain: Clause | None = None  # subject:Patient.name=x -> chain is the Patient name clause
    chain_types: tuple[str, ...] = ()
    has: tuple[str, str] | None = None  # _has: (source type, reference param code)


@dataclass(slots=True)
class Query:
    res_types: tuple[str, ...]  # empty for system-wide search over all types
    clauses: list[Clause] = field(default_factory=list)
    count: int | None = None
    sort: list[tuple[str, bool]] = field(default_factory=list)  # (param code, descending)
    include: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    revinclude: list[tuple[str, str, str | None, bool]] = field(default_factory=list)
    total: str = "none"
    summary: str | None = None
    elements: list[str] = field(default_factory=list)
    cursor: str | None = None
    unknown: list[str] = field(default_factory=list)
    compartment: str | None = None  # Patient id: search only that Patient's compartment
    contained: str = "false"  # _contained: false | true | both (search.html#contained)
    # _containedType: what a contained match returns. The spec's default is "container"; this
    # server returns the contained resource itself unless asked otherwise (issue 3's choice).
    contained_type: str = "contained"


def split_escaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` not preceded by a backslash, then unescape ``\\, \\$ \\| \\\\``."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\([,$|\\])", r"\1", text)


def _prefix(raw: str) -> tuple[str, str]:
    """Split a comparison prefix (ge2020, lt-5) from its value."""
    if len(raw) > 2 and raw[:2] in PREFIXES and (raw[2].isdigit() or raw[2] == "-"):
        return raw[:2], raw[2:]
    return "eq", raw


def number_range(text: str, where: str) -> tuple[float, float, float]:
    """(value, low, high) of a decimal by its precision: 100 -> 99.5..100.5 (search.html#number).

    Computed in decimal arithmetic and only then turned into floats, so the ends are the
    doubles nearest the exact ends (5.4 gives 5.35, not 5.3500000000000005) and compare
    correctly with stored values."""
    if not _NUMBER.match(text):
        raise Invalid(f"{text!r} is not a number", where)
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return float(value), float(value - half), float(value + half)


def parse_value(param_type: str, raw: str, where: str, modifier: str | None,
                base: str | None = None) -> Value:
    """Parse one value of a parameter of ``param_type``; Invalid with ``where`` on bad input.
    ``base``: this server's FHIR base URL, so absolute references to it count as local."""
    if modifier == "identifier":  # reference:identifier takes a token (system|value)
        param_type, modifier = "token", None
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise Invalid(f":missing takes true or false, not {raw!r}", where)
        return Value(text=raw)
    if param_type == "token":
        if modifier in ("below", "above"):
            parts = split_escaped(raw, "|")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise Invalid(f":{modifier} on a token needs system|code, not {raw!r}", where)
            # The closure (``codes``) is filled in by the store when the search runs
            # (store/codesystems.py), since CodeSystems stored on the server count too.
            return Value(system=unescape(parts[0]), text=unescape(parts[1]))
        if modifier == "text":
            return Value(text=unescape(raw))
        if modifier == "of-type":
            parts = split_escaped(raw, "|")
            if len(parts) != 3 or not all(parts):
                raise Invalid(f":of-type needs system|code|value, not {raw!r}", where)
            return Value(system=unescape(parts[0]), text=f"{unescape(parts[1])}|{unescape(parts[2])}")
        parts = split_escaped(raw, "|")
        if len(parts) == 1:
            return Value(system=ANY, text=unescape(parts[0]))
        if len(parts) != 2:
            raise Invalid(f"{raw!r} is not a token: use [system]|[code]", where)
        system, code = unescape(parts[0]), unescape(parts[1])
        if not system and not code:
            raise Invalid(f"{raw!r} is an empty token", where)
        return Value(system=system or None, text=code)
    if param_type == "string":
        return Value(text=unescape(raw))
    if param_type == "uri":
        return Value(text=unescape(raw))
    if param_type == "date":
        prefix, rest = _prefix(raw)
        try:
            dlo, dhi = date_range(rest)
        except ValueError as exc:
            raise Invalid(f"{rest!r} is not a valid date: {exc}", where) from None
        return Value(prefix=prefix, text=rest, low=dlo, high=dhi)
    if param_type == "number":
        prefix, rest = _prefix(raw)
        v, lo, hi = number_range(rest, where)
        return Value(prefix=prefix, number=v, low=lo, high=hi)
    if param_type == "quantity":
        prefix, rest = _prefix(raw)
        parts = split_escaped(rest, "|")
        if len(parts) not in (1, 3):
            raise Invalid(f"{raw!r} is not a quantity: use [prefix]number|system|code", where)
        v, lo, hi = number_range(parts[0], where)
        qsystem: str | None = (unescape(parts[1]) or None) if len(parts) == 3 else ANY
        code = unescape(parts[2]) if len(parts) == 3 else ""
        return Value(prefix=prefix, number=v, low=lo, high=hi, system=qsystem, text=code)
    if param_type == "reference":
        text = unescape(raw)
        if base and text.startswith(base + "/"):
            text = text[len(base) + 1:]
        if "://" in text or text.startswith("urn:"):
            return Value(url=text.split("|", 1)[0])  # another server's resource, or a canonical
        if "/" in text:
            rtype, _, rid = text.partition("/")
            if not _TYPE.match(rtype) or not rid:
                raise Invalid(f"{raw!r} is not a reference: use [type]/[id], [id] or a URL", where)
            return Value(ref_type=rtype, text=rid.split("/_history/")[0])
        if not text:
            raise Invalid("An empty reference value", where)
        return Value(text=text)
    raise Invalid(f"Searching on {param_type} parameters is not supported", where)


def parse_int(raw: str, name: str, minimum: int = 0) -> int:
    if not raw.isdigit() or int(raw) < minimum:
        raise Invalid(f"{name} must be a whole number of at least {minimum}, not {raw!r}", name)
    return int(raw)


def parse(res_types: tuple[str, ...], params: list[tuple[str, str]],
          registry: SearchParamRegistry, base: str | None = None, *, lenient: bool = False) -> Query:
    """Parse a search. Raises Invalid on a bad value; unknown names go to ``Query.unknown``.
    ``base``: this server's FHIR base URL (absolute references to it count as local).
    ``lenient`` (``Prefer: handling=lenient``): what a ``_contained`` search leaves undefined is
    dropped into ``Query.unknown`` too, rather than refused (:func:`_check_contained`)."""
    q = Query(res_types)
    for name, raw in params:
        if name in IGNORED:
            continue
        head, _, mod = name.partition(":")
        if head in ("_include", "_revinclude") and mod in ("", "iterate", "recurse"):
            _result_param(q, head, raw, registry)
            if mod:
                target = q.include if head == "_include" else q.revinclude
                target[-1] = (*target[-1][:3], True)
            continue
        if name in RESULT_PARAMS:
            _result_param(q, name, raw, registry)
            continue
        clause = parse_clause(res_types, name, raw, registry, base)
        if clause is None:
            q.unknown.append(name)
        else:
            q.clauses.append(clause)
    if q.contained != "false":
        _check_contained(q, lenient)
    return q


def _check_contained(q: Query, lenient: bool) -> None:
    """Refuse (400 naming the parameter) what a ``_contained`` search leaves undefined, rather
    than ignore it; under ``Prefer: handling=lenient`` drop it and report it as unsupported
    (``Query.unknown``), as for unknown parameters. Contained resources have no
    ``meta.lastUpdated`` (dom-4) and cannot be List items (they are not referenced from outside
    their container), so ``_lastUpdated`` and ``_list`` cannot select them; ``_sort`` would order
    containers by values of contained resources, several of which may match in one container
    and some of a type that has no such parameter, which the specification does not define."""
    refused = []
    if q.sort:
        refused.append(("_sort", "_sort cannot be combined with _contained: the order of contained "
                                 "resources and of their containers by them is not defined"))
    for c in q.clauses:
        if c.param is None and not c.name.startswith("_id"):
            refused.append((c.name, f"{c.name} cannot be used with _contained: contained resources have "
                                    "no meta.lastUpdated and cannot be List items"))
    if refused and not lenient:
        raise Invalid(refused[0][1], refused[0][0])
    names = {name for name, _ in refused}
    q.sort = [] if "_sort" in names else q.sort
    q.clauses = [c for c in q.clauses if c.name not in names]
    q.unknown += [name for name, _ in refused]


def _result_param(q: Query, name: str, raw: str, registry: SearchParamRegistry) -> None:
    if name == "_count":
        q.count = parse_int(raw, "_count")
    elif name == "_sort":
        for key in raw.split(","):
            desc = key.startswith("-")
            code = key[1:] if desc else key
            if code not in ("_id", "_lastUpdated") and not any(
                    registry.get(t, code) for t in q.res_types or ("Resource",)):
                raise Invalid(f"Unknown sort parameter {code!r}", "_sort")
            q.sort.append((code, desc))
    elif name in ("_include", "_revinclude"):
        parts = raw.split(":")
        if len(parts) < 2 and raw != "*":
            raise Invalid(f"{name} takes Type:param[:targetType], not {raw!r}", name)
        iterate = False  # set by the caller for :iterate
        if raw == "*":
            parts = ["*", "*"]
        src, code = parts[0], parts[1]
        target = parts[2] if len(parts) > 2 else None
        if code != "*":
            sp = registry.get(src, code)
            if sp is None or sp.type != "reference":
                raise Invalid(f"{name}={raw}: {src} has no reference search parameter {code!r}", name)
        (q.include if name == "_include" else q.revinclude).append((src, code, target, iterate))
    elif name == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise Invalid(f"_total must be none, estimate or accurate, not {raw!r}", "_total")
        q.total = raw
    elif name == "_summary":
        if raw not in ("true", "false", "text", "data", "count"):
            raise Invalid(f"_summary must be true, false, text, data or count, not {raw!r}", "_summary")
        q.summary = None if raw == "false" else raw
    elif name == "_elements":
        q.elements = [e.strip() for e in raw.split(",") if e.strip()]
    elif name == "_cursor":
        q.cursor = raw
    elif name == "_contained":
        if raw not in ("true", "false", "both"):
            raise Invalid(f"_contained must be true, false or both, not {raw!r}", "_contained")
        q.contained = raw
    elif name == "_containedType":
        if raw not in ("container", "contained"):
            raise Invalid(f"_containedType must be container or contained, not {raw!r}", "_containedType")
        q.contained_type = raw
    else:
        q.unknown.append(name)


# Modifiers each parameter type takes (search.html#modifiers); [type] on references is
# checked separately. Anything else is refused rather than silently ignored.
MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "above", "below", "of-type", "missing"},
    "reference": {"identifier", "missing"},
    "uri": {"above", "below", "missing"},
    "date": {"missing"}, "number": {"missing"}, "quantity": {"missing"},
    "composite": {"missing"},
}
TEXT_SEARCHES = ("_text", "_content")
_SPECIAL_MODIFIERS = {"_id": {"not", "missing"}, "_lastUpdated": {"missing"}, "_list": set()}


def _check_modifier(mod: str | None, allowed: set[str], name: str, ptype: str) -> None:
    if mod is not None and mod not in allowed:
        raise Invalid(f"The modifier :{mod} cannot be used on {name.partition(':')[0]} (a {ptype} "
                      "parameter)", name)


def parse_clause(res_types: tuple[str, ...], name: str, raw: str,
                 registry: SearchParamRegistry, base: str | None = None) -> Clause | None:
    """One ``name=raw`` pair as a clause on ``res_types``; None if the name is not known."""
    if name.startswith("_has:"):
        return _parse_has(res_types, name, raw, registry, base)
    code, _, rest = name.partition(".")
    code, _, modifier = code.partition(":")
    mod: str | None = modifier or None
    if code in ("_id", "_lastUpdated", "_list") and not rest:
        _check_modifier(mod, _SPECIAL_MODIFIERS[code], name, "special")
        ptype = "date" if code == "_lastUpdated" else "token"
        values = [parse_value(ptype, v, name, mod) for v in split_escaped(raw, ",")]
        return Clause(name, None, mod, values)
    params = [p for p in (registry.get(t, code) for t in (res_types or ("Resource",))) if p]
    if not params:
        return None
    param = params[0]
    if code in TEXT_SEARCHES and not rest:
        return _text_clause(name, param, mod, raw)
    if param.expression is None:
        return None  # _query: not supported, reported as unknown
    if rest:  # chained: subject:Patient.name=peter
        if param.type != "reference":
            raise Invalid(f"{code} is not a reference parameter, so it cannot be chained", name)
        targets = (mod,) if mod else param.targets
        known = [(t, c) for t in targets if (c := parse_clause((t,), rest, raw, registry, base))]
        if not known:
            raise Invalid(f"Chained parameter {rest!r} is not known on {', '.join(targets)}", name)
        return Clause(name, param, None, [], chain=known[0][1],
                      chain_types=tuple(t for t, _ in known))
    if param.type == "reference" and mod and _TYPE.match(mod):
        values = [parse_value("reference", f"{mod}/{v}" if "/" not in v else v, name, None, base)
                  for v in split_escaped(raw, ",")]
        return Clause(name, param, None, values)
    _check_modifier(mod, MODIFIERS.get(param.type, set()), name, param.type)
    if param.type == "composite" and mod == "missing":
        return Clause(name, param, mod, [parse_value("composite", raw, name, mod)])
    if param.type == "composite":
        types = registry.component_types(res_types[0] if res_types else "Resource", code)
        if not types or mod not in (None, "missing"):
            raise Invalid(f"Composite parameter {code!r} cannot be searched that way", name)
        values = []
        for v in split_escaped(raw, ","):
            parts = split_escaped(v, "$")
            if len(parts) != len(types):
                raise Invalid(f"{code} takes {len(types)} values joined by $, not {v!r}", name)
            values.append(Value(parts=tuple(parse_value(ct, part, name, None)
                                            for ct, part in zip(types, parts, strict=True))))
        return Clause(name, param, mod, values)
    values = [parse_value(param.type, v, name, mod, base) for v in split_escaped(raw, ",")]
    return Clause(name, param, mod, values)


def _text_clause(name: str, param: SearchParam, mod: str | None, raw: str) -> Clause:
    """``_text`` or ``_content`` (search.html#text): OR-ed values, each a list of words that
    must all be found (fhir/text.py); no modifiers."""
    _check_modifier(mod, set(), name, "text")
    values = [Value(text=unescape(v)) for v in split_escaped(raw, ",")]
    for v in values:
        if not search_words(param.code, v.text):
            raise Invalid(f"{name} value {v.text!r} has no words to search for", name)
    return Clause(name, param, None, values)


def _parse_has(res_types: tuple[str, ...], name: str, raw: str,
               registry: SearchParamRegistry, base: str | None) -> Clause:
    parts = name.split(":", 3)
    if len(parts) < 4:
        raise Invalid(f"{name} must be _has:Type:reference:parameter", name)
    _, src, ref_code, rest = parts
    ref = registry.get(src, ref_code)
    if ref is None or ref.type != "reference":
        raise Invalid(f"{src} has no reference search parameter {ref_code!r}", name)
    inner = parse_clause((src,), rest, raw, registry, base)
    if inner is None:
        raise Invalid(f"{src} has no search parameter {rest!r}", name)
    return Clause(name, ref, None, [], chain=inner, has=(src, ref_code))


def describe(q: Query) -> dict[str, Any]:
    """A short summary used in logs and tests."""
    return {"types": q.res_types, "clauses": [c.name for c in q.clauses], "unknown": q.unknown}
