"""The run of one export job: every resource through the guard, in one database snapshot, to
NDJSON files, then one audit record per exported patient, then the manifest
(http://hl7.org/fhir/uv/bulkdata/STU2/export.html).

**Through the guard.** Each page is read with a :class:`~carerecord.access.guarded.GuardedSearcher`
over a fresh :class:`~carerecord.access.guard.Guard` of the client that started the job, so the
rules that hold for its searches hold for every exported resource: for a client registered for
secondary use, the compartments of patients with a national data opt-out are left out in SQL
(the Patient and every resource in their compartment), and each page is filtered again.

**Keyset, bounded memory.** Pages come from the Searcher's keyset cursors: per type ordered by
(lastUpdated, rid), which the ``(res_type, last_updated)`` index answers, for a system or
Patient export; member by member through each member's compartment (rid order) for a Group
export, each resource written once, under the first member whose compartment holds it. Rows
are streamed to the files a page at a time; what is held is one page, and the ids of the
patients exported so far (one audit record each; not the resources).

**Consistency.** The whole run reads one snapshot (SQLite: one read transaction; PostgreSQL:
REPEATABLE READ, read only), so a resource changed while the job runs is exported as it was,
never half old and half new, and a new one is not in this export. ``transactionTime`` is chosen
so that nothing changed at or before it is left out of this export or of the next one asked
with ``_since=transactionTime``: on SQLite the snapshot is opened under the writer lock, and
every write is stamped and committed inside it, so the snapshot holds exactly the writes stamped
up to ``transactionTime``. On PostgreSQL writers run concurrently, so ``transactionTime`` is the
start of the oldest transaction open just before the snapshot (or the clock), less
:data:`PG_MARGIN_US` for the moment between a unit stamping its writes and its first statement:
the export may hold resources changed up to that much after ``transactionTime`` (a following
``_since`` export returns them again; none is ever missed). Reading ``pg_stat_activity``
needs the server's sessions to share its database role, as they do.

**Parameters that narrow or add** (H055, ``request.py``). ``patient`` makes any export walk the
listed patients one by one, as a Group's members are walked (for a Group, the listed current
members), and a resource is written only if every Patient compartment it is in is a listed
patient's: nothing of anyone else. ``includeAssociatedData=RelevantProvenanceResources``: each
page's Provenance whose ``target`` is one of the page's (non-Provenance) resources, found as
``_revinclude=Provenance:target`` is, through the guarded searcher (so each passes the guard
like any resource), written once each (the rids of the Provenance written are held for that),
whatever ``_since`` and ``_typeFilter`` say; with ``patient``, held to the same compartment
rule. ``_elements``: each resource is cut down as a search's ``_elements`` cuts it
(:mod:`carerecord.fhir.subset`) and marked SUBSETTED, after the guard has passed it.

**Audit before availability.** The files are listed (made available) only by the manifest,
written after the audit records of every exported patient (BALP: an export, action ``E``) are
committed; a failed audit fails the job and its files are removed.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
from sqlalchemy import ColumnElement, Connection, Engine, and_, distinct, exists, false, func, or_, select

from carerecord.access.audit import SUCCESS, Facts, audit_events
from carerecord.access.audit_store import AuditStore
from carerecord.access.consent import opted_out_among, opted_out_ids
from carerecord.access.guard import Guard
from carerecord.access.guarded import GuardedSearcher
from carerecord.access.principal import Kind, Principal, Purpose
from carerecord.errors import FhirError
from carerecord.fhir.references import local_reference, split_relative
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.search_query import Query, parse
from carerecord.fhir.subset import keep_elements, mark_subsetted
from carerecord.services.export.jobs import FAILED, RUNNING, Job, State
from carerecord.services.export.request import (
    GROUP,
    PATIENT,
    RELEVANT_PROVENANCE,
    ExportRequest,
    filter_query,
)
from carerecord.store import codesystems, paging
from carerecord.store import schema as s
from carerecord.store.records import iso_instant, now_us
from carerecord.store.repository import Repository
from carerecord.store.search import Hit, Searcher, SearchResult
from carerecord.store.writer_lock import writing

log = logging.getLogger("carerecord.export")
PG_MARGIN_US = 1_000_000
OPT_OUT_EXTENSION = "https://carerecord.org/fhir/bulk-export/excluded-patients"
PURPOSE_EXTENSION = "https://carerecord.org/fhir/bulk-export/purpose"
_PROGRESS_SECONDS = 2.0
_AUDIT_BATCH = 500
_PG_START = ("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, "
             "(SELECT (extract(epoch FROM min(xact_start)) * 1000000)::bigint FROM pg_stat_activity "
             "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
             "AND xact_start IS NOT NULL)")


class Cancelled(Exception):
    """The job was deleted (or found interrupted) while it ran: stop, publish nothing."""


class JobFailed(Exception):
    """The export cannot be made (e.g. its Group is gone); the message is shown to the client."""


@contextmanager
def snapshot(engine: Engine) -> Iterator[tuple[Connection, int]]:
    """A connection reading one snapshot of the record for the whole block, and the
    ``transactionTime`` it stands for (see the module docstring)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as probe:
            clock, oldest = probe.exec_driver_sql(_PG_START).one()
            probe.rollback()
        at = min(int(clock), int(oldest) if oldest is not None else int(clock)) - PG_MARGIN_US
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                conn.exec_driver_sql("SELECT 1 FROM resources LIMIT 1").all()  # the snapshot is taken here
                yield conn, at
        return
    with engine.connect() as conn:
        with writing(engine):  # no write is between its stamp and its commit while we hold it
            trans = conn.begin()
            conn.exec_driver_sql("SELECT 1 FROM resources LIMIT 1").all()  # the read snapshot starts here
            at = now_us()
        try:
            yield conn, at
        finally:
            trans.rollback()


