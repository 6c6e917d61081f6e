"""The store's searcher and interactions, wrapped by a request's :class:`~carerecord.access.guard.Guard`.

Wrapping, not editing, ``store/``: :class:`GuardedSearcher` adds the guard's conditions to every
plan the store's searcher makes (so a page, its cursor, ``_total``, chains and ``_has`` only ever
walk permitted rows) and filters every match and included resource; :class:`GuardedInteractions`
checks existing resources before writes, refuses references to patients the caller cannot reach
(exactly as references to unknown ones) and makes conditional interactions see only what the
caller may see. The transaction processor takes a GuardedInteractions per request, so every
entry of a Bundle passes the same checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Select, func, select

from carerecord.access import labels
from carerecord.access.clauses import GuardedCompiler
from carerecord.access.guard import Guard
from carerecord.access.redaction import MASKED_TYPES
from carerecord.errors import Gone, NotFound
from carerecord.fhir.indexing import patient_compartments
from carerecord.fhir.search_query import Query
from carerecord.store import direct
from carerecord.store import schema as s
from carerecord.store.interactions import Interactions, Result, check_id
from carerecord.store.records import Stored
from carerecord.store.repository import Current, Unit
from carerecord.store.search import Hit, Plan, Searcher, SearchResult


class GuardedSearcher(Searcher):
    """A Searcher whose every query is held to ``guard``'s permitted compartments."""

    def __init__(self, searcher: Searcher, guard: Guard) -> None:
        super().__init__(searcher.registry)
        self.compiler: GuardedCompiler = GuardedCompiler(searcher.registry, guard)
        self.direct = searcher.direct
        self.guard = guard
        self.extra = guard.restriction()
        self.narrowing: list[ColumnElement[bool]] = []  # an operation's own conditions (everything)
        self._extra_sql: tuple[str, list[Any] | None] | None = None

    def plan(self, q: Query) -> Plan:
        plan = super().plan(q)
        plan.conds.extend(self.extra)
        plan.conds.extend(self.narrowing)
        plan.conds.extend(self.compiler.top_level(q, s.resources))
        return plan

    def direct_ok(self, q: Query) -> bool:
        """Direct pages (store/direct.py) with chains only for a caller the guard does not
        restrict: for anyone else the inner rows of a chain must be held to what the caller
        could read (clauses.py), which only the expression compiler adds."""
        return self.direct and direct.eligible(q, self.registry.get, chains=self.guard.unrestricted())

    def direct_conditions(self, q: Query, postgres: bool) -> tuple[str, list[Any]] | None:
        """What :meth:`plan` adds (the guard's restriction, and the criteria conditions on the
        rows returned) as SQL text for direct pages (store/direct.py); the restriction is
        compiled once per request."""
        if self.narrowing:
            return None  # not written as text: the general path
        top = self.compiler.top_level(q, s.resources)
        if top:  # a clause reads a field redacted for some patient: compiled for this search
            return direct.conditions_sql([*self.extra, *top], postgres)
        if not self.extra:
            return "", []
        if self._extra_sql is None:
            self._extra_sql = direct.conditions_sql(self.extra, postgres) or ("", None)
        text, values = self._extra_sql
        return None if values is None else (text, values)

    def count_query(self, q: Query) -> Select[Any]:
        """Counts over ``resources`` with the restriction (the store's index-only count would
        skip it and so count forbidden rows)."""
        if not self.extra and not self.narrowing and not self.compiler.top_level(q, s.resources):
            return super().count_query(q)
        return select(func.count()).select_from(s.resources).where(*self.where(q))

    def run(self, conn: Connection, q: Query, count: int) -> SearchResult:
        """One page as the store runs it, its matches and includes filtered by the guard. A
        filtered page may be shorter than ``count``; its links stay those of the restricted
        SQL page, so paging goes on honestly. ``_total`` is dropped when the filter removed
        anything, so it never counts what the caller may not see."""
        self.compiler.prepare(conn, q)
        include, revinclude = q.include, q.revinclude
        q.include, q.revinclude = [], []
        try:
            result = super().run(conn, q, count)
        finally:
            q.include, q.revinclude = include, revinclude
        shown = self.guard.hits(conn, result.matches)
        if len(shown) != len(result.matches):
            result.total = None
        result.matches = shown
        if include or revinclude:
            result.included = self.includes(conn, q, result.matches)
        return result

    def includes(self, conn: Connection, q: Query, hits: list[Hit],
                 admit: Callable[[list[Hit]], list[Hit]] | None = None) -> list[Hit]:
        """_include/_revinclude as the store does them, but each round filtered by the guard
        (after ``admit``, if given) before the next iterates from it, so ``:iterate`` never
        walks through a resource the caller may not see."""
        def guarded(fresh: list[Hit]) -> list[Hit]:
            return self.guard.hits(conn, admit(fresh) if admit is not None else fresh)
        return super().includes(conn, q, hits, guarded)

    def _forward(self, conn: Connection, rids: list[int], src: str, code: str,
                 target: str | None) -> list[Hit]:
        """The store's forward _include, but from a resource the caller saw redacted only the
        references left in what they saw (no GP, place or carer it had)."""
        shown = self.guard.redacted
        plain = [r for r in rids if r not in shown]
        out = super()._forward(conn, plain, src, code, target) if plain else []
        redacted = [r for r in rids if r in shown]
        if redacted:
            left = b"".join(shown[r] for r in redacted)
            out += [h for h in super()._forward(conn, redacted, src, code, target)
                    if f'"{h.res_type}/{h.res_id}"'.encode() in left]
        return out

    def _reverse(self, conn: Connection, keys: list[tuple[str, str]], src: str, code: str) -> list[Hit]:
        """The store's _revinclude, but what refers to a place or carer (an Organization, a
        Location...) by a reference the caller would see masked is left out: a GP's
        ``_revinclude=Patient:general-practitioner`` must not list a redacted patient."""
        masked = [k for k in keys if k[0] in MASKED_TYPES]
        redacting = set(self.guard.redacting_patients(conn)) if masked else set()
        if not redacting:
            return super()._reverse(conn, keys, src, code)
        others = [k for k in keys if k[0] not in MASKED_TYPES]
        out = super()._reverse(conn, others, src, code) if others else []
        found = super()._reverse(conn, masked, src, code)
        comps = self.guard.patients_of(conn, found)
        return out + [h for h in found if not redacting & set(comps.get(h.rid, []))]

    def everything(self, conn: Connection, q: Query, count: int, referenced: Callable[[str], bool],
                   narrowing: Sequence[ColumnElement[bool]] = ()) -> SearchResult:
        """One page of ``Patient/{id}/$everything``: ``q`` is the compartment search (its types,
        ``_since``, cursor) with the conditions ``narrowing`` (care dates) on its rows, run and
        filtered like any search; then the resources the page's matches refer to, through any
        reference parameter, of the types ``referenced`` accepts (Practitioners, Organizations,
        Medications...), each passed through the guard too."""
        q.include, q.revinclude = [], []
        self.narrowing = list(narrowing)
        try:
            result = self.run(conn, q, count)
        finally:
            self.narrowing = []
        wanted = Query(q.res_types, include=[(t, "*", None, False) for t in sorted({h.res_type for h in result.matches})])
        result.included = self.includes(conn, wanted, result.matches,
                                        lambda fresh: [h for h in fresh if referenced(h.res_type)])
        return result


