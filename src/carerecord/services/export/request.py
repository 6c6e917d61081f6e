"""The kick-off of a bulk export: what is asked for, and whether the caller may ask it
(http://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

Deny by default. Only system clients export (SMART Backend Services): bulk export is not a care
interaction, so staff and patients are refused (403) whatever their scopes. A type is exported
only when the client's ``system/`` scopes allow both reading and searching it without a query
restriction; without ``_type`` that is every type they allow (of the Patient compartment for a
Patient or Group export), and none at all is a 403. A type asked for by ``_type`` or
``_typeFilter`` that the scopes do not allow is a 403 too (a decision about the type, not about
any patient).

Parameters, from the query string of a GET kick-off or the Parameters body of a POST one
(:func:`parameters`): ``_type`` (comma separated, repeatable), ``_since`` (a FHIR instant:
resources changed after it), ``_outputFormat`` (``application/fhir+ndjson``,
``application/ndjson`` or ``ndjson``), ``_typeFilter`` (comma separated, repeatable: FHIR search
queries ``Type?criteria``; a type with several is exported where any matches, a type with none
whole). A filter is a search like any other, run through the same guarded searcher as every page
of the export, so it only ever narrows what the client may export: it names a type the export
holds (among ``_type`` when given), uses search parameters of that type and no result parameter
(``_sort``, ``_include``, ``_count``...); anything else is a 400 naming it.

``_elements`` (comma separated, repeatable; H055): ``Type.element`` or a bare ``element``, root
elements only. Each exported resource keeps its mandatory elements and those listed for its
type or bare, and is marked SUBSETTED (:mod:`carerecord.fhir.subset`, the search's own code). A
type the export does not hold, a type without that element, a bare element of none of the
export's types or a path below the root is a 400 naming it.

``patient`` (Patient and Group level; H055): one ``valueReference`` per patient in the
Parameters body of a POST kick-off (``Patient/id``, or the absolute URL on this server). The
export then holds nothing of any other patient: only the resources all of whose Patient
compartments are those of listed patients (for a Group, listed current members). A listed
patient who is unknown, deleted, not a member or one the client may not see (a secondary-use
client and a patient with the national data opt-out) contributes nothing, alike; no error tells
them apart. On a system export, in a query string, or naming anything but a Patient of this
server it is a 400, even under lenient handling: ignored, it would widen the export.

``includeAssociatedData`` (comma separated, repeatable): ``RelevantProvenanceResources`` adds
every Provenance whose ``target`` is an exported resource (through the guard; the client's
scopes must allow exporting Provenance, else 403). ``LatestProvenanceResources`` and custom
``_`` values are not supported, and any other value is not one: a 400 naming it.

Any other parameter is refused with 400. Under ``Prefer: handling=lenient``, as the
specification allows, an unsupported parameter, an unsupported ``includeAssociatedData`` value
and an ``_elements`` entry that fits no exported type are ignored instead, and reported
(:attr:`ExportRequest.notes`, warnings in the kick-off's answer). Each error names where the
value was: the parameter (a query string) or ``Parameters.parameter[n].value...`` (a body).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from carerecord.access.principal import Kind, Principal
from carerecord.access.scopes import Verdict
from carerecord.errors import FhirError, Forbidden, Invalid
from carerecord.fhir import model
from carerecord.fhir.dates import date_range
from carerecord.fhir.references import local_reference, split_relative
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import RESULT_PARAMS, Query, parse
from carerecord.fhir.subset import element_keys
from carerecord.store import codesystems
from carerecord.store.repository import Repository

SYSTEM, PATIENT, GROUP = "system", "patient", "group"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {NDJSON: NDJSON, "application/ndjson": "application/ndjson", "ndjson": NDJSON}
LATEST_PROVENANCE, RELEVANT_PROVENANCE = "LatestProvenanceResources", "RelevantProvenanceResources"
ASSOCIATED_DATA = (LATEST_PROVENANCE, RELEVANT_PROVENANCE)  # and custom values starting with _
SUPPORTED_ASSOCIATED_DATA = (RELEVANT_PROVENANCE,)
_KNOWN = ("_outputFormat", "_since", "_type", "_typeFilter", "_elements", "patient", "includeAssociatedData")
_ALWAYS_ALLOWED = ("_format",)  # the format of the kick-off's own answers (OperationOutcomes)
_NOT_AT_SYSTEM_LEVEL = ("patient",)


def supported_parameters(level: str) -> tuple[str, ...]:
    """The kick-off parameters this server supports at ``level``."""
    return tuple(p for p in _KNOWN if level != SYSTEM or p not in _NOT_AT_SYSTEM_LEVEL)


def documentation(level: str) -> str:
    """What the CapabilityStatement says of the ``$export`` at ``level``: the parameters (and
    values) this server supports there, from the same constants :func:`parse_request` uses."""
    detail = {"_outputFormat": f"_outputFormat ({', '.join(OUTPUT_FORMATS)})",
              "patient": "patient (POST only, a valueReference each)",
              "includeAssociatedData": f"includeAssociatedData ({', '.join(SUPPORTED_ASSOCIATED_DATA)})"}
    names = [detail.get(p, p) for p in supported_parameters(level)]
    return (f"Supported parameters: {', '.join(names)}. An unsupported parameter or value is refused with 400 "
            "unless the client sends Prefer: handling=lenient (then ignored, and reported at kick-off).")


@dataclass(frozen=True, slots=True)
class Param:
    """One kick-off parameter: its name, its value as text, where it was (for errors), and
    whether it was a ``valueReference`` of a Parameters body (the value is its ``reference``)."""

    name: str
    value: str
    at: str
    reference: bool = False


@dataclass(frozen=True, slots=True)
class TypeFilter:
    """One ``_typeFilter`` query: the type and its search criteria (a query string), already
    parsed once against the registry (:func:`filter_query` parses it again for each run)."""

    res_type: str
    criteria: str
    at: str


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """One kick-off: the level (``system``, ``patient``, ``group`` and the Group's id), the
    resource types to export (already checked against the scopes), ``_since`` in microseconds,
    the media type of the output files, the kick-off's path after the FHIR base with its query
    (a POST's parameters written as one: its audit records name it), whether it was POSTed (the
    manifest's ``request`` is the base and the path, with the query for a GET only), and the
    ``_typeFilter`` queries."""

    level: str
    group: str | None
    types: tuple[str, ...]
    since_us: int | None
    media: str
    path_and_query: str
    post: bool = False
    filters: tuple[TypeFilter, ...] = ()
    elements: tuple[tuple[str | None, str], ...] = ()  # _elements: (type, or None for any; element)
    patients: tuple[str, ...] | None = None  # patient: the ids asked for (None: not asked)
    associated: tuple[str, ...] = ()  # includeAssociatedData values (supported ones only)
    notes: tuple[str, ...] = ()  # what lenient handling ignored, reported at kick-off

    def filters_of(self, res_type: str) -> list[TypeFilter]:
        return [f for f in self.filters if f.res_type == res_type]

    @property
    def by_member(self) -> bool:
        """Whether the export walks patients one by one (a Group's members, or ``patient``)."""
        return self.level == GROUP or self.patients is not None

    def elements_of(self, res_type: str) -> tuple[str, ...] | None:
        """The ``_elements`` a ``res_type`` keeps besides its mandatory ones; None: all of it."""
        if not self.elements:
            return None
        return tuple(e for t, e in self.elements if t is None or t == res_type)


@cache
def compartment_types() -> frozenset[str]:
    """The types a Patient or Group export holds: Patient and its compartment's types."""
    return frozenset(model.patient_compartment()) | {"Patient"}


def may_export(principal: Principal, res_type: str) -> bool:
    """Whether the client's scopes allow exporting ``res_type``: read and search, system
    context, no query restriction."""
    return all(principal.scopes.decide("system", res_type, letter).verdict is Verdict.ALLOWED
               for letter in ("r", "s"))


def check_caller(principal: Principal) -> None:
    """Forbidden unless the caller is a system client (staff and patients never export)."""
    if principal.kind is not Kind.SYSTEM:
        raise Forbidden("Bulk export is for system clients (SMART Backend Services) only; it is not a "
                        "care interaction")


def query_parameters(params: list[tuple[str, str]]) -> list[Param]:
    """A GET kick-off's query string as parameters, each located by its name."""
    return [Param(k, v, k) for k, v in params]


def parameters(body: dict[str, Any]) -> list[Param]:
    """A POST kick-off's Parameters resource as parameters; 400 for another resource, or a
    parameter without a name or without exactly one simple value."""
    if body.get("resourceType") != "Parameters":
        raise Invalid("The body of a bulk export kick-off must be a Parameters resource", "resourceType")
    out = []
    for n, p in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{n}]"
        values = [(k, v) for k, v in p.items() if k.startswith("value")] if isinstance(p, dict) else []
        name = p.get("name") if isinstance(p, dict) else None
        if not isinstance(name, str) or not name:
            raise Invalid("Each parameter needs a name", f"{where}.name")
        if name == "patient":
            ref = values[0][1] if len(values) == 1 and values[0][0] == "valueReference" else None
            if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
                raise Invalid("patient needs one valueReference with a literal reference (Patient/id)", where)
            out.append(Param(name, ref["reference"], f"{where}.valueReference", reference=True))
            continue
        if name in _KNOWN and (len(values) != 1 or not isinstance(values[0][1], str)):
            raise Invalid(f"{name} needs one value (valueString, valueInstant or valueCode)", where)
        key, value = values[0] if len(values) == 1 else ("value", None)
        out.append(Param(name, value if isinstance(value, str) else "", f"{where}.{key}"))
    return out


def as_query(params: list[Param]) -> str:
    """Parameters written as a query string (a POST kick-off's, for its audit records)."""
    return urlencode([(p.name, p.value) for p in params])


def parse_request(level: str, group: str | None, params: list[Param], principal: Principal,
                  path_and_query: str, registry: SearchParamRegistry, *, lenient: bool = False,
                  post: bool = False, base: str | None = None) -> ExportRequest:
    """The export asked for by a kick-off's ``params``; Invalid (400) for a bad or unsupported
    parameter, Forbidden (403) for a caller or type the scopes do not allow. ``base``: this
    server's, for absolute ``patient`` references."""
    check_caller(principal)
    notes: list[str] = []
    unknown = [p for p in params if p.name not in _KNOWN and p.name not in _ALWAYS_ALLOWED]
    if unknown:
        names = ", ".join(sorted({p.name for p in unknown}))
        if not lenient:
            raise Invalid(f"Bulk export does not support the parameter(s) {names}; send "
                          "Prefer: handling=lenient to have them ignored", unknown[0].at)
        notes.append(f"Bulk export does not support the parameter(s) {names}: ignored")
    patients = _patients(level, [p for p in params if p.name == "patient"], base)
    media = _output_format([p for p in params if p.name == "_outputFormat"])
    since = _since([p for p in params if p.name == "_since"])
    asked = [(t.strip(), p.at) for p in params if p.name == "_type" for t in p.value.split(",") if t.strip()]
    candidates = compartment_types() if level in (PATIENT, GROUP) else model.resource_types()
    for t, at in asked:
        _check_type(principal, t, candidates, "_type", at)
    filters = [f for p in params if p.name == "_typeFilter" for f in _type_filters(p, registry)]
    for f in filters:
        _check_type(principal, f.res_type, candidates, "_typeFilter", f.at)
        if asked and f.res_type not in {t for t, _ in asked}:
            raise Invalid(f"_typeFilter: {f.res_type} is not among the types _type asks for", f.at)
    types = tuple(dict.fromkeys(t for t, _ in asked)) if asked else tuple(sorted(t for t in candidates
                                                                               if may_export(principal, t)))
    if not types:
        raise Forbidden("The client's scopes allow reading no resource type, so there is nothing it "
                        "may export")
    associated = _associated([p for p in params if p.name == "includeAssociatedData"], principal, lenient, notes)
    held = {*types, *(["Provenance"] if associated else [])}
    elements = _elements([p for p in params if p.name == "_elements"], held, lenient, notes)
    return ExportRequest(level, group, types, since, media, path_and_query, post, tuple(filters),
                         elements, patients, associated, tuple(notes))


def _patients(level: str, values: list[Param], base: str | None) -> tuple[str, ...] | None:
    """The ids of the ``patient`` parameters (None: none given). Never ignored, even under
    lenient handling: the export without the restriction would hold other patients' data."""
    if not values:
        return None
    if level == SYSTEM:
        raise Invalid("patient restricts a Patient or Group export (Patient/$export, Group/[id]/$export); "
                      "a system export takes none", values[0].at)
    ids = []
    for p in values:
        if not p.reference:
            raise Invalid("patient takes a valueReference in the Parameters body of a POST kick-off, "
                          "not a query parameter", p.at)
        pair = split_relative(local_reference(p.value.strip(), base))
        if pair is None or pair[0] != "Patient":
            raise Invalid(f"patient: {p.value!r} is not a reference to a Patient on this server "
                          "(Patient/id)", p.at)
        ids.append(pair[1])
    return tuple(sorted(set(ids)))


def _associated(values: list[Param], principal: Principal, lenient: bool, notes: list[str]) -> tuple[str, ...]:
    """The supported ``includeAssociatedData`` values asked for. A value that is none of the
    specification's nor a custom ``_`` one is a 400; one this server does not support is a 400
    too, or ignored and noted under lenient handling; RelevantProvenanceResources needs the
    scopes to export Provenance (403)."""
    out: list[str] = []
    for p in values:
        for raw in p.value.split(","):
            v = raw.strip()
            if not v:
                continue
            if v not in ASSOCIATED_DATA and not v.startswith("_"):
                raise Invalid(f"includeAssociatedData: {v!r} is none of {', '.join(ASSOCIATED_DATA)} "
                              "nor a custom value starting with _", p.at)
            if v not in SUPPORTED_ASSOCIATED_DATA:
                problem = (f"includeAssociatedData: {v} is not supported; this server supports "
                           f"{', '.join(SUPPORTED_ASSOCIATED_DATA)}")
                if not lenient:
                    raise Invalid(f"{problem}. Send Prefer: handling=lenient to have it ignored", p.at)
                notes.append(f"{problem}: ignored")
                continue
            if v not in out:
                out.append(v)
    if out and not may_export(principal, "Provenance"):
        raise Forbidden("includeAssociatedData: the client's scopes do not allow exporting Provenance "
                        "(system/Provenance.rs is needed)")
    return tuple(out)


def _elements(values: list[Param], held: set[str], lenient: bool,
              notes: list[str]) -> tuple[tuple[str | None, str], ...]:
    """The ``_elements`` entries, each ``(type, element)`` or ``(None, element)``, checked
    against the types the export holds (``held``): a 400 naming a bad one, or, under lenient
    handling, ignored and noted."""
    out: list[tuple[str | None, str]] = []
    for p in values:
        for raw in p.value.split(","):
            entry = raw.strip()
            if not entry:
                continue
            parts = entry.split(".")
            res_type: str | None = parts[0] if len(parts) == 2 else None
            name = parts[-1]
            if len(parts) > 2 or not name or (res_type is not None and not res_type[:1].isupper()):
                problem = f"{entry!r} is not [Type.]element (root elements only)"
            elif res_type is not None and res_type not in model.resource_types():
                problem = f"{entry}: {res_type} is not a FHIR R4 resource type"
            elif res_type is not None and res_type not in held:
                problem = f"{entry}: this export holds no {res_type}"
            elif res_type is not None and element_keys(res_type, name) is None:
                problem = f"{entry}: {res_type} has no element {name}"
            elif res_type is None and not any(element_keys(t, name) is not None for t in held):
                problem = f"{entry}: none of the types this export holds has an element {name}"
            else:
                if (res_type, name) not in out:
                    out.append((res_type, name))
                continue
            if not lenient:
                raise Invalid(f"_elements: {problem}", p.at)
            notes.append(f"_elements: {problem}: ignored")
    return tuple(out)


def _check_type(principal: Principal, t: str, candidates: frozenset[str], name: str, at: str) -> None:
    if t not in model.resource_types():
        raise Invalid(f"{name}: {t!r} is not a FHIR R4 resource type", at)
    if t not in candidates:
        raise Invalid(f"{name}: {t} is in no Patient compartment, so a Patient or Group export "
                      "holds none", at)
    if not may_export(principal, t):
        raise Forbidden(f"The client's scopes do not allow exporting {t} (system/{t}.rs is needed)")


def _type_filters(p: Param, registry: SearchParamRegistry) -> list[TypeFilter]:
    """The queries of one ``_typeFilter`` value (comma separated ``Type?criteria``, each URL
    encoded within it), each parsed to check it."""
    out = []
    for raw in p.value.split(","):
        res_type, sep, criteria = raw.strip().partition("?")
        if not sep or not criteria or not res_type:
            raise Invalid(f"_typeFilter: {raw.strip()!r} is not a search query Type?criteria", p.at)
        f = TypeFilter(res_type, criteria, p.at)
        if res_type in model.resource_types():
            filter_query(f, registry)
        out.append(f)
    return out


def filter_query(f: TypeFilter, registry: SearchParamRegistry, base: str | None = None) -> Query:
    """The search of a ``_typeFilter`` query; Invalid (naming where it was) when it is not one
    this export can run: no criteria, a result parameter, an unknown search parameter or a bad
    value."""
    pairs = parse_qsl(f.criteria, keep_blank_values=True)
    if not pairs:
        raise Invalid(f"_typeFilter: {f.res_type}?{f.criteria} has no search criteria", f.at)
    for name, _ in pairs:
        if name.split(":")[0] in RESULT_PARAMS | {"_format", "_pretty"}:
            raise Invalid(f"_typeFilter: {name} is a result parameter, not a search criterion; "
                          "a filter can only narrow what is exported", f.at)
    try:
        q = parse((f.res_type,), pairs, registry, base)
    except FhirError as err:
        raise Invalid(f"_typeFilter: {f.res_type}?{f.criteria}: {err.message}", f.at) from None
    if q.unknown:
        raise Invalid(f"_typeFilter: {f.res_type} has no search parameter {', '.join(q.unknown)}", f.at)
    return q


def check_filters(repo: Repository, req: ExportRequest) -> None:
    """Resolve the ``:below``/``:above`` codes of every ``_typeFilter`` query now (an unknown
    code system is a 400 naming the filter), so that the job does not fail on it later."""
    with repo.reading() as conn:
        for f in req.filters:
            q = filter_query(f, repo.registry)
            try:
                codesystems.resolve(conn, q)
            except FhirError as err:
                raise Invalid(f"_typeFilter: {f.res_type}?{f.criteria}: {err.message}", f.at) from None


def _output_format(values: list[Param]) -> str:
    if not values:
        return NDJSON
    if len(values) > 1:
        raise Invalid("_outputFormat may be given once", values[1].at)
    found = OUTPUT_FORMATS.get(values[0].value.strip().lower())
    if found is None:
        raise Invalid(f"_outputFormat {values[0].value!r} is not supported; use application/fhir+ndjson, "
                      "application/ndjson or ndjson", values[0].at)
    return found


def _since(values: list[Param]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise Invalid("_since may be given once", values[1].at)
    try:
        return date_range(values[0].value.strip())[0]
    except ValueError as exc:
        raise Invalid(f"_since must be a FHIR instant: {exc}", values[0].at) from None