@dataclass(slots=True)
class Output:
    res_type: str
    name: str
    count: int = 0
    size: int = 0


@dataclass(slots=True)
class Files:
    """The job's output files: one per type, a new one (``<Type>-<n+1>.ndjson``) when the next
    line would take the current one past ``max_bytes``."""

    job: Job
    max_bytes: int
    outputs: list[Output] = field(default_factory=list)
    _open: dict[str, tuple[IO[bytes], Output]] = field(default_factory=dict)
    _numbers: dict[str, int] = field(default_factory=dict)

    def write(self, res_type: str, line: bytes) -> None:
        found = self._open.get(res_type)
        if found is not None and found[1].count and found[1].size + len(line) > self.max_bytes:
            self.close(res_type)
            found = None
        if found is None:
            n = self._numbers[res_type] = self._numbers.get(res_type, 0) + 1
            out = Output(res_type, f"{res_type}-{n}.ndjson")
            try:
                found = (open(self.job.dir / out.name, "xb"), out)  # noqa: SIM115 - closed by close()
            except FileNotFoundError:
                raise Cancelled from None  # the job's folder is gone: it was deleted
            self._open[res_type] = found
            self.outputs.append(out)
        f, out = found
        f.write(line)
        out.count += 1
        out.size += len(line)

    def close(self, res_type: str | None = None) -> None:
        """Close (and sync to disk: the manifest, synced too, must never list a file a crash
        could leave short) the file of ``res_type``, or every open one."""
        for t in [res_type] if res_type else list(self._open):
            found = self._open.pop(t, None)
            if found is not None:
                found[0].flush()
                os.fsync(found[0].fileno())
                found[0].close()

    def remove(self) -> None:
        """Close and delete every output file (a failed or cancelled job publishes nothing)."""
        self.close()
        for out in self.outputs:
            (self.job.dir / out.name).unlink(missing_ok=True)


class _Scoped(GuardedSearcher):
    """The guard's searcher with the export's own conditions (level, ``_since``, cursor hint)
    and its ``_typeFilter`` queries (by type; a type with several is exported where any of
    them matches), compiled by the guard's own compiler: so a chain or ``_has`` in a filter
    sees only what the client may see (for a secondary-use client, nothing of an opted-out
    patient), and a filter can only narrow the page."""

    def __init__(self, searcher: Searcher, guard: Guard, conds: list[ColumnElement[bool]],
                 filters: dict[str, list[Query]] | None = None) -> None:
        super().__init__(searcher, guard)
        self.extra = [*self.extra, *conds]
        self.filters = filters or {}

    def run(self, conn: Connection, q: Query, count: int) -> SearchResult:
        self.apply_filters(conn)
        return super().run(conn, q, count)

    def apply_filters(self, conn: Connection) -> None:
        """Add the ``_typeFilter`` condition to the page's (once; its codes and the guard's
        conditions looked up on ``conn``)."""
        filters, self.filters = self.filters, {}
        if filters:
            self.extra = [*self.extra, self._filtered(conn, filters)]

    def _filtered(self, conn: Connection, filters: dict[str, list[Query]]) -> ColumnElement[bool]:
        """Rows of an unfiltered type, or matching one of their type's filters (the type tested
        as ``res_type || ''``, which no index serves: see :func:`conditions`)."""
        r = s.resources
        kind = r.c.res_type.concat("")
        parts: list[ColumnElement[bool]] = [kind.not_in(sorted(filters))]
        for res_type, queries in sorted(filters.items()):
            matches = []
            for fq in queries:
                codesystems.resolve(conn, fq)  # :below/:above closures
                self.compiler.prepare(conn, fq)  # what the guard's conditions on chains and _has need
                matches.append(and_(*[self.compiler.predicate(c, res_type, r, probe=True) for c in fq.clauses],
                                    *self.compiler.top_level(fq, r)))
            parts.append(and_(kind == res_type, or_(*matches)))
        return or_(*parts)


