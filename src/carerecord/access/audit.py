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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    links: Mapping[str, Sequence[str]] | None = None  # resource -> the patients it belongs to


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


def purpose(reason: str | None, kind: str | None) -> dict[str, object]:
    """AuditEvent.purposeOfEvent for an access basis (derived from the kind of caller, a
    :class:`Kind` value, when the guard gave none)."""
    if reason is None and kind is not None:
        reason = {Kind.PATIENT.value: "self", Kind.PROXY.value: "proxy",
                  Kind.SYSTEM.value: "system"}.get(kind, "treatment")
    reason = reason or "unknown"
    if reason.startswith("break-glass"):
        code, display = "ETREAT", "Emergency Treatment"
    elif reason == "self":
        code, display = "PATRQT", "patient requested"
    elif reason == "proxy":
        code, display = "FAMRQT", "family requested"
    elif reason == "privacy-review":
        code, display = "HCOMPL", "health compliance"
    elif reason == "system" or reason.startswith("system:"):  # system:secondary-use too
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


def _agents(r: dict[str, Any]) -> list[dict[str, object]]:
    kind = r.get("k")
    agents: list[dict[str, object]] = []
    if kind is not None and kind != Kind.SYSTEM.value:
        user: dict[str, object] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
            "who": {"reference": r["sub"], **({"display": r["dn"]} if r.get("dn") else {})},
            "requestor": True, "policy": [r["tok"]]}
        if r.get("role") is not None:
            known = _ROLES.roles.get(r["role"])
            user["role"] = [{"coding": [{"system": ROLE_SYSTEM, "code": r["role"],
                                         "display": known.title if known else r["role"]}],
                             "text": r["prole"]}]
            user["altId"] = r["prole"]
        agents.append(user)
        if r.get("role") is not None and r.get("org"):
            agents.append({"type": {"coding": [{"system": PARTICIPATION, "code": "PROV",
                                                "display": "healthcare provider"}]},
                           "who": {"reference": r["org"]}, "requestor": False})
    elif kind is None:
        agents.append({"type": {"coding": [{"system": PARTICIPATION, "code": "IRCP",
                                            "display": "information recipient"}]},
                       "who": {"display": "an unauthenticated caller"}, "requestor": True})
    system = kind == Kind.SYSTEM.value
    client: dict[str, object] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": "urn:ietf:rfc:6749", "value": r.get("cid") or "unknown"}},
        "requestor": system}
    if system:
        client["policy"] = [r["tok"]]
    if r.get("ip"):
        client["network"] = {"address": r["ip"], "type": "2"}
    agents.append(client)
    agents.append({"type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
                   "who": {"display": r["srv"]}, "requestor": False})
    return agents


def _entities(r: dict[str, Any], patient: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    if patient is not None:
        out.append({"what": {"reference": f"Patient/{patient}"},
                    "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                    "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}})
    for ref in r.get("r", ()):
        if patient is not None and ref == f"Patient/{patient}":
            continue
        out.append({"what": {"reference": ref},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    if r.get("q"):
        out.append({"type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                    "query": base64.b64encode(r["q"].encode()).decode("ascii")})
    return out


def audit_record(f: Facts) -> dict[str, Any]:
    """The compact record of ``f`` that is stored (one per patient, with that patient's
    resources in ``r``): every fact the BALP AuditEvent is made of, and nothing derived.
    Storing this instead of the AuditEvent keeps an audited request cheap (the event is a few
    kilobytes of JSON, most of it constant codings); :func:`balp` rebuilds the event."""
    code, op = interaction(f.method, f.path)
    p = f.principal
    r: dict[str, Any] = {"i": code, "m": f.method, "p": f.path, "s": f.status, "o": f.outcome,
                         "b": f.reason, "srv": f.server}
    if op:
        r["op"] = op
    if code.startswith("search") and f.query:
        r["q"] = f.query
    if p is not None:
        r.update(k=p.kind.value, sub=p.subject, tok=p.token_id, cid=p.client_id)
        if p.display:
            r["dn"] = p.display
        if p.role is not None:
            r.update(role=p.role.role, prole=p.role.practitioner_role, org=p.role.organization)
    else:
        r["k"] = None
    if f.client_address:
        r["ip"] = f.client_address
    return r


def event_id(server: str, seq: int, shard: int = 0) -> str:
    """The id of the AuditEvent of audit row ``seq`` (of SQLite audit shard ``shard``): a UUID
    derived from the server and the row, so the same row always gives the same id (fullUrl
    urn:uuid:...)."""
    where = f"{seq}" if shard == 0 else f"{shard}/{seq}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{server}/audit/{where}"))


def balp(seq: int, recorded_us: int, patient: str | None, content: str, shard: int = 0) -> dict[str, Any]:
    """The BALP AuditEvent of one stored audit row. Rows written before records were compact
    hold the AuditEvent itself, which is returned as it is."""
    r: dict[str, Any] = orjson.loads(content)
    if "resourceType" in r:
        return r
    code = r["i"]
    subtype: list[dict[str, str]] = [{"system": INTERACTION, "code": code}]
    if r.get("op"):
        subtype.append({"system": "urn:ietf:rfc:3986", "code": f"${r['op']}"})
    outcome = _outcome_code(r["o"], r["s"])
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": event_id(r["srv"], seq, shard),
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype, "action": _ACTION.get(code, "E"), "recorded": iso_instant(recorded_us),
        "outcome": outcome, "purposeOfEvent": [purpose(r.get("b"), r.get("k"))],
        "agent": _agents(r),
        "source": {"site": r["srv"], "observer": {"display": r["srv"]},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
        "entity": _entities(r, patient)}
    if outcome != "0":
        event["outcomeDesc"] = (f"{'denied' if r['o'] == DENIED else 'failed'}: HTTP {r['s']} "
                                f"on {r['m']} {r['p']}")
    if not event["entity"]:
        del event["entity"]
    return event


def audit_events(f: Facts) -> list[NewEvent]:
    """The rows to append for ``f``: one per patient, or one about no patient. Where the guard
    said which patients each resource belongs to (``f.links``), a patient's row lists only
    their own resources (and those of no patient); otherwise every row lists all of them."""
    agent = f.principal.subject if f.principal else "anonymous"
    action = _ACTION.get(interaction(f.method, f.path)[0], "E")
    outcome = _outcome_code(f.outcome, f.status)
    base = audit_record(f)
    wanted: list[str | None] = [*dict.fromkeys(f.patients)] or [None]
    links = f.links
    if len(wanted) == 1 or links is None:
        base["r"] = list(f.resources)
        content = orjson.dumps(base).decode()
        return [NewEvent(f.recorded_us, p, agent, outcome, action, content) for p in wanted]
    own: dict[str, list[str]] = {}
    shared: list[str] = []
    for ref in f.resources:
        patients = links.get(ref)
        if not patients:
            shared.append(ref)
        for p in patients or ():
            own.setdefault(p, []).append(ref)
    out = []
    for patient in wanted:
        base["r"] = [*own.get(patient or "", ()), *shared]
        out.append(NewEvent(f.recorded_us, patient, agent, outcome, action, orjson.dumps(base).decode()))
    return out
