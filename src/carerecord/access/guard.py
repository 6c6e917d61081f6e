"""The guard: who may see what, on every path (issue 4, part 2).

Every API path reaches patient data through a :class:`Guard` built for one request from its
Principal (``api/`` builds it in :func:`carerecord.api.guarded.guard`). Deny by default; the
decisions, made afresh on every request and never cached across requests (a change of consent,
relationship or role counts on the very next one):

- **system** clients (``system/`` scopes) are trusted integrations: everything (basis "system");
- **patients** reach their own compartment ("self"), **proxies** the patients granted to them
  ("proxy");
- **staff** reach a patient through a legitimate relationship at their selected role's
  organisation (``relationships.py``: "relationship:registered" or "relationship:care"), or a
  self-claim / break-glass (``breakglass.py``); the role's activities limit the resource types
  (``policy.py``); the patient's Consent can withdraw the record or categories of it from an
  organisation (``consent.py``); sensitive labels need the authoring organisation, explicit
  consent or break-glass;
- a token whose resource scopes are all ``patient/`` is held to its launch patient;
- a resource in several Patient compartments is visible only if every one of them is;
- resources in no Patient compartment (Organization, Medication...) are reference data.

Searches are restricted in SQL (:class:`GuardedSearcher` adds a compartment condition to the
store's plan, so pages and cursors only ever walk permitted rows) and then filtered resource by
resource (consent categories, labels, S-flag redaction), which can only shorten a page. Reads
of forbidden resources answer exactly as unknown ones (404 "X/y is not known"); writes that
reference a patient the caller cannot see answer exactly as a reference to an unknown one.

The audit contract: :attr:`Guard.state` is the request's ASGI state; the guard sets
``audit_patients``, ``audit_resources``, ``audit_outcome`` and ``audit_reason`` there for the
audit middleware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, exists, literal, or_, select

from carerecord.access import breakglass, relationships
from carerecord.access.consent import Sharing, sharing
from carerecord.access.policy import (
    SENSITIVE,
    authoring_organization,
    labels,
    may_read_type,
    patient_data_types,
)
from carerecord.access.principal import Kind, Principal
from carerecord.access.redaction import redact, restricted
from carerecord.errors import Forbidden, Invalid, Issue, NotFound
from carerecord.fhir.indexing import patient_compartments
from carerecord.fhir.references import local_reference, split_relative
from carerecord.store import schema as s
from carerecord.store.records import Stored
from carerecord.store.search import Hit

SYSTEM, SELF, PROXY = "system", "self", "proxy"
_PRIORITY = ("break-glass", "self-claimed", "relationship", "proxy", "self", "system")


@dataclass(frozen=True, slots=True)
class Decision:
    """The guard's answer for one patient: allowed or not, on which basis, whether the caller
    is one of the patient's own care organisations (sees S-flagged details), and the consent
    read for them (staff only)."""

    allowed: bool
    basis: str = ""
    own_care: bool = False
    sharing: Sharing | None = None
    registered: bool = False


DENY = Decision(False)


class Guard:
    """Decisions for one request's Principal. ``state`` is the request's ASGI state dict (the
    audit keys are written there); ``engine``-level lookups run on the connection given."""

    def __init__(self, principal: Principal, state: dict[str, Any] | None = None) -> None:
        self.who = principal
        self.state = state if state is not None else {}
        self._decisions: dict[str, Decision] = {}  # this request only
        self.state.setdefault("audit_patients", set())
        self.state.setdefault("audit_resources", [])

    # -- who ------------------------------------------------------------------------------------
    @property
    def trusted(self) -> bool:
        return self.who.kind is Kind.SYSTEM

    @property
    def carer(self) -> relationships.Carer:
        role = self.who.role
        return relationships.Carer(role.organization if role else None, self.who.fhir_user,
                                   role.practitioner_role if role else None)

    @property
    def organization(self) -> str | None:
        return self.who.role.organization if self.who.role else None

    def unrestricted(self) -> bool:
        """A trusted system not held to a launch patient: it may see everything, so its reads
        need no look at the record (the integrations' hot path)."""
        return self.trusted and self.launch_only() is None

    def launch_only(self) -> str | None:
        """The launch patient a patient-context-only token is held to ("" if it has none)."""
        contexts = {item.context for item in self.who.scopes.resources}
        if self.trusted or not contexts or contexts != {"patient"}:
            return None
        return self.who.launch.patient or ""

    def own_patients(self) -> set[str]:
        out = set(self.who.patients)
        user = self.who.fhir_user or ""
        if self.who.kind is Kind.PATIENT and user.startswith("Patient/"):
            out.add(user.split("/", 1)[1])
        return out

    # -- decisions ------------------------------------------------------------------------------
    def decide(self, conn: Connection, patient_id: str) -> Decision:
        """May this request reach ``patient_id``'s compartment? (Memoised for this request.)"""
        found = self._decisions.get(patient_id)
        if found is None:
            found = self._decide(conn, patient_id)
            self._decisions[patient_id] = found
        return found

    def _decide(self, conn: Connection, pid: str) -> Decision:
        launch = self.launch_only()
        if launch is not None and pid != launch:
            return DENY
        if self.trusted:
            return Decision(True, SYSTEM, True)
        if self.who.kind in (Kind.PATIENT, Kind.PROXY):
            if pid in self.own_patients():
                return Decision(True, SELF if self.who.kind is Kind.PATIENT else PROXY, True)
            return DENY
        if self.who.kind is not Kind.STAFF or self.who.role is None:
            return DENY
        carer = self.carer
        registered = conn.execute(relationships.registered(carer, pid).limit(1)).first() is not None
        related = registered or conn.execute(
            select(literal(1)).where(literal(pid).in_(relationships.related(carer, pid)))).first() is not None
        consent = sharing(conn, pid)
        org = self.organization
        if related and not consent.refuses(org, registered):
            return Decision(True, "relationship:registered" if registered else "relationship:care", True,
                            consent, registered)
        grant = breakglass.active(conn, self.who.role.practitioner_role, pid)
        if grant is not None and (grant.kind == breakglass.BREAK_GLASS or not consent.refuses(org, registered)):
            return Decision(True, grant.basis(), False, consent, registered)
        return DENY

    def may_see(self, conn: Connection, res_type: str, patients: Iterable[str],
                resource: dict[str, Any] | None) -> bool:
        """Whether one resource (of ``res_type``, in the compartments of ``patients``) is
        visible; ``resource`` is needed only when it carries security labels."""
        if self.trusted and self.launch_only() is None:
            return True
        patients = list(patients)
        if self.who.kind is Kind.STAFF and not may_read_type(self._activities(), res_type):
            return False
        if not patients and res_type == "Patient" and resource is not None and isinstance(resource.get("id"), str):
            patients = [resource["id"]]
        decisions = [self.decide(conn, p) for p in patients]
        if not all(d.allowed for d in decisions):
            return False
        for d in decisions:
            if d.sharing is not None and res_type in d.sharing.hidden_types(self.organization, d.registered):
                return False
        if resource is not None and self.who.kind is Kind.STAFF:
            sensitive = labels(resource) & SENSITIVE
            if sensitive and res_type != "Patient" and not self._sensitive_ok(resource, sensitive, decisions):
                return False
        return True

    def _sensitive_ok(self, resource: dict[str, Any], found: set[tuple[str, str]],
                      decisions: list[Decision]) -> bool:
        if authoring_organization(resource) == self.organization and self.organization is not None:
            return True
        for d in decisions:
            if d.basis.startswith(breakglass.BREAK_GLASS):
                continue
            if d.sharing is None or not all(d.sharing.permits_label(self.organization, x) for x in found):
                return False
        return True

    def _activities(self) -> frozenset[Any]:
        return self.who.role.activities if self.who.role else frozenset()

    def check_type(self, res_type: str) -> None:
        """Forbidden when the role may not read ``res_type`` at all (a receptionist and an
        Observation): a decision about the type, so it reveals nothing about any patient."""
        if self.who.kind is Kind.STAFF and not may_read_type(self._activities(), res_type):
            raise Forbidden(f"The selected role may not see {res_type} resources")
        if self.who.kind is Kind.STAFF and not self._activities():
            raise Forbidden("The selected role gives no access to the record")

    # -- reads ----------------------------------------------------------------------------------
    def shown(self, conn: Connection | None, st: Stored) -> Stored:
        """``st`` as this caller may see it: NotFound (worded as for an unknown resource) when
        forbidden, redacted when S-flagged, and noted for the audit trail. A trusted system's
        read is not parsed (the hot path of integrations): the audit middleware finds its
        patient in the body."""
        assert st.content is not None
        if self.trusted and self.launch_only() is None:
            self.noted((), [f"{st.res_type}/{st.res_id}"])
            return st
        assert conn is not None, "a restricted caller's read is checked against the record"
        resource = orjson.loads(st.content)
        patients = patient_compartments(resource)
        if not self.may_see(conn, st.res_type, patients, resource):
            self.denied(patients)
            raise NotFound(f"{st.res_type}/{st.res_id} is not known")
        self.noted(patients, [f"{st.res_type}/{st.res_id}"])
        if restricted(resource) and not self._own_care(conn, patients):
            return Stored(st.res_type, st.res_id, st.version, st.last_updated, st.deleted,
                          orjson.dumps(redact(resource)), st.method)
        return st

    def visible_version(self, conn: Connection, st: Stored) -> bool:
        """Whether one stored version (of a history) is visible, by its own patients."""
        if st.content is None:
            return True
        resource = orjson.loads(st.content)
        return self.may_see(conn, st.res_type, patient_compartments(resource), resource)

    def _own_care(self, conn: Connection, patients: list[str]) -> bool:
        return all(self.decide(conn, p).own_care for p in patients)

    def hits(self, conn: Connection, hits: list[Hit]) -> list[Hit]:
        """The visible hits (matches or includes), S-flagged Patients redacted, noted for audit.

        A contained resource (``Hit.container``) is judged by its container (compartments,
        type, labels: a contained resource may carry no labels of its own), and its own type
        must be readable too; it is noted for audit as the container, the resource it is part
        of. One inside an S-flagged container the caller may only see redacted is not shown."""
        if self.trusted and self.launch_only() is None:
            self.noted((), [f"{(h.container or h).res_type}/{(h.container or h).res_id}" for h in hits])
            return hits
        comps = self._patients_of(conn, [h.container or h for h in hits])
        out = []
        for h in hits:
            whole = h.container or h
            patients = comps.get(whole.rid, [])
            resource = orjson.loads(whole.content) if b'"security"' in whole.content else None
            if not self.may_see(conn, whole.res_type, patients, resource):
                continue
            if h.container is not None and not self.may_see(conn, h.res_type, patients, None):
                continue
            if resource is not None and restricted(resource) and not self._own_care(conn, patients or [whole.res_id]):
                if h.container is not None:
                    continue
                h = Hit(h.rid, h.res_type, h.res_id, orjson.dumps(redact(resource)), h.mode)
            self.noted(patients, [f"{whole.res_type}/{whole.res_id}"])
            out.append(h)
        return out

    @staticmethod
    def _patients_of(conn: Connection, hits: list[Hit]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        rids = [h.rid for h in hits]
        c = s.compartments
        for i in range(0, len(rids), 500):
            for rid, pid in conn.execute(select(c.c.rid, c.c.patient_id).where(c.c.rid.in_(rids[i:i + 500]))):
                out.setdefault(rid, []).append(pid)
        return out

    # -- search restriction -----------------------------------------------------------------------
    def restriction(self) -> list[ColumnElement[bool]]:
        """Conditions on ``resources`` that keep a search inside the permitted compartments
        (and, for staff, the permitted types): empty for trusted systems."""
        launch = self.launch_only()
        if self.trusted and launch is None:
            return []
        c, r = s.compartments, s.resources
        if launch is not None and self.trusted:
            bad: ColumnElement[bool] = c.c.patient_id != launch
        elif self.who.kind in (Kind.PATIENT, Kind.PROXY):
            bad = c.c.patient_id.not_in(sorted(self.own_patients()) or [""])
        elif self.who.kind is Kind.STAFF and self.who.role is not None:
            allowed = relationships.related(self.carer, also=[breakglass.granted_patients(self.who.role.practitioner_role)])
            bad = c.c.patient_id.not_in(allowed)
        else:
            return [literal(False)]
        if launch is not None and not self.trusted:
            bad = or_(bad, c.c.patient_id != launch)
        conds: list[ColumnElement[bool]] = [~exists().where(c.c.rid == r.c.rid, bad)]
        if self.who.kind is Kind.STAFF:
            hidden = sorted(t for t in patient_data_types() if not may_read_type(self._activities(), t))
            if hidden:
                conds.append(r.c.res_type.not_in(hidden))
        return conds

    # -- writes ---------------------------------------------------------------------------------
    def check_references(self, conn: Connection, refs: list[tuple[str, dict[str, Any]]], base: str | None,
                         pending: frozenset[tuple[str, str]] = frozenset()) -> None:
        """A reference to a Patient the caller may not reach is refused exactly as a reference
        to an unknown one (no oracle; a patch or update cannot move a resource to them)."""
        if self.trusted and self.launch_only() is None:
            return
        for path, obj in refs:
            ref = local_reference(str(obj.get("reference", "")), base)
            pair = split_relative(ref)
            if pair is None or pair[0] != "Patient" or pair in pending:
                continue
            if not self.decide(conn, pair[1]).allowed:
                msg = f"Reference Patient/{pair[1]} does not resolve to an existing resource"
                self.denied([pair[1]])
                raise Invalid(msg, path, [Issue("error", "not-found", msg, (path,))])

    def gone(self, conn: Connection, res_type: str, res_id: str) -> None:
        """Before answering 410 for a deleted resource: NotFound (as for an unknown one) unless
        its last content was visible, so a deletion is no existence oracle either."""
        if self.trusted and self.launch_only() is None:
            return
        r, v = s.resources, s.resource_versions
        row = conn.execute(select(v.c.content).join(r, r.c.rid == v.c.rid)
                           .where(r.c.res_type == res_type, r.c.res_id == res_id, v.c.content.is_not(None))
                           .order_by(v.c.version.desc()).limit(1)).first()
        if row is None:
            return
        resource = orjson.loads(row[0])
        patients = patient_compartments(resource)
        if not self.may_see(conn, res_type, patients, resource):
            self.denied(patients)
            raise NotFound(f"{res_type}/{res_id} is not known")

    def check_existing(self, conn: Connection, st: Stored) -> None:
        """A write to an existing resource needs it visible (NotFound as for an unknown one)."""
        self.shown(conn, st)

    # -- audit ----------------------------------------------------------------------------------
    def noted(self, patients: Iterable[str], resources: list[str]) -> None:
        self.state["audit_patients"].update(patients)
        self.state["audit_resources"].extend(resources)
        if self.state.get("audit_outcome") != "denied":
            self.state["audit_outcome"] = "success"
        self.state["audit_reason"] = self.basis()

    def denied(self, patients: Iterable[str]) -> None:
        self.state["audit_patients"].update(patients)
        self.state["audit_outcome"] = "denied"
        self.state["audit_reason"] = self.basis()

    def basis(self) -> str:
        """The access basis of this request: the most notable of its decisions."""
        if self.trusted:
            return SYSTEM
        bases = {d.basis for d in self._decisions.values() if d.allowed}
        for prefix in _PRIORITY:
            for b in sorted(bases):
                if b.startswith(prefix):
                    return b
        return {Kind.PATIENT: SELF, Kind.PROXY: PROXY}.get(self.who.kind, "none")
