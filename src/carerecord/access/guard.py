"""The guard: who may see what, on every path (issue 4, part 2).

Every API path reaches patient data through a :class:`Guard` built for one request from its
Principal (``api/`` builds it in :func:`carerecord.api.guarded.guard`). Deny by default; the
decisions, made afresh on every request and never cached across requests (a change of consent,
relationship or role counts on the very next one):

- **system** clients (``system/`` scopes) are trusted integrations: everything (basis "system"),
  except that a client registered for **secondary use** (``Principal.purpose``) never reaches a
  patient who has registered the national data opt-out (``consent.opted_out``): their
  compartments are left out of its searches and exports in SQL and read as unknown
  (basis "system:secondary-use");
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
reference a patient the caller cannot see answer exactly as a reference to an unknown one, and
writes to an id the caller cannot see exactly as to an unknown id (only a trusted system may
create with an id of its choosing). The inner clauses of chains and ``_has`` are held to the
same decisions in SQL (:mod:`carerecord.access.clauses`). Writes need the role's write
activity for the type (:meth:`Guard.may_write`), and every write but a trusted system's is
stamped with its author (:meth:`Guard.stamp`), from which sensitive labels read the authoring
organisation; adding or removing a label needs an activity of its own (:mod:`.labels`). An S-flagged patient's compartment reaches anyone outside their own care
redacted (:mod:`carerecord.access.redaction`).

The audit contract: :attr:`Guard.state` is the request's ASGI state; the guard sets
``audit_patients``, ``audit_resources``, ``audit_outcome`` and ``audit_reason`` there for the
audit middleware.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import orjson
from sqlalchemy import ColumnElement, Connection, FromClause, and_, exists, literal, or_, select

from carerecord.access import breakglass, relationships
from carerecord.access.consent import Sharing, opted_out, opted_out_among, opted_out_condition, sharing
from carerecord.access.policy import (
    PATIENT_WRITES_BEYOND_COMPARTMENT,
    RESTRICTED_PATIENT,
    SENSITIVE,
    authoring_organization,
    labels,
    may_read_type,
    may_write_type,
    patient_data_types,
)
from carerecord.access.principal import Kind, Principal, Purpose
from carerecord.access.redaction import redact
from carerecord.access.scopes import Verdict
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
    restricted: bool = False  # an S-flagged patient (looked up only when not own care)

    @property
    def redacting(self) -> bool:
        """Whether the patient's resources reach this caller redacted (:mod:`redaction`)."""
        return self.allowed and self.restricted and not self.own_care


DENY = Decision(False)


