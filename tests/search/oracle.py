"""An independent, brute-force evaluator of FHIR R4 search (http://hl7.org/fhir/R4/search.html)
over resource dicts, written from the specification for the search tests.

It deliberately shares no code with ``carerecord``: element extraction is hand-written per
parameter (only the parameters the tests use, in ``PARAMS``), dates are ``datetime`` half-open
ranges, numbers are ``Decimal`` with the spec's implicit precision, and strings are compared
after a casefold/accent-strip written here. Where the specification leaves the answer to the
server (``ap`` beyond the search range, float rounding exactly on a precision boundary) the
evaluator answers ``None`` ("either is acceptable") instead of guessing, and
:meth:`Oracle.select` returns the resources that must match and those that may. The server
also matches ``name`` against a HumanName's parts joined ("John Smith"), which the oracle
does not model, so tests search ``name`` by single words only.

Server choices it follows because the server documents them (carerecord.fhir.indexing):
a date or dateTime without a timezone is taken as UTC; string search also collapses runs of
whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

Resource = dict[str, Any]
Tri = bool | None  # True: must match, False: must not, None: the server may choose

BASE = "http://testserver/fhir"  # replaced by the tests with the live server's base URL


# ---------------------------------------------------------------- escaping (search.html#escaping)
def split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash; parts stay escaped."""
    parts: list[str] = []
    cur = ""
    escaped = False
    for ch in text:
        if escaped:
            cur += "\\" + ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if escaped:
        cur += "\\"
    parts.append(cur)
    return parts


def unescape(text: str) -> str:
    out, i = "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in ",$|\\":
            out += text[i + 1]
            i += 2
        else:
            out += text[i]
            i += 1
    return out


# ---------------------------------------------------------------- dates (search.html#date)
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


@dataclass(frozen=True)
class Span:
    """A half-open range of instants [start, end); None is an open (infinite) end."""

    start: datetime | None
    end: datetime | None


def _add_months(d: datetime, n: int) -> datetime:
    months = d.year * 12 + d.month - 1 + n
    return d.replace(year=months // 12, month=months % 12 + 1)


def date_span(text: str) -> Span:
    """The instants a FHIR date/dateTime/instant covers at its precision. ValueError if bad."""
    m = _DATE.match(text)
    if not m:
        raise ValueError(text)
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    zone = UTC
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    if mo is None:
        start = datetime(int(y), 1, 1, tzinfo=UTC)
        return Span(start, _add_months(start, 12))
    if d is None:
        start = datetime(int(y), int(mo), 1, tzinfo=UTC)
        return Span(start, _add_months(start, 1))
    if hh is None:
        start = datetime(int(y), int(mo), int(d), tzinfo=UTC)
        return Span(start, start + timedelta(days=1))
    if ss is None:
        start = datetime(int(y), int(mo), int(d), int(hh), int(mi), tzinfo=zone)
        return Span(start, start + timedelta(minutes=1))
    start = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), tzinfo=zone)
    if frac is None:
        return Span(start, start + timedelta(seconds=1))
    start += timedelta(microseconds=int(frac.ljust(6, "0")))
    return Span(start, start + timedelta(microseconds=10 ** (6 - len(frac))))


def period_span(period: dict[str, Any]) -> Span:
    """A Period: a missing start is before any date, a missing end after any date."""
    start = date_span(period["start"]).start if period.get("start") else None
    end = date_span(period["end"]).end if period.get("end") else None
    return Span(start, end)


def _lt(a: datetime | None, b: datetime | None, a_low: bool, b_low: bool) -> bool:
    """a < b where None means -inf for a low end and +inf for a high end."""
    if a is None:
        return a_low and not (b is None and b_low)
    if b is None:
        return not b_low
    return a < b


