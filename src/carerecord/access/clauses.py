"""The store's search compiler with the guard's conditions inside the search criteria.

:class:`~carerecord.access.guarded.GuardedSearcher` restricts the rows a search returns; these
conditions restrict what its criteria may look at, which can tell as much:

- **Inner clauses see only what the caller may see.** The inner clause of a chain
  (``Encounter?reason-reference:Condition.code=X``) or a ``_has``
  (``Patient?_has:Condition:subject:code=X``) matches only resources the caller could read:
  in the permitted compartments, of a type their role may read, not withheld by the
  patient's consent (whole record or category), and, for a sensitive label
  (:data:`~carerecord.access.policy.SENSITIVE`), written by the caller's own organisation
  (``meta.source``, which the guard stamps on staff writes). Otherwise a member of staff at
  the ambulance trust could learn, from the Patient it returns, that the GP holds a sexual
  health Condition they may not read. This is stricter than a read in one way: explicit
  consent to a label and break-glass open the resource to a read, not to criteria.
- **Redacted fields** (:mod:`carerecord.access.redaction`). A caller who sees an S-flagged
  patient only redacted (a claim or break-glass) must not find them by what was removed:
  ``Patient?address-city=Leeds``, ``Encounter?location=...``, ``Observation?_text=...``,
  a chain through such a parameter or a ``_has`` linked by one, or a ``_sort`` on one. A
  clause on a :func:`~carerecord.access.redaction.masked_param` does not match resources in
  those patients' compartments, at any depth.

The conditions are SQL over the index tables, added where the store's compiler builds each
clause (:meth:`GuardedCompiler.predicate`, which the store calls for every clause, nested
ones included), so the search still runs as one statement and pages honestly.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, FromClause, and_, exists, false, literal, or_, select

from carerecord.access import breakglass, relationships
from carerecord.access.consent import OPT_OUT
from carerecord.access.guard import Guard
from carerecord.access.policy import SENSITIVE
from carerecord.access.principal import Kind
from carerecord.access.redaction import MASKED_TYPES, masked_param
from carerecord.fhir import model
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import Clause, Query, Value
from carerecord.store import schema as s
from carerecord.store.search import Compiler, is_contained


class GuardedCompiler(Compiler):
    """A :class:`Compiler` for one request's guard. :meth:`prepare` reads what the conditions
    need from the record (once per search, on the search's connection)."""

    def __init__(self, registry: SearchParamRegistry, guard: Guard) -> None:
        super().__init__(registry)
        self.guard = guard
        self.redacting: list[str] = []  # patients the caller sees only redacted
        self._depth = 0  # > 0 while compiling the inner clause of a chain or _has
        self._link = False  # whether the _has the next inner clause is for is linked by a redacted field
        self._withheld: dict[str | None, frozenset[str]] | None = None  # by consent: type (None: all) -> patients

    def prepare(self, conn: Connection, q: Query) -> None:
        """Look up what this search's conditions need (only if its criteria could need it)."""
        types = q.res_types or tuple(sorted(model.resource_types()))
        if any(self._touches_masked(c, types) for c in q.clauses) or self._sorts_masked(q, types):
            self.redacting = self.guard.redacting_patients(conn)
        if self._withheld is None and any(c.chain is not None or c.has is not None for c in q.clauses):
            self._withheld = withheld(self.guard, conn)

    def visible(self, r: FromClause, res_type: str) -> list[ColumnElement[bool]]:
        """Conditions on the rows ``r`` (of ``res_type``) of an inner clause: only what the
        caller could read (see the module docstring)."""
        guard = self.guard
        if guard.unrestricted() or is_contained(r):
            # A contained resource is part of its container, which the search has already held
            # to what the caller may see: the chain's source, the _has target, or the host of
            # a _contained match (store/contained.py).
            return []
        conds = guard.restriction(r)
        if guard.who.kind is not Kind.STAFF:
            return conds  # patients and proxies: their own compartments, labels and all
        if self._withheld is None:
            raise RuntimeError("GuardedCompiler.prepare must run before a chain or _has is compiled")
        patients = self._withheld.get(None, frozenset()) | self._withheld.get(res_type, frozenset())
        if patients:
            c = s.compartments.alias()
            conds.append(~exists(select(literal(1)).where(c.c.rid == r.c.rid, c.c.patient_id.in_(sorted(patients)))))
        if res_type != "Patient":  # a Patient's labels are its S-flag (redaction), as in Guard.may_see
            conds.append(or_(~labelled(r, res_type), authored_by(r, res_type, guard.organization)))
        return conds

    # -- conditions ------------------------------------------------------------------------------
    def hidden(self, r: FromClause) -> ColumnElement[bool]:
        """Rows of ``r`` in the compartment of a patient the caller sees redacted."""
        c = s.compartments.alias()
        rid = r.c.container if is_contained(r) else r.c.rid  # a contained resource: its container's
        return exists(select(literal(1)).where(c.c.rid == rid, c.c.patient_id.in_(self.redacting)))

    def top_level(self, q: Query, r: FromClause) -> list[ColumnElement[bool]]:
        """Conditions on the rows ``r`` a search returns: none of a redacted patient's rows when
        a clause (other than a _has, whose link is on its inner rows) or a sort key reads a
        redacted field."""
        if not self.redacting:
            return []
        types = q.res_types or tuple(sorted(model.resource_types()))
        masked = any(self._masked(t, c) for c in q.clauses for t in types) or self._sorts_masked(q, types)
        return [~self.hidden(r)] if masked else []

    # -- the store's hook ------------------------------------------------------------------------
    def predicate(self, clause: Clause, res_type: str, r: FromClause, *,
                  probe: bool = False) -> ColumnElement[bool]:
        """The store's predicate, and on the rows of an inner clause (``r`` is then the chain's
        target or the _has source) the conditions above."""
        extra: list[ColumnElement[bool]] = []
        link, self._link = self._link, False
        if self._depth:
            extra += self.visible(r, res_type)
            if self.redacting and (link or self._masked(res_type, clause)):
                extra.append(~self.hidden(r))
        nested = clause.chain is not None or clause.has is not None
        if clause.has is not None:  # linked to rows of res_type: masked if those are places or carers
            self._link = res_type in MASKED_TYPES and self._masked_param(*clause.has)
        self._depth += nested
        try:
            out = super().predicate(clause, res_type, r, probe=probe)
        finally:
            self._depth -= nested
            self._link = False
        return and_(out, *extra) if extra else out

    # -- which parameters ------------------------------------------------------------------------
    def _masked_param(self, res_type: str, code: str) -> bool:
        param = self.registry.get(res_type, code)
        return param is not None and masked_param(param)

    def _masked(self, res_type: str, clause: Clause) -> bool:
        """Whether ``clause``'s own test on rows of ``res_type`` reads a redacted field: an
        address, telecom or narrative parameter, or a reference to a place or carer (by its
        values' types, so ``subject=Patient/x`` is not one; an untyped id, ``:identifier`` or
        ``:missing`` counts when the parameter can refer to one). A _has is judged by its link."""
        if clause.param is None or clause.has is not None:
            return False
        param = self.registry.get(res_type, clause.param.code)
        if param is None or not masked_param(param):
            return False
        if param.type != "reference" or clause.modifier in ("identifier", "missing"):
            return True
        if clause.chain is not None:
            return any(t in MASKED_TYPES for t in clause.chain_types)
        return any(_names(v) is None or _names(v) in MASKED_TYPES for v in clause.values)

    def _sorts_masked(self, q: Query, types: tuple[str, ...]) -> bool:
        return any(self._masked_param(t, code) for code, _ in q.sort for t in types)

    def _touches_masked(self, clause: Clause, types: tuple[str, ...]) -> bool:
        """Whether ``clause`` or any clause nested in it reads a redacted field."""
        if clause.has is not None:
            src, code = clause.has
            linked = any(t in MASKED_TYPES for t in types) and self._masked_param(src, code)
            return linked or (clause.chain is not None and self._touches_masked(clause.chain, (src,)))
        if any(self._masked(t, clause) for t in types):
            return True
        return clause.chain is not None and self._touches_masked(clause.chain, clause.chain_types)


def _names(v: Value) -> str | None:
    """The resource type a reference value names (None for a bare id)."""
    if v.ref_type:
        return v.ref_type
    if v.url:
        parts = [p for p in v.url.split("/") if p]
        return parts[-2] if len(parts) >= 2 else None
    return None


def labelled(r: FromClause, res_type: str) -> ColumnElement[bool]:
    """Rows of ``r`` carrying a sensitive label (``_security`` index rows)."""
    tok = s.idx_token.alias()
    by_system: dict[str, list[str]] = {}
    for system, code in sorted(SENSITIVE):
        by_system.setdefault(system, []).append(code)
    return exists(select(literal(1)).where(
        tok.c.rid == r.c.rid, tok.c.pkey == s.param_key(res_type, "_security"),
        or_(*[and_(tok.c.system == system, tok.c.code.in_(codes)) for system, codes in by_system.items()])))


def authored_by(r: FromClause, res_type: str, organization: str | None) -> ColumnElement[bool]:
    """Rows of ``r`` whose ``meta.source`` ends in ``organization`` ("Organization/x"), the
    form the guard stamps; a source with a fragment or further path is not taken as the
    organisation's here (stricter than :func:`~carerecord.access.policy.authoring_organization`)."""
    if organization is None or not organization.startswith("Organization/"):
        return false()
    uri = s.idx_uri.alias()
    escaped = organization.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return exists(select(literal(1)).where(
        uri.c.rid == r.c.rid, uri.c.pkey == s.param_key(res_type, "_source"),
        or_(uri.c.value == organization, uri.c.value.like(f"%/{escaped}", escape="\\"))))


def withheld(guard: Guard, conn: Connection) -> dict[str | None, frozenset[str]]:
    """The patients within a member of staff's reach whose consent withholds their record
    (key None) or a type of it (key: the type) from the staff member's organisation: those
    with an active Consent (other than a national data opt-out), each decided as a read is.
    Empty for anyone else."""
    role = guard.who.role
    if guard.who.kind is not Kind.STAFF or role is None:
        return {}
    ref, tok = s.idx_reference, s.idx_token
    active = select(tok.c.rid).where(tok.c.pkey == s.param_key("Consent", "status"), tok.c.code == "active")
    opt_out = select(tok.c.rid).where(tok.c.pkey == s.param_key("Consent", "category"),
                                      tok.c.system == OPT_OUT[0], tok.c.code == OPT_OUT[1])
    reach = relationships.related(guard.carer, also=[breakglass.granted_patients(role.practitioner_role)])
    found = conn.execute(select(ref.c.ref_id).distinct().where(
        ref.c.pkey == s.param_key("Consent", "patient"), ref.c.ref_type == "Patient",
        ref.c.rid.in_(active), ref.c.rid.not_in(opt_out), ref.c.ref_id.in_(reach)))
    out: dict[str | None, set[str]] = {}
    for (pid,) in found:
        d = guard.decide(conn, str(pid))
        if not d.allowed:
            out.setdefault(None, set()).add(str(pid))
        elif d.sharing is not None:
            for t in d.sharing.hidden_types(guard.organization, d.registered):
                out.setdefault(t, set()).add(str(pid))
    return {k: frozenset(v) for k, v in out.items()}