class Guard:
    """Decisions for one request's Principal. ``state`` is the request's ASGI state dict (the
    audit keys are written there); ``engine``-level lookups run on the connection given."""

    def __init__(self, principal: Principal, state: dict[str, Any] | None = None) -> None:
        self.who = principal
        self.state = state if state is not None else {}
        self._decisions: dict[str, Decision] = {}  # this request only
        self.redacted: dict[int, bytes] = {}  # rid -> the redacted content shown (for _include)
        self._redacting_patients: list[str] | None = None
        self.state.setdefault("audit_patients", set())
        self.state.setdefault("audit_resources", [])

    # -- who ------------------------------------------------------------------------------------
    @property
    def trusted(self) -> bool:
        return self.who.kind is Kind.SYSTEM

    @property
    def secondary_use(self) -> bool:
        """A system client registered for secondary use: held to the national data opt-out."""
        return self.trusted and self.who.purpose is Purpose.SECONDARY_USE

    @property
    def carer(self) -> relationships.Carer:
        role = self.who.role
        return relationships.Carer(role.organization if role else None, self.who.fhir_user,
                                   role.practitioner_role if role else None)

    @property
    def organization(self) -> str | None:
        return self.who.role.organization if self.who.role else None

    def unrestricted(self) -> bool:
        """A trusted system not held to a launch patient or to the national data opt-out: it
        may see everything, so its reads need no look at the record (the integrations' hot
        path)."""
        return self.trusted and self.launch_only() is None and not self.secondary_use

    def may_create_at_will(self, res_type: str) -> bool:
        """Whether this caller may create ``res_type`` with an id of its own choosing (a PUT to
        an unknown id, update-as-create): only a trusted system with an unrestricted
        ``system/<type>.c`` scope. Anyone else who could do it would learn, from a 404 for a
        forbidden id where an unknown one is created, that the forbidden id exists."""
        return self.unrestricted() and self.who.scopes.decide("system", res_type, "c").verdict is Verdict.ALLOWED

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
            if self.secondary_use and opted_out(conn, pid):
                return DENY
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
            return Decision(True, grant.basis(), False, consent, registered, restricted_patient(conn, pid))
        return DENY

    def may_see(self, conn: Connection, res_type: str, patients: Iterable[str],
                resource: dict[str, Any] | None) -> bool:
        """Whether one resource (of ``res_type``, in the compartments of ``patients``) is
        visible; ``resource`` is needed only when it carries security labels."""
        if self.unrestricted():
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

    def may_write(self, res_type: str) -> bool:
        """Whether this caller may write ``res_type`` at all: staff by their role's activities
        (``policy.may_write_type``: a receptionist books appointments but writes no Condition);
        patients and proxies only types of a Patient compartment (their own, as the reference
        checks ensure) and Tasks, never reference data; trusted systems by their scopes alone."""
        if self.trusted:
            return True
        if self.who.kind in (Kind.PATIENT, Kind.PROXY):
            return res_type in patient_data_types() or res_type in PATIENT_WRITES_BEYOND_COMPARTMENT
        return self.who.kind is Kind.STAFF and may_write_type(self._activities(), res_type)

    def refuse_write(self, res_type: str, patients: Iterable[str]) -> NoReturn:
        """Forbidden (403, a decision about the type, so no oracle), audited as denied for
        ``patients`` (those of the resource the write was about)."""
        self.denied(patients)
        if self.who.kind is Kind.STAFF:
            raise Forbidden(f"The selected role may not write {res_type} resources")
        raise Forbidden(f"{res_type} resources are not written by patients or their proxies"
                        if self.who.kind in (Kind.PATIENT, Kind.PROXY) else f"This caller may not write {res_type}")

    # -- reads ----------------------------------------------------------------------------------
    def shown(self, conn: Connection | None, st: Stored) -> Stored:
        """``st`` as this caller may see it: NotFound (worded as for an unknown resource) when
        forbidden, redacted when S-flagged, and noted for the audit trail. A trusted system's
        read is not parsed (the hot path of integrations): its patients are those the read
        looked up (``st.patients``)."""
        assert st.content is not None
        if self.unrestricted():
            if st.patients is None:  # not looked up: the audit middleware reads the body
                self.state["audit_resources"].append(f"{st.res_type}/{st.res_id}")
                self.state["audit_outcome"], self.state["audit_reason"] = "success", SYSTEM
            else:
                self.noted(st.patients, [f"{st.res_type}/{st.res_id}"])
            return st
        assert conn is not None, "a restricted caller's read is checked against the record"
        resource = orjson.loads(st.content)
        patients = patient_compartments(resource)
        if not self.may_see(conn, st.res_type, patients, resource):
            self.denied(patients)
            raise NotFound(f"{st.res_type}/{st.res_id} is not known")
        self.noted(patients, [f"{st.res_type}/{st.res_id}"])
        if self.redacting(conn, patients):
            return Stored(st.res_type, st.res_id, st.version, st.last_updated, st.deleted,
                          orjson.dumps(redact(resource, self.own_refs())), st.method)
        return st

    def versions(self, conn: Connection, entries: list[Stored]) -> list[Stored]:
        """The versions of an instance history this caller may see, each by its own
        patients, redacted as a read of it would be (an older version of an S-flagged
        patient's resource holds the same address, whatever labels it had then)."""
        out = []
        for st in entries:
            if st.content is None:
                out.append(st)
                continue
            resource = orjson.loads(st.content)
            patients = patient_compartments(resource)
            if not self.may_see(conn, st.res_type, patients, resource):
                continue
            if self.redacting(conn, patients):
                st = Stored(st.res_type, st.res_id, st.version, st.last_updated, st.deleted,
                            orjson.dumps(redact(resource, self.own_refs())), st.method)
            out.append(st)
        return out

    def redacting(self, conn: Connection, patients: Iterable[str]) -> bool:
        """Whether a resource in these patients' compartments reaches this caller redacted: one
        of them is S-flagged and the caller is not one of their own care organisations."""
        if self.unrestricted() or self.who.kind is not Kind.STAFF:
            return False  # systems, the patient and their proxies: their own
        return any(self.decide(conn, p).redacting for p in patients)

    def own_refs(self) -> frozenset[str]:
        """The caller's own organisation, PractitionerRole and Practitioner as references:
        redaction leaves them, since they tell the caller nothing."""
        return frozenset(f"{t}/{i}" for t, i in self.carer.refs())

    def redacting_patients(self, conn: Connection) -> list[str]:
        """The patients this caller reaches but sees redacted (S-flagged, reached by a claim
        or break-glass): searches must not match their resources on redacted fields."""
        if self._redacting_patients is None:
            found: list[str] = []
            if self.who.kind is Kind.STAFF and self.who.role is not None:
                granted = {str(row[0]) for row in conn.execute(breakglass.granted_patients(self.who.role.practitioner_role))}
                found = sorted(p for p in granted if self.decide(conn, p).redacting)
            self._redacting_patients = found
        return self._redacting_patients

    def hits(self, conn: Connection, hits: list[Hit]) -> list[Hit]:
        """The visible hits (matches or includes), S-flagged Patients redacted, noted for audit.

        A contained resource (``Hit.container``) is judged by its container (compartments,
        type, labels: a contained resource may carry no labels of its own), and its own type
        must be readable too; it is noted for audit as the container, the resource it is part
        of. One inside a container the caller may only see redacted is not shown."""
        comps = self.patients_of(conn, [h.container or h for h in hits])
        if self.unrestricted():
            for h in hits:
                whole = h.container or h
                self.noted(comps.get(whole.rid, ()), [f"{whole.res_type}/{whole.res_id}"])
            return hits
        if self.secondary_use:  # one look-up of the page's opt-outs, not one per patient
            self._opt_outs(conn, {p for ps in comps.values() for p in ps})
        out = []
        for h in hits:
            whole = h.container or h
            patients = comps.get(whole.rid, [])
            resource = orjson.loads(whole.content) if b'"security"' in whole.content else None
            if not self.may_see(conn, whole.res_type, patients, resource):
                continue
            if h.container is not None and not self.may_see(conn, h.res_type, patients, None):
                continue
            if self.redacting(conn, patients):
                if h.container is not None:
                    continue
                shown = orjson.dumps(redact(resource or orjson.loads(h.content), self.own_refs()))
                self.redacted[h.rid] = shown
                h = Hit(h.rid, h.res_type, h.res_id, shown, h.mode)
            self.noted(patients, [f"{whole.res_type}/{whole.res_id}"])
            out.append(h)
        return out

    def _opt_outs(self, conn: Connection, patients: set[str]) -> None:
        """Decide at once, for a secondary-use system, every one of ``patients`` not decided yet."""
        fresh = patients - self._decisions.keys()
        if fresh:
            refused = opted_out_among(conn, fresh)
            for p in fresh:
                self._decisions[p] = DENY if p in refused else Decision(True, SYSTEM, True)

    @staticmethod
    def patients_of(conn: Connection, hits: list[Hit]) -> dict[int, list[str]]:
        """The Patient compartments of ``hits`` by rid: one constant statement per 500 hits on
        the driver (through SQLAlchemy's expression layer this lookup was an eighth of a
        search's CPU, py-spy 2026-11-23)."""
        out: dict[int, list[str]] = {}
        rids = [h.rid for h in hits]
        mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for i in range(0, len(rids), 500):
                chunk = tuple(rids[i:i + 500])
                cur.execute(f"SELECT rid, patient_id FROM {s.compartments.name} "  # noqa: S608 - marks only
                            f"WHERE rid IN ({', '.join([mark] * len(chunk))})", chunk)
                for rid, pid in cur.fetchall():
                    out.setdefault(rid, []).append(pid)
        finally:
            cur.close()
        return out

    # -- search restriction -----------------------------------------------------------------------
    def restriction(self, alias: FromClause | None = None) -> list[ColumnElement[bool]]:
        """Conditions on ``resources`` (or on ``alias`` of it: the rows of a chain's or _has's
        inner clause) that keep a search inside the permitted compartments (and, for staff,
        the permitted types): empty for trusted systems; for a secondary-use system, no
        compartment of a patient with a national data opt-out."""
        launch = self.launch_only()
        c, r = (s.compartments, s.resources) if alias is None else (s.compartments.alias(), alias)
        if self.trusted and launch is None:
            if self.secondary_use:
                return [~exists().where(c.c.rid == r.c.rid, opted_out_condition(c.c.patient_id))]
            return []
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
        if self.unrestricted():
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

    def stamp(self, resource: dict[str, Any], current: Stored | None, base: str | None) -> bool:
        """Set ``meta.source``, from which the guard reads a resource's authoring organisation
        (sensitive labels), so that no client can claim another organisation's authorship;
        True if it changed. A new resource gets the writer's organisation
        (``<base>/Organization/<id>``) for staff, the writer (``<base>/Patient/<id>``,
        ``RelatedPerson/<id>``) for patients and proxies; an update keeps the source of the
        version it replaces, so a later writer (another organisation reaching it by consent or
        break-glass) never takes over authorship. Trusted systems keep the source they send:
        an integration states the organisation its records come from."""
        if self.trusted:
            return False
        if current is not None:
            assert current.content is not None
            meta = orjson.loads(current.content).get("meta")
            source = meta.get("source") if isinstance(meta, dict) else None
        else:
            writer = self.organization if self.who.kind is Kind.STAFF else self.who.fhir_user
            source = f"{base.rstrip('/')}/{writer}" if writer and base else writer
        meta = resource.get("meta")
        if not isinstance(meta, dict):
            meta = {}
        if meta.get("source") == source:
            return False
        meta = {k: v for k, v in meta.items() if k != "source"}
        if isinstance(source, str):
            meta["source"] = source
        if meta:
            resource["meta"] = meta
        else:
            resource.pop("meta", None)
        return True

    def gone(self, conn: Connection, res_type: str, res_id: str) -> None:
        """Before answering 410 for a deleted resource: NotFound (as for an unknown one) unless
        its last content was visible, so a deletion is no existence oracle either."""
        if self.unrestricted():
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
        """Record for the audit trail that ``resources`` (of ``patients``) were reached; the
        links say which patient's audit record lists which resource."""
        patients = tuple(patients)
        self.state["audit_patients"].update(patients)
        self.state["audit_resources"].extend(resources)
        links = self.state.setdefault("audit_links", {})
        for ref in resources:
            links[ref] = patients
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
            return f"{SYSTEM}:{Purpose.SECONDARY_USE.value}" if self.secondary_use else SYSTEM
        bases = {d.basis for d in self._decisions.values() if d.allowed}
        for prefix in _PRIORITY:
            for b in sorted(bases):
                if b.startswith(prefix):
                    return b
        return {Kind.PATIENT: SELF, Kind.PROXY: PROXY}.get(self.who.kind, "none")


def restricted_patient(conn: Connection, patient_id: str) -> bool:
    """Whether the Patient is S-flagged (``meta.security`` Confidentiality R or V), from its
    ``_security`` index rows."""
    r, tok = s.resources, s.idx_token
    flags = [and_(tok.c.system == system, tok.c.code == code) for system, code in sorted(RESTRICTED_PATIENT)]
    row = conn.execute(select(literal(1)).select_from(r).join(tok, tok.c.rid == r.c.rid).where(
        r.c.res_type == "Patient", r.c.res_id == patient_id, r.c.deleted.is_(False),
        tok.c.pkey == s.param_key("Patient", "_security"), or_(*flags)).limit(1)).first()
    return row is not None
