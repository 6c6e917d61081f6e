"""The kick-off of a bulk export: what is asked for, and whether the caller may ask it
(http://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

Deny by default. Only system clients export (SMART Backend Services): bulk export is not a care
interaction, so staff and patients are refused (403) whatever their scopes. A type is exported
only when the client's ``system/`` scopes allow both reading and searching it without a query
restriction; without ``_type`` that is every type they allow (of the Patient compartment for a
Patient or Group export), and none at all is a 403. A type asked for by ``_type`` that the
scopes do not allow is a 403 too (a decision about the type, not about any patient).

Parameters: ``_type`` (comma separated, repeatable), ``_since`` (a FHIR instant: resources
changed after it), ``_outputFormat`` (``application/fhir+ndjson``, ``application/ndjson`` or
``ndjson``). Any other parameter (``_typeFilter``, ``_elements``, ``patient``,
``includeAssociatedData``...) is refused with 400 unless the client sent ``Prefer:
handling=lenient``, as the specification asks of a server that does not support it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from carerecord.access.principal import Kind, Principal
from carerecord.access.scopes import Verdict
from carerecord.errors import Forbidden, Invalid
from carerecord.fhir import model
from carerecord.fhir.dates import date_range

SYSTEM, PATIENT, GROUP = "system", "patient", "group"
NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = {NDJSON: NDJSON, "application/ndjson": "application/ndjson", "ndjson": NDJSON}
_KNOWN = ("_type", "_since", "_outputFormat")
_ALWAYS_ALLOWED = ("_format",)  # the format of the kick-off's own answers (OperationOutcomes)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """One kick-off: the level (``system``, ``patient``, ``group`` and the Group's id), the
    resource types to export (already checked against the scopes), ``_since`` in microseconds,
    the media type of the output files, and the kick-off's path after the FHIR base with its
    query (the manifest's ``request`` is the base and this; its audit records name it)."""

    level: str
    group: str | None
    types: tuple[str, ...]
    since_us: int | None
    media: str
    path_and_query: str


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


def parse_request(level: str, group: str | None, params: list[tuple[str, str]], principal: Principal,
                  path_and_query: str, *, lenient: bool = False) -> ExportRequest:
    """The export asked for by a kick-off's query ``params``; Invalid (400) for a bad or
    unsupported parameter, Forbidden (403) for a caller or type the scopes do not allow."""
    check_caller(principal)
    unknown = sorted({k for k, _ in params if k not in _KNOWN and k not in _ALWAYS_ALLOWED})
    if unknown and not lenient:
        raise Invalid(f"Bulk export does not support the parameter(s) {', '.join(unknown)}; send "
                      "Prefer: handling=lenient to have them ignored", unknown[0])
    media = _output_format([v for k, v in params if k == "_outputFormat"])
    since = _since([v for k, v in params if k == "_since"])
    asked = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    candidates = compartment_types() if level in (PATIENT, GROUP) else model.resource_types()
    for t in asked:
        if t not in model.resource_types():
            raise Invalid(f"_type: {t!r} is not a FHIR R4 resource type", "_type")
        if t not in candidates:
            raise Invalid(f"_type: {t} is in no Patient compartment, so a Patient or Group export "
                          "holds none", "_type")
        if not may_export(principal, t):
            raise Forbidden(f"The client's scopes do not allow exporting {t} (system/{t}.rs is needed)")
    types = tuple(dict.fromkeys(asked)) if asked else tuple(sorted(t for t in candidates
                                                                   if may_export(principal, t)))
    if not types:
        raise Forbidden("The client's scopes allow reading no resource type, so there is nothing it "
                        "may export")
    return ExportRequest(level, group, types, since, media, path_and_query)


def _output_format(values: list[str]) -> str:
    if not values:
        return NDJSON
    if len(values) > 1:
        raise Invalid("_outputFormat may be given once", "_outputFormat")
    found = OUTPUT_FORMATS.get(values[0].strip().lower())
    if found is None:
        raise Invalid(f"_outputFormat {values[0]!r} is not supported; use application/fhir+ndjson, "
                      "application/ndjson or ndjson", "_outputFormat")
    return found


def _since(values: list[str]) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise Invalid("_since may be given once", "_since")
    try:
        return date_range(values[0].strip())[0]
    except ValueError as exc:
        raise Invalid(f"_since must be a FHIR instant: {exc}", "_since") from None