def date_matches(prefix: str, search: Span, target: Span, now: datetime | None = None) -> Tri:
    """The prefix table of search.html#prsuffix on ranges (search value's and target's)."""
    s_lo, s_hi, t_lo, t_hi = search.start, search.end, target.start, target.end
    contains = not _lt(t_lo, s_lo, True, True) and not _lt(s_hi, t_hi, False, False)
    above = _lt(s_hi, t_hi, False, False)  # some of the target lies after the search range
    below = _lt(t_lo, s_lo, True, True)  # some of the target lies before it
    if prefix == "eq":
        return contains
    if prefix == "ne":
        return not contains
    if prefix == "gt":
        return above
    if prefix == "lt":
        return below
    if prefix == "ge":
        return above or contains
    if prefix == "le":
        return below or contains
    if prefix == "sa":  # starts after the end of the search range
        return t_lo is not None and s_hi is not None and t_lo >= s_hi
    if prefix == "eb":  # ends before the start of the search range
        return t_hi is not None and s_lo is not None and t_hi <= s_lo
    assert prefix == "ap"
    overlap = _lt(t_lo, s_hi, True, False) and _lt(s_lo, t_hi, True, False)
    if overlap:
        return True
    assert s_lo is not None and s_hi is not None
    now = now or datetime.now(UTC)
    slack = max(abs(now - s_lo) / 10, timedelta(days=1)) * 1.5 + timedelta(days=2)
    far = (t_hi is not None and t_hi < s_lo - slack) or (t_lo is not None and t_lo > s_hi + slack)
    return False if far else None


# ---------------------------------------------------------------- numbers (search.html#number)
def number_parts(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """(value, low, high) of a search number: 100 -> [99.5, 100.5), 100.00 -> [99.995, 100.005)."""
    if not re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?", text):
        raise ValueError(text)
    d = Decimal(text)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5).scaleb(exponent - 1)
    return d, d - half, d + half


def number_matches(prefix: str, text: str, target: Decimal) -> Tri:
    """Target values are points; the search value has the implicit range of its precision
    for eq/ne (and sa/eb, which are about that range); gt/lt/ge/le compare with the exact
    value ("gt100: values greater than exactly 100"). Exactly on a range end a float-based
    server may round either way: None."""
    d, lo, hi = number_parts(text)
    if prefix in ("eq", "ne", "sa", "eb") and target in (lo, hi):
        return None
    if prefix == "eq":
        return lo <= target < hi
    if prefix == "ne":
        return not lo <= target < hi
    if prefix == "gt":
        return target > d
    if prefix == "lt":
        return target < d
    if prefix == "ge":
        return target >= d
    if prefix == "le":
        return target <= d
    if prefix == "sa":
        return target >= hi
    if prefix == "eb":
        return target < lo
    assert prefix == "ap"
    gap, spread = abs(target - d), abs(d) / 10
    if gap == spread:
        return None
    return gap < spread


