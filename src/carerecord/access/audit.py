"""AuditEvents in the shape of IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/) for every interaction with the record (issue 4, audit).

:func:`audit_events` turns the facts of one request (:class:`Facts`: who, which interaction,
which resources and patients, the outcome and the basis of access) into FHIR R4 AuditEvents,
one per patient concerned, as BALP asks, so that a patient's access log is a lookup by
patient; a request that touched no patient gives one event without a patient entity.

Each event has:

* ``type`` rest and ``subtype`` the RESTful interaction (read, vread, search-type, create,
  ..., operation); ``action`` C/R/U/D/E as BALP maps them (searches and operations E);
* ``agent``: the user (fhirUser, display, role from the role table, the token id as
  ``policy``, requestor), the client application (its client id and network address), the
  organisation the staff member acts for, and this server as the destination;
* ``entity``: the patient (role 1), each resource returned, written or refused (role 4), and
  for searches the query (role 24, base64 of the query string);
* ``purposeOfEvent``: v3 ActReason (TREAT, ETREAT for break-glass with its reason as text,
  PATRQT for a patient's own access, FAMRQT for a proxy's, HOPERAT for systems), with the
  access basis given by the guard as its text;
* ``outcome`` 0 (success), 4 (denied or refused as a client error) or 8 (server error).

Pure apart from reading the clock: no I/O.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from carerecord.access.audit_store import NewEvent
from carerecord.access.principal import Kind, Principal
from carerecord.access.roles import default_table
from carerecord.store.records import iso_instant

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
INTERACTION = "http://hl7.org/fhir/restful-interaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
ROLE_SYSTEM = "https://carerecord.org/fhir/CodeSystem/role"
ACCESS_BASIS = "https://carerecord.org/fhir/CodeSystem/access-basis"

SUCCESS, DENIED, ERROR = "success", "denied", "error"

_ACTION = {"read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
           "history-system": "R", "search-type": "E", "search-system": "E", "create": "C",
           "update": "U", "patch": "U", "delete": "D", "operation": "E", "transaction": "E",
           "batch": "E"}
_ROLES = default_table()


@dataclass(frozen=True, slots=True)
class Facts:
    """What one request did, as the audit middleware saw it. ``path`` is the part after
    ``/fhir`` (e.g. "/Patient/123"); ``outcome`` success | denied | error; ``reason`` the
    access basis ("relationship:registered", "self", "proxy", "break-glass:<reason>",
    "self-claimed", "system") or None when it is not known."""

    method: str
    path: str
    query: str
    status: int
    principal: Principal | None
    patients: Sequence[str]
    resources: Sequence[str]
    outcome: str
    reason: str | None
    recorded_us: int
    client_address: str | None = None
    server: str = "carerecord"
    extra: dict[str, str] = field(default_factory=dict)


def interaction(method: str, path: str) -> tuple[str, str | None]:
    """(the RESTful interaction code, the operation name if it is one) of ``method`` on
    ``path`` (after /fhir)."""
    seg = [s for s in path.split("/") if s]
    method = "GET" if method == "HEAD" else method
    op = next((s[1:] for s in seg if s.startswith("$")), None)
    if op is not None:
        return "operation", op
    if not seg:
        return ("transaction" if method == "POST" else "search-system"), None
    if seg[-1] == "_search":
        return ("search-system" if len(seg) == 1 else "search-type"), None
    if "_history" in seg:
        if len(seg) == 1:
            return "history-system", None
        if len(seg) == 2:
            return "history-type", None
        return ("vread" if len(seg) == 4 else "history-instance"), None
    if method == "GET":
        return ("read" if len(seg) == 2 else "search-type"), None
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "operation"), None


def purpose(reason: str | None, principal: Principal | None) -> dict[str, object]:
    """AuditEvent.purposeOfEvent for an access basis (derived from the kind of caller when the
    guard gave none)."""
    if reason is None and principal is not None:
        reason = {Kind.PATIENT: "self", Kind.PROXY: "proxy", Kind.SYSTEM: "system"}.get(principal.kind, "treatment")
    reason = reason or "unknown"
    if reason.startswith("break-glass"):
        code, display = "ETREAT", "Emergency Treatment"
    elif reason == "self":
        code, display = "PATRQT", "patient requested"
    elif reason == "proxy":
        code, display = "FAMRQT", "family requested"
    elif reason == "privacy-review":
        code, display = "HCOMPL", "health compliance"
    elif reason == "system":
        code, display = "HOPERAT", "healthcare operations"
    else:
        code, display = "TREAT", "treatment"
    return {"coding": [{"system": ACT_REASON, "code": code, "display": display}], "text": reason}


def _outcome_code(outcome: str, status: int) -> str:
    if outcome == SUCCESS:
        return "0"
    if outcome == DENIED or status < 500:
        return "4"
    return "8"


def _agents(f: Facts) -> list[dict[str, object]]:
    p = f.principal
    agents: list[dict[str, object]] = []
    if p is not None and p.kind is not Kind.SYSTEM:
        user: dict[str, object] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
            "who": {"reference": p.subject, **({"display": p.display} if p.display else {})},
            "requestor": True, "policy": [p.token_id]}
        if p.role is not None:
            known = _ROLES.roles.get(p.role.role)
            user["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": p.role.role,
                                         "display": known.title if known else p.role.role}],
                             "text": p.role.practitioner_role}]
            user["altId"] = p.role.practitioner_role
        agents.append(user)
        if p.role is not None and p.role.organization:
            agents.append({"type": {"coding": [{"system": PARTICIPATION, "code": "PROV",
                                                "display": "healthcare provider"}]},
                           "who": {"reference": p.role.organization}, "requestor": False})
    elif p is None:
        agents.append({"type": {"coding": [{"system": PARTICIPATION, "code": "IRCP",
                                            "display": "information recipient"}]},
                       "who": {"display": "an unauthenticated caller"}, "requestor": True})
    client: dict[str, object] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": "urn:ietf:rfc:6749", "value": p.client_id if p else "unknown"}},
        "requestor": p is not None and p.kind is Kind.SYSTEM}
    if p is not None and p.kind is Kind.SYSTEM:
        client["policy"] = [p.token_id]
    if f.client_address:
        client["network"] = {"address": f.client_address, "type": "2"}
    agents.append(client)
    agents.append({"type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
                   "who": {"display": f.server}, "requestor": False})
    return agents


def _entities(f: Facts, patient: str | None, code: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if patient is not None:
        out.append({"what": {"reference": f"Patient/{patient}"},
                    "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                    "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}})
    for ref in f.resources:
        if patient is not None and ref == f"Patient/{patient}":
            continue
        out.append({"what": {"reference": ref},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    if code.startswith("search") and f.query:
        out.append({"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                    "query": base64.b64encode(f.query.encode()).decode("ascii")})
    return out


def audit_event(f: Facts, patient: str | None, recorded: str) -> dict[str, object]:
    """The AuditEvent of ``f`` about ``patient`` (None: about no patient)."""
    code, op = interaction(f.method, f.path)
    subtype = [{"system": INTERACTION, "code": code}]
    if op:
        subtype.append({"system": "urn:ietf:rfc:3986", "code": f"${op}"})
    outcome = _outcome_code(f.outcome, f.status)
    event: dict[str, object] = {
        "resourceType": "AuditEvent", "id": str(uuid.uuid4()),
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype, "action": _ACTION.get(code, "E"), "recorded": recorded,
        "outcome": outcome, "purposeOfEvent": [purpose(f.reason, f.principal)],
        "agent": _agents(f),
        "source": {"site": f.server, "observer": {"display": f.server},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": _entities(f, patient, code)}
    if outcome != "0":
        event["outcomeDesc"] = (f"{'denied' if f.outcome == DENIED else 'failed'}: HTTP {f.status} "
                                f"on {f.method} {f.path}")
    if not event["entity"]:
        del event["entity"]
    return event


def audit_events(f: Facts) -> list[NewEvent]:
    """The rows to append for ``f``: one per patient, or one about no patient."""
    recorded = iso_instant(f.recorded_us)
    agent = f.principal.subject if f.principal else "anonymous"
    out = []
    wanted: list[str | None] = [*dict.fromkeys(f.patients)] or [None]
    for patient in wanted:
        event = audit_event(f, patient, recorded)
        out.append(NewEvent(f.recorded_us, patient, agent, str(event["outcome"]), str(event["action"]),
                            orjson.dumps(event).decode()))
    return out
