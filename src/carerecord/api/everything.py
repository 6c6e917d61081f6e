"""``Patient/{id}/$everything`` (http://hl7.org/fhir/R4/patient-operation-everything.html):
the patient's record in one paged searchset Bundle, the NHS App's "view my record" path.

The matches are every resource in the patient's compartment (the Patient itself included),
paged in storage order like a compartment search, and each page also carries the resources its
matches refer to that are in no Patient compartment (Practitioners, Organizations,
Locations, Medications...). Everything runs through the request's guard
(``GuardedSearcher.everything``): the compartment search is held to the permitted
compartments and role types in SQL and then filtered for consent, labels and redaction;
included resources are guarded round by round. So a patient gets their own record, a proxy
the record of a patient granted to them, staff what their relationship, role and the
patient's consent allow; an unknown and a forbidden patient answer alike (404), as a read
does. The AuditTrail records it as an operation with the patient and every resource
returned (the guard notes them on the request state).

Parameters (query string for GET; a Parameters resource or a form for POST):

- ``start`` and ``end`` (dates): only the care of that range. They apply to each resource's care
  date (:mod:`carerecord.fhir.care_dates`: an Observation's effective time, an Encounter's
  period, a Condition from onset to abatement, a prescription while it is active), not to when
  it was recorded; a resource without a care date is included, as are allergies and family
  history (standing facts), and the referenced reference data. Either may be left out (open
  range). An informational OperationOutcome entry says so on every page;
- ``_since`` (instant): only resources last updated at or after it;
- ``_type``: comma-separated resource types to return (matches and referenced ones alike);
- ``_count``: page size (capped at ``max_page_size``); the Bundle's ``next``/``previous``
  links carry a keyset ``_cursor`` and the parameters above, so paging stays honest while the
  record changes.

A bad value of any of them is a 400 OperationOutcome naming the parameter. Any other parameter
is reported in an OperationOutcome entry and not applied, and refused with 400 under ``Prefer:
handling=strict``. Types the token's scopes do not allow (search for compartment types, read for
referenced ones) are left out, as the role's unreadable types are.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from carerecord.access.principal import Principal
from carerecord.access.scopes import Verdict
from carerecord.api import bundles, guarded
from carerecord.api.auth import principal
from carerecord.api.context import Context
from carerecord.api.http import fhir_response, prefer, read_body, response_format
from carerecord.errors import Invalid, Issue
from carerecord.fhir import model
from carerecord.fhir.dates import date_range
from carerecord.fhir.search_query import parse, parse_int
from carerecord.store.care_dates import care_condition
from carerecord.store.search import SearchResult

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Patient-everything"
_KNOWN = frozenset({"start", "end", "_since", "_type", "_count", "_cursor", "_format"})
_LINKED = ("start", "end", "_since", "_type", "_count")  # carried by the page links


def compartment_types() -> frozenset[str]:
    """The types a Patient compartment can hold (the Patient itself included)."""
    return frozenset(model.patient_compartment()) | {"Patient"}


async def _params(request: Request) -> list[tuple[str, str]]:
    """The operation's parameters: the query string, plus a POSTed Parameters resource or form."""
    params = list(request.query_params.multi_items())
    if request.method != "POST" or not await request.body():
        return params
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        form = await request.form()
        return params + [(k, str(v)) for k, v in form.multi_items()]
    body = await read_body(request)
    if body.get("resourceType") != "Parameters":
        raise Invalid("The body of $everything must be a Parameters resource", "resourceType")
    for n, p in enumerate(body.get("parameter") or []):
        value = next((v for k, v in p.items() if k.startswith("value")), None) if isinstance(p, dict) else None
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise Invalid("Each parameter of $everything needs a simple value", f"Parameters.parameter[{n}]")
        params.append((str(p.get("name", "")), str(value)))
    return params


def _allowed(who: Principal, res_type: str, letter: str) -> bool:
    """Whether the token's scopes allow ``letter`` on ``res_type`` without a query restriction
    (a restricted scope cannot be applied to a whole record, so it allows nothing here)."""
    return who.scopes.decide_any(who.scope_contexts, res_type, letter).verdict is Verdict.ALLOWED


def _types(params: list[tuple[str, str]]) -> frozenset[str] | None:
    """The ``_type`` filter (None: every type); 400 naming ``_type`` for an unknown type."""
    named = [t.strip() for k, v in params if k == "_type" for t in v.split(",") if t.strip()]
    if not named:
        return None
    known = model.resource_types()
    for t in named:
        if t not in known:
            raise Invalid(f"_type names {t!r}, which is not a resource type", "_type")
    return frozenset(named)