def dec(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


# ---------------------------------------------------------------- strings (search.html#string)
def fold(text: str) -> str:
    """Case- and accent-insensitive form: casefold, drop combining marks, one space per run."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return " ".join(stripped.split())


def string_matches(modifier: str | None, search: str, target: str) -> bool:
    if modifier == "exact":
        return target == search
    if modifier == "contains":
        return fold(search) in fold(target)
    return fold(target).startswith(fold(search))


# ---------------------------------------------------------------- _content (search.html#text)
# The server's documented choices (carerecord.fhir.text): words are runs of letters, digits and
# underscores of the folded text; one-letter words and words over 64 characters are not
# indexed; id, meta, resourceType, reference, system, url and (base64) data values and
# date/time values are not text; the narrative counts with its tags and entities removed.
_NOT_TEXT = {"id", "meta", "resourceType", "reference", "system", "url", "data", "div"}
_DATE_OR_TIME = re.compile(r"\d{4}-\d{2}(-\d{2}(T[\d:.]+(Z|[+-]\d{2}:\d{2})?)?)?|\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


def resource_words(r: Resource) -> set[str]:
    """Every word ``_content`` can find in ``r``."""
    texts: list[str] = []

    def visit(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else ((None, v) for v in node)
        for key, value in items:
            if key in _NOT_TEXT:
                continue
            if isinstance(value, str) and not _DATE_OR_TIME.fullmatch(value):
                texts.append(value)
            elif isinstance(value, dict | list):
                visit(value)

    visit(r)
    div = r.get("text", {}).get("div")
    if div:
        texts.append(re.sub(r"&[a-zA-Z#0-9]+;", " ", re.sub(r"<[^>]*>", " ", div)))
    return {w for t in texts for w in re.findall(r"\w+", fold(t)) if 1 < len(w) <= 64}


def content_matches(raw: str, r: Resource) -> bool:
    """Every word of the value starts some word of the resource."""
    words = resource_words(r)
    return all(any(w.startswith(s) for w in words) for s in re.findall(r"\w+", fold(unescape(raw))))


# ---------------------------------------------------------------- element views per data type
@dataclass(frozen=True)
class Tok:
    """One token-able value: system, code, and texts that :text searches."""

    system: str | None
    code: str | None
    texts: tuple[str, ...] = ()
    of_type: tuple[tuple[str | None, str], ...] = ()  # Identifier.type codings (system, code)


def coding(c: dict[str, Any]) -> Tok:
    return Tok(c.get("system"), c.get("code"), (c["display"],) if c.get("display") else ())


def concept(cc: dict[str, Any]) -> list[Tok]:
    out = [coding(c) for c in cc.get("coding", [])]
    if cc.get("text"):
        out.append(Tok(None, None, (cc["text"],)))
    return out


def identifier(i: dict[str, Any]) -> Tok:
    typ = i.get("type", {})
    return Tok(i.get("system"), i.get("value"), (typ["text"],) if typ.get("text") else (),
               tuple((c.get("system"), c["code"]) for c in typ.get("coding", []) if c.get("code")))


def code(value: Any) -> Tok:
    return Tok(None, ("true" if value else "false") if isinstance(value, bool) else str(value))


def token_matches(modifier: str | None, raw: str, tok: Tok) -> bool:
    if modifier == "text":
        return any(fold(t).startswith(fold(unescape(raw))) for t in tok.texts)
    if modifier == "of-type":
        system, type_code, value = (unescape(p) for p in split_unescaped(raw, "|"))
        return tok.code == value and (system, type_code) in tok.of_type
    parts = split_unescaped(raw, "|")
    if len(parts) == 1:
        return tok.code == unescape(parts[0])
    system, value = unescape(parts[0]), unescape(parts[1])
    if not system:
        return tok.system is None and tok.code == value
    if not value:
        return tok.system == system
    return tok.system == system and tok.code == value


@dataclass(frozen=True)
class Qty:
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None


def quantity(q: dict[str, Any]) -> list[Qty]:
    v = dec(q.get("value"))
    return [] if v is None else [Qty(v, q.get("system"), q.get("code"), q.get("unit"))]


def quantity_matches(raw: str, q: Qty) -> Tri:
    prefix, rest = split_prefix(raw)
    parts = split_unescaped(rest, "|")
    if len(parts) == 3:
        system, unit = unescape(parts[1]), unescape(parts[2])
        if system and (q.system != system or q.code != unit):
            return False
        if not system and unit not in (q.code, q.unit):  # "5.4||mg": code or unit, any system
            return False
    return number_matches(prefix, parts[0], q.value)


def split_prefix(raw: str) -> tuple[str, str]:
    if raw[:2] in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap") and len(raw) > 2:
        return raw[:2], raw[2:]
    return "eq", raw


@dataclass(frozen=True)
class Ref:
    """A Reference: its literal reference (relative Type/id, or absolute) and identifier."""

    reference: str | None
    ident: Tok | None = None

    def fragment(self) -> str | None:
        """The id a local reference ``#id`` names among the resources contained beside it."""
        ref = self.reference or ""
        return ref[1:] if ref.startswith("#") and len(ref) > 1 else None

    def local(self) -> tuple[str, str] | None:
        """(type, id) when the reference points into this server."""
        ref = self.reference or ""
        if ref.startswith(BASE + "/"):
            ref = ref[len(BASE) + 1:]
        m = re.fullmatch(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/.+)?", ref)
        return (m[1], m[2]) if m else None


def reference(r: dict[str, Any]) -> Ref:
    ident = r.get("identifier")
    return Ref(r.get("reference"), identifier(ident) if ident else None)


def reference_matches(modifier: str | None, raw: str, ref: Ref) -> bool:
    value = unescape(raw)
    if modifier == "identifier":
        return ref.ident is not None and token_matches(None, raw, ref.ident)
    local = ref.local()
    if modifier:  # :[type]
        return local == (modifier, value)
    if "://" in value:
        if value.startswith(BASE + "/"):
            return local is not None and "/".join(local) == value[len(BASE) + 1:]
        return ref.reference == value
    if "/" in value:
        return local is not None and "/".join(local) == value
    return local is not None and local[1] == value


# ---------------------------------------------------------------- parameters the tests use
Extract = Callable[[Resource], list[Any]]


def _list(v: Any) -> list[Any]:
    return [] if v is None else v if isinstance(v, list) else [v]


def _names(r: Resource) -> list[dict[str, Any]]:
    return _list(r.get("name"))


def _dates(*keys: str) -> Extract:
    """Span values of date/dateTime/instant elements and Periods named by ``keys``."""
    def get(r: Resource) -> list[Span]:
        out: list[Span] = []
        for k in keys:
            for v in _list(r.get(k)):
                out.append(period_span(v) if isinstance(v, dict) else date_span(v))
        return out
    return get


def _tokens(key: str, kind: Callable[[Any], Tok | list[Tok]]) -> Extract:
    def get(r: Resource) -> list[Tok]:
        out: list[Tok] = []
        for v in _list(r.get(key)):
            got = kind(v)
            out += got if isinstance(got, list) else [got]
        return out
    return get


def _refs(*keys: str) -> Extract:
    return lambda r: [reference(v) for k in keys for v in _list(r.get(k))]


def _components(r: Resource, with_self: bool) -> list[dict[str, Any]]:
    return ([r] if with_self else []) + _list(r.get("component"))


def _code_value_quantity(with_self: bool, with_components: bool) -> Extract:
    """Composite code$value-quantity: pairs from the same element (the Observation or one
    component)."""
    def get(r: Resource) -> list[tuple[list[Tok], list[Qty]]]:
        elements = ([r] if with_self else []) + (_list(r.get("component")) if with_components else [])
        return [(concept(e.get("code", {})), quantity(e["valueQuantity"]))
                for e in elements if "valueQuantity" in e]
    return get


def _meta(key: str, kind: Callable[[Any], Any]) -> Extract:
    return lambda r: [kind(v) for v in _list(r.get("meta", {}).get(key))]


COMMON: dict[str, tuple[str, Extract]] = {
    "_id": ("token", lambda r: [code(r["id"])]),
    "_lastUpdated": ("date", lambda r: [date_span(r["meta"]["lastUpdated"])]),
    "_tag": ("token", _meta("tag", coding)),
    "_security": ("token", _meta("security", coding)),
    "_profile": ("uri", _meta("profile", str)),
    "_source": ("uri", _meta("source", str)),
}

PARAMS: dict[str, dict[str, tuple[str, Extract]]] = {
    "Patient": {
        "family": ("string", lambda r: [n["family"] for n in _names(r) if n.get("family")]),
        "given": ("string", lambda r: [g for n in _names(r) for g in _list(n.get("given"))]),
        "name": ("string", lambda r: [p for n in _names(r) for k in ("family", "given", "prefix", "suffix", "text")
                                      for p in _list(n.get(k))]),
        "address-city": ("string", lambda r: [a["city"] for a in _list(r.get("address")) if a.get("city")]),
        "birthdate": ("date", _dates("birthDate")),
        "death-date": ("date", _dates("deceasedDateTime")),
        "gender": ("token", _tokens("gender", code)),
        "active": ("token", _tokens("active", code)),
        "identifier": ("token", _tokens("identifier", identifier)),
        "general-practitioner": ("reference", _refs("generalPractitioner")),
        "organization": ("reference", _refs("managingOrganization")),
    },
    "Location": {
        "name": ("string", lambda r: _list(r.get("name")) + _list(r.get("alias"))),
    },
    "Practitioner": {
        "identifier": ("token", _tokens("identifier", identifier)),
        "family": ("string", lambda r: [n["family"] for n in _names(r) if n.get("family")]),
        "name": ("string", lambda r: [p for n in _names(r) for k in ("family", "given", "prefix", "suffix", "text")
                                      for p in _list(n.get(k))]),
    },
    "Organization": {
        "name": ("string", lambda r: _list(r.get("name")) + _list(r.get("alias"))),
        "partof": ("reference", _refs("partOf")),
    },
    "Observation": {
        "code": ("token", _tokens("code", concept)),
        "category": ("token", _tokens("category", concept)),
        "status": ("token", _tokens("status", code)),
        "identifier": ("token", _tokens("identifier", identifier)),
        "value-quantity": ("quantity", lambda r: quantity(r["valueQuantity"]) if "valueQuantity" in r else []),
        "value-concept": ("token", _tokens("valueCodeableConcept", concept)),
        "value-string": ("string", lambda r: _list(r.get("valueString"))),
        "date": ("date", _dates("effectiveDateTime", "effectivePeriod", "effectiveInstant")),
        "subject": ("reference", _refs("subject")),
        # A local #id subject is kept: chains check the contained target is a Patient (TARGETS)
        "patient": ("reference", lambda r: [x for x in _refs("subject")(r)
                                            if (x.local() or ("",))[0] == "Patient" or x.fragment()]),
        "encounter": ("reference", _refs("encounter")),
        "performer": ("reference", _refs("performer")),
        "code-value-quantity": ("composite", _code_value_quantity(True, False)),
        "component-code-value-quantity": ("composite", _code_value_quantity(False, True)),
        "combo-code-value-quantity": ("composite", _code_value_quantity(True, True)),
    },
    "MedicationRequest": {
        "status": ("token", _tokens("status", code)),
        "subject": ("reference", _refs("subject")),
        "medication": ("reference", _refs("medicationReference")),
        "requester": ("reference", _refs("requester")),
    },
    "DiagnosticReport": {
        "status": ("token", _tokens("status", code)),
        "result": ("reference", _refs("result")),
        "subject": ("reference", _refs("subject")),
    },
    "Medication": {
        "code": ("token", _tokens("code", concept)),
        "manufacturer": ("reference", _refs("manufacturer")),
    },
    "Encounter": {
        "date": ("date", _dates("period")),
        "subject": ("reference", _refs("subject")),
        "patient": ("reference", lambda r: [x for x in _refs("subject")(r)
                                            if (x.local() or ("",))[0] == "Patient"]),
        "status": ("token", _tokens("status", code)),
        "service-provider": ("reference", _refs("serviceProvider")),
    },
    "RiskAssessment": {
        "probability": ("number", lambda r: [v for p in _list(r.get("prediction"))
                                             if (v := dec(p.get("probabilityDecimal"))) is not None]),
        "subject": ("reference", _refs("subject")),
    },
    "ValueSet": {
        "url": ("uri", lambda r: _list(r.get("url"))),
        "name": ("string", lambda r: _list(r.get("name"))),
    },
    "Provenance": {
        "target": ("reference", _refs("target")),
        "agent": ("reference", lambda r: [reference(a["who"]) for a in _list(r.get("agent")) if "who" in a]),
    },
}

TARGETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("Patient", "general-practitioner"): ("Organization", "Practitioner", "PractitionerRole"),
    ("Patient", "organization"): ("Organization",),
    ("Organization", "partof"): ("Organization",),
    ("Observation", "subject"): ("Group", "Device", "Patient", "Location"),
    ("Observation", "patient"): ("Patient",),
    ("Observation", "encounter"): ("Encounter",),
    ("Observation", "performer"): ("Practitioner", "PractitionerRole", "Organization", "CareTeam",
                                   "Patient", "RelatedPerson"),
    ("MedicationRequest", "subject"): ("Patient", "Group"),
    ("MedicationRequest", "medication"): ("Medication",),
    ("MedicationRequest", "requester"): ("Practitioner", "Organization", "Patient", "RelatedPerson", "Device",
                                         "PractitionerRole"),
    ("Medication", "manufacturer"): ("Organization",),
    ("Encounter", "subject"): ("Patient", "Group"),
    ("Encounter", "patient"): ("Patient",),
    ("Encounter", "service-provider"): ("Organization",),
    ("RiskAssessment", "subject"): ("Patient", "Group"),
    ("Provenance", "target"): ("*",),
    ("Provenance", "agent"): ("Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Device",
                              "Organization"),
}