def conditions(req: ExportRequest, cursor: str | None) -> list[ColumnElement[bool]]:
    """The export's own conditions on ``resources`` for the page after ``cursor``: changed
    after ``_since``, in a Patient compartment for a Patient export, of the types asked for in
    a Group export or one with ``patient`` (whose pages are driven by a patient's compartment:
    its type and time tests are written so that no index can serve them, ``res_type || ''``
    and ``last_updated + 0``, lest a planner without statistics walk every resource of a type
    instead)."""
    r = s.resources
    conds: list[ColumnElement[bool]] = []
    if req.by_member:
        conds.append(r.c.res_type.concat("").in_(req.types))
        if req.since_us is not None:
            conds.append(r.c.last_updated + 0 > req.since_us)
        return conds
    position = paging.decode(cursor)
    if position is not None and position.values:
        # Implied by the cursor's own condition (and then by _since, which the previous
        # page's rows met); said plainly, it is the one range on the (res_type,
        # last_updated) index, so each page starts where the last one ended.
        conds.append(r.c.last_updated >= position.values[0])
    elif req.since_us is not None:
        conds.append(r.c.last_updated > req.since_us)
    if req.level == PATIENT:
        c = s.compartments
        conds.append(exists().where(c.c.rid == r.c.rid))
    return conds


def page_searcher(searcher: Searcher, who: Principal, req: ExportRequest, cursor: str | None,
                  filters: dict[str, list[Query]] | None = None) -> _Scoped:
    """The searcher of one page: a fresh guard of ``who`` (its memo and audit notes stay one
    page's size) with the export's conditions and the ``_typeFilter`` queries of the types the
    page may hold (:func:`filter_queries`)."""
    return _Scoped(searcher, Guard(who, {}), conditions(req, cursor), filters)


def filter_queries(req: ExportRequest, types: tuple[str, ...], registry: SearchParamRegistry,
                   base: str) -> dict[str, list[Query]]:
    """The ``_typeFilter`` searches of ``types``, by type (fresh: resolving a search's codes
    changes it)."""
    out: dict[str, list[Query]] = {}
    for t in types:
        for f in req.filters_of(t):
            out.setdefault(t, []).append(filter_query(f, registry, base))
    return out


def type_query(res_type: str, registry: SearchParamRegistry, base: str) -> Query:
    """The search that pages through one type of a system or Patient export."""
    return parse((res_type,), [("_sort", "_lastUpdated")], registry, base)


def member_query(member: str, registry: SearchParamRegistry, base: str) -> Query:
    """The search that pages through one member's compartment in a Group export (rid order
    off the compartment index; the types are among :func:`conditions`)."""
    q = parse((), [], registry, base)
    q.compartment = member
    return q