def _since(params: list[tuple[str, str]]) -> str | None:
    values = [v for k, v in params if k == "_since"]
    if len(values) > 1:
        raise Invalid("_since may be given once", "_since")
    if not values:
        return None
    try:
        date_range(values[0])
    except ValueError as exc:
        raise Invalid(f"_since must be an instant: {exc}", "_since") from None
    return values[0]


def _once(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise Invalid(f"{name} may be given once", name)
    return values[0] if values else None


def _care_dates(params: list[tuple[str, str]]) -> tuple[int | None, int | None]:
    """(the start of ``start``, the end of ``end``) in microseconds, None when not given; 400
    naming the parameter for a value that is not a date, or an ``end`` before ``start``."""
    bounds: list[int | None] = []
    for name, edge in (("start", 0), ("end", 1)):
        value = _once(params, name)
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(date_range(value.strip())[edge])
        except ValueError as exc:
            raise Invalid(f"{name} must be a date (YYYY, YYYY-MM or YYYY-MM-DD): {exc}", name) from None
    low, high = bounds
    if low is not None and high is not None and high < low:
        raise Invalid("end is before start", "end")
    return low, high


CARE_NOTE = Issue("information", "informational",
                  "start/end select care dates (when the care happened, not when it was recorded); "
                  "resources without a care date, allergies, family history, ongoing care (active "
                  "conditions and prescriptions, open episodes) and referenced resources are included",
                  ("start", "end"))


async def everything(request: Request) -> Response:
    c: Context = request.app.state.ctx
    media = response_format(request)
    pid = request.path_params["id"]
    params = await _params(request)
    types, since, (low, high) = _types(params), _since(params), _care_dates(params)
    count_value = _once(params, "_count")
    cursor = _once(params, "_cursor")
    warnings: list[Issue] = []
    ignored = sorted({k for k, _ in params if k not in _KNOWN})
    if ignored:
        msg = f"$everything parameter(s) not supported, so not applied: {', '.join(ignored)}"
        if prefer(request, "handling") == "strict":
            raise Invalid(msg.replace(", so not applied", ""), ignored[0])
        warnings.append(Issue("warning", "not-supported", msg, tuple(ignored)))
    if low is not None or high is not None:
        warnings.append(CARE_NOTE)

    g = guarded.guard(request)
    g.check_type("Patient")
    # 404 for an unknown patient and alike for one the caller may not reach (410 if deleted and seen)
    await guarded.on_store(request, lambda: guarded.read(request, "Patient", pid))

    who = principal(request)
    matches = tuple(sorted(t for t in compartment_types() if (types is None or t in types) and _allowed(who, t, "s")))
    compartment = compartment_types()

    def referenced(res_type: str) -> bool:
        return res_type not in compartment and (types is None or res_type in types) and _allowed(who, res_type, "r")

    requested = parse_int(count_value, "_count", 1) if count_value is not None else c.settings.default_page_size
    count = min(requested, c.settings.max_page_size)
    path = f"{c.base}/Patient/{pid}/$everything"
    used = [(k, v) for k, v in params if k in _LINKED]
    if not matches:  # nothing the token may see: an empty page, not a search over every type
        result = SearchResult([])
        q = parse(("Patient",), [], c.repo.registry, c.base)
        return fhir_response(bundles.searchset(c.base, path, used, q, result, warnings), media=media)
    criteria: list[tuple[str, str]] = [("_lastUpdated", f"ge{since}")] if since else []
    q = parse(matches, [*criteria, *([("_cursor", cursor)] if cursor else [])], c.repo.registry, c.base)
    q.compartment = pid
    searcher = guarded.searcher(request)
    care = care_condition(matches, low, high)

    def execute() -> SearchResult:
        with c.repo.reading() as conn:
            return searcher.everything(conn, q, count, referenced, [care] if care is not None else [])

    result = await anyio.to_thread.run_sync(execute) if c.repo.is_postgres else execute()
    return fhir_response(bundles.searchset(c.base, path, used, q, result, warnings), media=media)


def capability_operations() -> dict[str, list[dict[str, Any]]]:
    """The CapabilityStatement entry of the operation."""
    return {"Patient": [{"name": "everything", "definition": DEFINITION}]}