class GuardedInteractions(Interactions):
    """The RESTful interactions of one request, held to ``guard``."""

    def __init__(self, inner: Interactions, guard: Guard) -> None:
        super().__init__(inner.repo, inner.base)
        self.guard = guard
        self.searcher = GuardedSearcher(inner.searcher, guard)

    def find(self, conn: Connection, res_type: str, query: str, limit: int = 2) -> list[Hit]:
        """Conditional matches among what the caller may see only: a forbidden match is no
        match, exactly as if it did not exist."""
        return super().find(conn, res_type, query, limit)

    def check_reference_objects(self, unit: Unit, refs: list[tuple[str, dict[str, Any]]],
                                pending: frozenset[tuple[str, str]] = frozenset()) -> None:
        """The store's reference check, after the guard's: no reference to a patient the
        caller cannot reach. (What a transaction writes was checked entry by entry in
        :meth:`before_write`.)"""
        self.guard.check_references(unit.conn, refs, self.base, pending)
        super().check_reference_objects(unit, refs, pending)

    def writable(self, unit: Unit, res_type: str, res_id: str, *, missing_ok: bool) -> Stored | None:
        """The current version of a resource the caller is about to change, if it may see it.

        Unknown: None when ``missing_ok`` (the caller may create with this id, or a delete of
        nothing is nothing), otherwise NotFound in exactly the words a forbidden one gets.
        Deleted: NotFound alike unless its last content was visible; then None when
        ``missing_ok``, else Gone. Existing but not visible: NotFound alike."""
        try:
            st = unit.read(res_type, res_id)
        except NotFound:
            if missing_ok:
                return None
            raise NotFound(f"{res_type}/{res_id} is not known") from None
        except Gone:
            self.guard.gone(unit.conn, res_type, res_id)
            if missing_ok:
                return None
            raise
        self.guard.check_existing(unit.conn, st)
        return st

    def may_write(self, unit: Unit, res_type: str, res_id: str | None = None,
                  resource: dict[str, Any] | None = None) -> None:
        """403 unless the caller may write ``res_type`` (the role's write activities), decided
        before anything is looked up; the refusal is audited as denied for the patients of
        the resource concerned (the body's, or the current version's)."""
        if self.guard.may_write(res_type):
            return
        patients: list[str] = []
        try:
            if resource is not None:
                patients = patient_compartments(resource)
            elif res_id is not None:
                current = unit.read(res_type, res_id)
                patients = patient_compartments(orjson.loads(current.content or b"{}"))
        except Exception:  # noqa: BLE001,S110 - the refusal stands; only its audit names fewer patients
            pass
        self.guard.refuse_write(res_type, patients)

    def _relabel_only(self, unit: Unit, res_type: str, existing: bool, res_id: str | None = None,
                      resource: dict[str, Any] | None = None) -> bool:
        """:meth:`may_write`, except that a holder of a labelling activity whose role does not
        write ``res_type`` may go on to change an ``existing`` resource's labels alone (True:
        decided by :meth:`_labels` once the current version is seen, so a resource they cannot
        see answers 404 as an unknown one would)."""
        if self.guard.may_write(res_type):
            return False
        if existing and labels.may_label(self.guard):
            return True
        self.may_write(unit, res_type, res_id, resource)
        return False

    def _labels(self, unit: Unit, res_type: str, st: Stored | None, resource: dict[str, Any],
                relabel_only: bool) -> None:
        """The label check of :mod:`carerecord.access.labels` for a write replacing ``st`` (a
        create, ``st`` None, is not a label change; one the role could not write is refused)."""
        if st is not None:
            labels.check(self.guard, unit.conn, st, resource, relabel_only=relabel_only)
        elif relabel_only:
            self.guard.refuse_write(res_type, patient_compartments(resource))

    def before_write(self, unit: Unit, res_type: str, res_id: str, resource: dict[str, Any],
                     current: Current | None, chosen_id: bool) -> bool:
        """A transaction's POST or PUT entry: a type the role may write; a PUT replaces only
        what the caller may see, and creates with a client-chosen id only for those who may
        create at will (no oracle); the authoring organisation is stamped (True when the
        resource changed)."""
        relabel_only = self._relabel_only(unit, res_type, current is not None and not current.deleted,
                                          resource=resource)
        if self.guard.unrestricted() and (not chosen_id or self.guard.may_create_at_will(res_type)):
            return False  # a trusted system's load: nothing to look up, nothing to stamp
        st = None
        if current is not None and not current.deleted:
            self.guard.check_type(res_type)
        if current is not None or chosen_id:
            st = self.writable(unit, res_type, res_id,
                               missing_ok=not chosen_id or self.guard.may_create_at_will(res_type))
        self._labels(unit, res_type, st, resource, relabel_only)
        return self.guard.stamp(resource, st, self.base)

    def create(self, unit: Unit, resource: dict[str, Any], res_type: str,
               if_none_exist: str | None = None, res_id: str | None = None, *,
               validated: bool = False) -> Result:
        """Create: a type the role may write (not necessarily read: a care worker records an
        Observation they may not browse), stamped with its author."""
        self.may_write(unit, res_type, resource=resource)
        self.guard.stamp(resource, None, self.base)
        return super().create(unit, resource, res_type, if_none_exist, res_id, validated=validated)

    def update(self, unit: Unit, res_type: str, res_id: str, resource: dict[str, Any],
               if_match: int | None = None, *, validated: bool = False) -> Result:
        """Update; update-as-create (an unknown id) only for callers who may create at will, so
        an unknown id and a forbidden one answer alike (404) for everyone else."""
        check_id(res_id)
        relabel_only = self._relabel_only(unit, res_type, True, resource=resource)
        self.guard.check_type(res_type)
        st = self.writable(unit, res_type, res_id, missing_ok=self.guard.may_create_at_will(res_type))
        self._labels(unit, res_type, st, resource, relabel_only)
        self.guard.stamp(resource, st, self.base)
        return super().update(unit, res_type, res_id, resource, if_match, validated=validated)

    def conditional_update(self, unit: Unit, res_type: str, query: str, resource: dict[str, Any],
                           if_match: int | None = None) -> Result:
        """A match is updated (:meth:`update` decides, labels included); no match is a create."""
        self._relabel_only(unit, res_type, True, resource=resource)
        self.guard.check_type(res_type)
        return super().conditional_update(unit, res_type, query, resource, if_match)

    def patch(self, unit: Unit, res_type: str, res_id: str, kind: str, body: Any,
              if_match: int | None = None) -> Result:
        """Patch: the patched resource is written by :meth:`update`, which decides the write
        (type, visibility, labels) on what the patch made."""
        self._relabel_only(unit, res_type, True, res_id)
        self.guard.check_type(res_type)
        self.writable(unit, res_type, res_id, missing_ok=False)
        return super().patch(unit, res_type, res_id, kind, body, if_match)

    def delete(self, unit: Unit, res_type: str, res_id: str, if_match: int | None = None) -> Result:
        """Delete. Deleting nothing is no error for a trusted system (as in the store); for
        anyone else an unknown id answers as a forbidden one (404), and a deleted one is
        deleted again (204) only if they could see it."""
        self.may_write(unit, res_type, res_id)
        self.guard.check_type(res_type)
        try:
            self.writable(unit, res_type, res_id, missing_ok=self.guard.unrestricted())
        except Gone:  # deleted before, and they could see it: deleting again changes nothing
            return Result(204, None)
        return super().delete(unit, res_type, res_id, if_match)

    def conditional_delete(self, unit: Unit, res_type: str, query: str) -> Result:
        self.may_write(unit, res_type)
        self.guard.check_type(res_type)
        return super().conditional_delete(unit, res_type, query)