class Runner:
    """Runs one export job (in a thread of the process that accepted its kick-off)."""

    def __init__(self, job: Job, principal: Principal, req: ExportRequest, repo: Repository, searcher: Searcher,
                 base: str, *, audit: AuditStore | None, max_file_bytes: int, page_size: int = 500,
                 client_address: str | None = None) -> None:
        self.job, self.who, self.req, self.repo, self.searcher = job, principal, req, repo, searcher
        self.base, self.audit, self.page_size, self.client_address = base, audit, page_size, client_address
        self.files = Files(job, max_file_bytes)
        self.patients: set[str] = set()  # ids of the patients whose data is exported: one audit record each
        # includeAssociatedData=RelevantProvenanceResources: the rids of the Provenance written (each once)
        self.provenance: set[int] | None = set() if RELEVANT_PROVENANCE in req.associated else None
        self.written = 0
        self._progress_at = 0.0

    # -- the run ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Run the job to completion, failure or cancellation; never raises."""
        try:
            self._state("started")
            if self.who.kind is not Kind.SYSTEM:  # request.check_caller refused them at kick-off
                raise JobFailed("Bulk export is for system clients only")
            with snapshot(self.repo.engine) as (conn, at):
                members = self._members(conn) if self.req.level == GROUP else []
                # the opt-out count is the level's (the Group's members, or everyone), never the
                # patient list's: it says nothing of whether a listed patient exists or opted out
                excluded = self._excluded(conn, members)
                if self.req.by_member:
                    self._group(conn, self._chosen(members))
                else:
                    for n, t in enumerate(self.req.types, 1):
                        self._type(conn, t, f"{t} ({n} of {len(self.req.types)} types)")
            self.files.close()
            self._check()
            self._state("recording the audit trail")
            self._audit()
            if not self.job.complete(self._manifest(at, excluded), now_us()):
                raise Cancelled
        except Cancelled:
            self.files.remove()
            if self.job.exists():  # interrupted rather than deleted: say so
                self._fail("The export was interrupted before it finished; start a new one")
        except JobFailed as exc:
            self.files.remove()
            self._fail(str(exc))
        except Exception:  # noqa: BLE001 - reported to the client as a failed job, logged in full here
            log.exception("export %s failed", self.job.id)
            self.files.remove()
            self._fail("The export failed; the server log has the details")

    def _fail(self, message: str) -> None:
        try:
            self.job.set_state(State(FAILED, "failed", message, now_us()))
        except FileNotFoundError:
            pass  # deleted meanwhile

    def _state(self, progress: str, *, force: bool = True) -> None:
        if not force and time.monotonic() - self._progress_at < _PROGRESS_SECONDS:
            return
        self._progress_at = time.monotonic()
        try:
            self.job.set_state(State(RUNNING, progress))
        except FileNotFoundError:
            raise Cancelled from None

    def _check(self) -> None:
        if not self.job.exists() or self.job.interrupted_mark():
            raise Cancelled

    # -- pages -----------------------------------------------------------------------------------
    def _page(self, conn: Connection, q: Query) -> tuple[list[Hit], list[Hit], dict[int, list[str]], str | None]:
        """One page: its resources, the Provenance associated with them (if asked for), their
        Patient compartments by rid, and the next page's cursor."""
        types = q.res_types or self.req.types
        filters = filter_queries(self.req, types, self.repo.registry, self.base) if self.req.filters else None
        searcher = page_searcher(self.searcher, self.who, self.req, q.cursor, filters)
        result = searcher.run(conn, q, self.page_size)
        associated: list[Hit] = []
        if self.provenance is not None:
            targets = [h for h in result.matches if h.res_type != "Provenance"]  # of non-Provenance ones
            if targets:
                of_targets = Query((), revinclude=[("Provenance", "target", None, False)])  # _revinclude=Provenance:target
                associated = searcher.includes(conn, of_targets, targets)
        hits = result.matches
        return hits, associated, _compartments(conn, [*hits, *associated]), result.next_cursor

    def _type(self, conn: Connection, res_type: str, label: str) -> None:
        q = type_query(res_type, self.repo.registry, self.base)
        self._state(f"exporting {label}; {self.written} resources written so far")
        while True:
            self._check()
            hits, associated, comps, q.cursor = self._page(conn, q)
            for h in [*hits, *associated]:
                self._write(h, comps.get(h.rid, ()))
            self._state(f"exporting {label}; {self.written} resources written so far", force=False)
            if q.cursor is None:
                break
        self.files.close(res_type)

    def _chosen(self, members: list[str]) -> list[str]:
        """The patients whose compartments are walked: the Group's members, the ``patient``
        list, or the listed members of the Group."""
        if self.req.patients is None:
            return members
        if self.req.level == GROUP:
            return sorted(set(members) & set(self.req.patients))
        return list(self.req.patients)

    def _group(self, conn: Connection, members: list[str]) -> None:
        wanted = set(members)
        only = self.req.patients is not None  # patient: nothing of a patient not asked for
        label = f"Group/{self.req.group}" if self.req.level == GROUP else "Patient"
        for n, member in enumerate(members, 1):
            q = member_query(member, self.repo.registry, self.base)
            while True:
                self._check()
                hits, associated, comps, q.cursor = self._page(conn, q)
                for h in hits:
                    patients = comps.get(h.rid, ())
                    if only and not wanted.issuperset(patients):
                        continue
                    if min((p for p in patients if p in wanted), default=member) == member:
                        self._write(h, patients)  # once, under the first member whose compartment holds it
                for h in associated:  # each once (_write), wherever it was found
                    patients = comps.get(h.rid, ())
                    if not only or wanted.issuperset(patients):
                        self._write(h, patients)
                self._state(f"exporting {label}: patient {n} of {len(members)}; "
                            f"{self.written} resources written so far", force=False)
                if q.cursor is None:
                    break

    def _members(self, conn: Connection) -> list[str]:
        """The Group's current members in this snapshot (``inactive`` ones are not). The Group
        is read as it is stored: it is in its members' compartments, so for a secondary-use
        client the guard would hide a Group with one opted-out member, where what must be left
        out is that member's data (and it is, page by page); only system clients export."""
        group = self.req.group or ""
        try:
            st = self.repo.read("Group", group, conn=conn)
        except FhirError:
            raise JobFailed(f"Group/{group} is no longer known") from None
        doc = orjson.loads(st.content or b"{}")
        out = set()
        for m in doc.get("member") or []:
            if not isinstance(m, dict) or m.get("inactive") is True:
                continue
            ref = (m.get("entity") or {}).get("reference")
            pair = split_relative(local_reference(ref, self.base)) if isinstance(ref, str) else None
            if pair is not None and pair[0] == "Patient":
                out.add(pair[1])
        return sorted(out)

    def _write(self, h: Hit, patients: Any) -> None:
        if self.provenance is not None and h.res_type == "Provenance":
            if h.rid in self.provenance:
                return  # already written: of the type, or associated with another resource
            self.provenance.add(h.rid)
        keep = self.req.elements_of(h.res_type)
        if keep is not None:  # _elements: as a search's, marked SUBSETTED
            line = orjson.dumps(mark_subsetted(keep_elements(orjson.loads(h.content), keep)))
        else:
            line = h.content if b"\n" not in h.content else orjson.dumps(orjson.loads(h.content))
        self.files.write(h.res_type, line + b"\n")
        self.patients.update(patients)
        self.written += 1

    # -- the opt-out, the audit trail and the manifest ------------------------------------------------
    def _excluded(self, conn: Connection, members: list[str]) -> int:
        """How many patients within the export's reach were left out under the national data
        opt-out (secondary use only): the Group's members who opted out, or every patient who did."""
        if self.who.purpose is not Purpose.SECONDARY_USE:
            return 0
        if self.req.level == GROUP:
            return len(opted_out_among(conn, members))
        r, ids = s.resources, opted_out_ids().subquery()
        return int(conn.execute(select(func.count(distinct(ids.c.ref_id))).where(exists().where(
            r.c.res_type == "Patient", r.c.res_id == ids.c.ref_id, r.c.deleted == false()))).scalar_one())

    def _audit(self) -> None:
        """One record per exported patient (BALP: an export, action E), committed before the
        manifest makes any file available; an audit failure fails the job."""
        if self.audit is None:
            return
        reason = Guard(self.who, {}).basis()
        path, _, query = self.req.path_and_query.partition("?")
        ids = sorted(self.patients)
        for i in range(0, len(ids), _AUDIT_BATCH):
            self._check()
            facts = Facts("POST" if self.req.post else "GET", path, query, 200, self.who, ids[i:i + _AUDIT_BATCH],
                          [], SUCCESS, reason,
                          now_us(), self.client_address, self.base)
            self.audit.append(audit_events(facts))

    def _manifest(self, at: int, excluded: int) -> dict[str, Any]:
        return {
            "transactionTime": iso_instant(at),
            # a POST kick-off's parameters were in its body: the URL alone, as STU2 asks
            "request": f"{self.base}{self.req.path_and_query.partition('?')[0] if self.req.post else self.req.path_and_query}",
            "requiresAccessToken": True,
            "output": [{"type": o.res_type, "url": f"{self.base}/$export-file/{self.job.id}/{o.name}",
                        "count": o.count} for o in self.files.outputs],
            "error": [],
            "extension": {PURPOSE_EXTENSION: self.who.purpose.value,
                          OPT_OUT_EXTENSION: {"reason": "national-data-opt-out", "count": excluded}},
        }


def _compartments(conn: Connection, hits: list[Hit]) -> dict[int, list[str]]:
    """The Patient compartments of ``hits``, by rid (one statement per 500)."""
    out: dict[int, list[str]] = {}
    c = s.compartments
    rids = [h.rid for h in hits]
    for i in range(0, len(rids), 500):
        for rid, pid in conn.execute(select(c.c.rid, c.c.patient_id).where(c.c.rid.in_(rids[i:i + 500]))):
            out.setdefault(rid, []).append(pid)
    return out