def param(res_type: str, name: str) -> tuple[str, Extract]:
    if name in COMMON:
        return COMMON[name]
    return PARAMS[res_type][name]


def knows(res_type: str, name: str) -> bool:
    """Whether ``res_type`` has the parameter that a (chained) ``name`` starts with."""
    if name.startswith("_has:"):
        return True
    code_ = name.partition(".")[0].partition(":")[0]
    return code_ in COMMON or code_ in PARAMS.get(res_type, {})


# ---------------------------------------------------------------- evaluating a whole search
class Oracle:
    """Brute-force search over ``resources`` (the dataset as the server returned it, so that
    ``meta`` is filled in)."""

    def __init__(self, resources: Iterable[Resource], now: datetime | None = None) -> None:
        self.resources = list(resources)
        self.by_key = {(r["resourceType"], r["id"]): r for r in self.resources}
        self.now = now
        # Contained resources (references.html#contained) by identity: their container.
        self.container: dict[int, Resource] = {id(c): r for r in self.resources for c in r.get("contained", [])}

    def resolve(self, r: Resource, ref: Ref) -> Resource | None:
        """The resource ``ref`` (a reference in ``r``) points at: a resource on this server by
        type and id, or, for ``#id``, the resource of that id contained in ``r`` (or beside
        ``r``, when ``r`` is itself contained); None for anything else."""
        fragment = ref.fragment()
        if fragment is None:
            return self.by_key.get(ref.local() or ("", ""))
        home = self.container.get(id(r), r)
        found = [c for c in home.get("contained", []) if c.get("id") == fragment]
        return found[0] if found else None

    def referrers(self, r: Resource, src: str) -> list[tuple[Resource, Callable[[Ref], bool]]]:
        """The resources of type ``src`` that could refer to ``r``, each with a test of whether
        one of their references names it: a contained resource is named only by ``#id`` from
        within its own container (the container and the others it holds); a resource by type
        and id from the resources stored (not from ones contained in them)."""
        home = self.container.get(id(r))
        if home is None:
            return [(s, lambda x: x.local() == (r["resourceType"], r["id"])) for s in self.resources
                    if s["resourceType"] == src]
        return [(s, lambda x: x.fragment() == r["id"]) for s in [home, *home.get("contained", [])]
                if s["resourceType"] == src and s is not r]

    def select(self, res_type: str, query: list[tuple[str, str]]) -> tuple[set[str], set[str]]:
        """(ids that must match, ids that may match) of ``res_type`` for the AND of ``query``."""
        must, may = set(), set()
        for r in self.resources:
            if r["resourceType"] != res_type:
                continue
            got = self.matches(r, query)
            if got is True:
                must.add(r["id"])
            elif got is None:
                may.add(r["id"])
        return must, may

    def matches(self, r: Resource, query: list[tuple[str, str]]) -> Tri:
        return _all(self.clause(r, name, value) for name, value in query)

    def clause(self, r: Resource, name: str, raw: str) -> Tri:
        """One name=value pair: OR over its comma-separated values."""
        if name.startswith("_has:"):
            _, src, ref_param, rest = name.split(":", 3)
            return _any(self.matches(s, [(rest, raw)]) for s, names in self.referrers(r, src)
                        if any(names(x) for x in param(src, ref_param)[1](s)))
        if name == "_content":
            return any(content_matches(v, r) for v in split_unescaped(raw, ","))
        head, _, tail = name.partition(".")
        code_, _, modifier = head.partition(":")
        mod = modifier or None
        ptype, extract = param(r["resourceType"], code_)
        if tail:  # chain: resolve each reference and test the rest on the target
            allowed = (mod,) if mod else TARGETS[(r["resourceType"], code_)]
            targets = [self.resolve(r, x) for x in extract(r)]
            return _any(self.matches(t, [(tail, raw)]) for t in targets
                        if t is not None and ("*" in allowed or t["resourceType"] in allowed)
                        and knows(t["resourceType"], tail))
        values = extract(r)
        if mod == "missing":
            return (not values) == (raw == "true")
        if ptype == "composite":
            return _any(_any(self.composite(v, part) for v in values)
                        for part in split_unescaped(raw, ","))
        ors = split_unescaped(raw, ",")
        if ptype == "token" and mod == "not":
            return not any(token_matches(None, o, v) for o in ors for v in values)
        return _any(self.value(ptype, mod, o, v) for o in ors for v in values)

    def value(self, ptype: str, mod: str | None, raw: str, v: Any) -> Tri:
        if ptype == "string":
            return string_matches(mod, unescape(raw), v)
        if ptype == "token":
            return token_matches(mod, raw, v)
        if ptype == "uri":
            s = unescape(raw)
            if mod == "below":
                return v.startswith(s)
            if mod == "above":
                return s.startswith(v)
            return v == s
        if ptype == "date":
            prefix, rest = split_prefix(raw)
            return date_matches(prefix, date_span(rest), v, self.now)
        if ptype == "number":
            prefix, rest = split_prefix(raw)
            return number_matches(prefix, rest, v)
        if ptype == "quantity":
            return quantity_matches(raw, v)
        if ptype == "reference":
            return reference_matches(mod, raw, v)
        raise AssertionError(ptype)

    @staticmethod
    def composite(v: tuple[list[Tok], list[Qty]], raw: str) -> Tri:
        code_part, qty_part = split_unescaped(raw, "$")
        return _all([any(token_matches(None, code_part, t) for t in v[0]),
                     _any(quantity_matches(qty_part, q) for q in v[1])])


def _any(items: Iterable[Tri]) -> Tri:
    result: Tri = False
    for x in items:
        if x is True:
            return True
        if x is None:
            result = None
    return result


def _all(items: Iterable[Tri]) -> Tri:
    result: Tri = True
    for x in items:
        if x is False:
            return False
        if x is None:
            result = None
    return result
