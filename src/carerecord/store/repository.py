"""The Repository: create, read, vread, update, delete and history of FHIR resources.

http://hl7.org/fhir/R4/http.html. All writes happen inside a :class:`Unit` (one database
transaction): a single REST write is a unit of one, a transaction Bundle or a bulk load is a
unit of many, written with a few multi-row statements. A unit either commits whole or not at
all, so a failure part-way never leaves half a record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from carerecord.errors import Conflict, Gone, Invalid, NotFound, PreconditionFailed
from carerecord.fhir.indexing import IndexRows
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.store import schema as s
from carerecord.store.content import PENDING, document
from carerecord.store.engine import point_rows
from carerecord.store.prepare import Prepared, check, prepare
from carerecord.store.records import Stored, now_us
from carerecord.store.writer_lock import writing

_R, _V = s.resources, s.resource_versions
@dataclass(slots=True)
class Current:
    """The current-version row of a logical resource, as a writer needs it."""

    rid: int
    version: int
    deleted: bool


def composite_columns(registry: SearchParamRegistry, res_type: str, code: str,
                      parts: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The idx_composite columns (a_system .. c_high) of one composite row, by the types of the
    parameter's components (see schema.idx_composite); None for rows that cannot be matched
    (a first component with no code)."""
    types = registry.component_types(res_type, code)
    if not types or len(parts) != len(types):
        return None
    a = parts[0]
    a_system, a_code = (a[0], a[1])
    if a_code is None:
        return None
    b_system = b_code = b_low = b_high = c_low = c_high = None
    if len(types) > 1:
        b, bt = parts[1], types[1]
        if bt == "token" or bt == "reference":
            b_system, b_code = b[0], b[1]
        elif bt == "string":
            b_code = b[0]
        elif bt == "quantity":
            b_system, b_code, b_low, b_high = b[0], b[1], b[2], b[2]
        elif bt == "number":
            b_low = b_high = b[0]
        elif bt == "date":
            b_low, b_high = float(b[0]), float(b[1])
    if len(types) > 2 and types[2] == "number":
        c_low = c_high = parts[2][0]
    return (a_system, a_code, b_system, b_code, b_low, b_high, c_low, c_high)


def new_id() -> str:
    return str(uuid.uuid4())


class Unit:
    """One database transaction of reads and writes. Obtain with :meth:`Repository.unit`."""

    def __init__(self, repo: Repository, conn: Connection) -> None:
        self.repo = repo
        self.conn = conn
        self.now = now_us()
        # (type, id) of live resources this unit has verified or written: a reference to one
        # needs no further lookup until the unit ends (they are locked or ours).
        self.known: set[tuple[str, str]] = set()
        self._next_rid: int | None = None
        self._savepoints = 0
        self.mark = "?" if repo.paramstyle == "qmark" else "%s"
        # The unit's writes go through one driver cursor on the unit's connection (inside
        # SQLAlchemy's transaction): constant statements with bound parameters, without the
        # per-statement work SQLAlchemy does (measured at half the CPU of a single create).
        self.cur: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        # SQLite: the FTS5 rows of what this unit wrote, held back until its commit (the first
        # ``_text_done`` of them written already; see flush_text).
        self._text: list[tuple[int, str]] = []
        self._text_done = 0

    @contextmanager
    def savepoint(self) -> Iterator[Unit]:
        """A nested transaction: if the block fails, only its writes are undone (and the
        unit forgets the references it verified or resources it wrote inside it)."""
        known = set(self.known)
        text, text_done = len(self._text), self._text_done
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        self.cur.execute(f"SAVEPOINT {name}")
        try:
            yield self
        except BaseException:
            self.known = known
            self.cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.cur.execute(f"RELEASE SAVEPOINT {name}")
            # The block's own rows go; rows written before it but flushed inside it were
            # rolled back out of the FTS5 table with it, so they wait again.
            del self._text[text:]
            self._text_done = min(self._text_done, text_done)
            raise
        self.cur.execute(f"RELEASE SAVEPOINT {name}")

    # -- reads -------------------------------------------------------------------------------
    def current(self, res_type: str, res_id: str, *, lock: bool = False) -> Current | None:
        q = select(_R.c.rid, _R.c.version, _R.c.deleted).where(
            _R.c.res_type == res_type, _R.c.res_id == res_id)
        if lock and self.repo.is_postgres:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return Current(row.rid, row.version, row.deleted) if row else None

    def currents(self, keys: Sequence[tuple[str, str]], *,
                 lock: str = "update") -> dict[tuple[str, str], Current]:
        """Current rows for many (type, id) pairs, one statement per 500 keys.

        Written as ``(res_type = ? AND res_id IN (...)) OR ...`` (SQLite scans a whole index
        for a row-value IN but seeks for this form) and sent through the driver: this runs
        once or twice per bundle, where SQLAlchemy's per-statement overhead would be most of
        its cost. ``lock`` on PostgreSQL: "update" for rows about to be written, "share" for
        rows only referenced (they must not be deleted before we commit)."""
        out: dict[tuple[str, str], Current] = {}
        mark = "?" if self.repo.paramstyle == "qmark" else "%s"
        suffix = "" if not self.repo.is_postgres else (" FOR UPDATE" if lock == "update" else " FOR SHARE")
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            by_type: dict[str, list[str]] = {}
            for t, i in keys[start:start + 500]:
                by_type.setdefault(t, []).append(i)
            terms, params = [], []
            for t, ids in by_type.items():
                terms.append(f"(res_type = {mark} AND res_id IN ({', '.join([mark] * len(ids))}))")
                params += [t, *ids]
            sql = (f"SELECT res_type, res_id, rid, version, deleted FROM resources "  # noqa: S608
                   f"WHERE {' OR '.join(terms)}{suffix}")  # only placeholders are interpolated
            self.cur.execute(sql, tuple(params))
            for t, i, rid, version, deleted in self.cur.fetchall():
                out[(t, i)] = Current(rid, version, bool(deleted))
        return out

    def read(self, res_type: str, res_id: str) -> Stored:
        return self.repo.read(res_type, res_id, conn=self.conn)

    # -- writes ------------------------------------------------------------------------------
    def create(self, resource: dict[str, Any], res_id: str | None = None, *,
               validated: bool = False) -> Stored:
        """Create a new resource with a server-assigned id (or ``res_id`` if given by a
        transaction that already allocated it). ``validated``: the caller already ran
        :func:`~carerecord.store.prepare.check` on it."""
        prepared = prepare(resource, res_id or new_id(), 1, self.now, self.repo.registry,
                           validated=validated)
        self.write([(prepared, None, "POST")])
        return self._stored(prepared, "POST")

    def update(self, res_type: str, res_id: str, resource: dict[str, Any], *,
               if_match: int | None = None, current: Current | None = None,
               found: bool = False, validated: bool = False) -> tuple[Stored, bool]:
        """Update (or create with a client-chosen id). Returns (stored, created).

        ``if_match`` is the version the client last saw: a different current version is a 412.
        ``found`` means the caller already looked ``current`` up (None: not there)."""
        if resource.get("resourceType") != res_type:
            raise Invalid(f"resourceType {resource.get('resourceType')!r} does not match the URL "
                          f"type {res_type}", "resourceType")
        if resource.get("id") != res_id:
            raise Invalid(f"Resource id {resource.get('id')!r} does not match the URL id {res_id!r}"
                          if "id" in resource else "The resource must carry the id of the URL", "id")
        cur = current if found else self.current(res_type, res_id, lock=True)
        if if_match is not None and (cur is None or cur.version != if_match or cur.deleted):
            have = "does not exist" if cur is None else f"is at version {cur.version}"
            raise PreconditionFailed(f"If-Match version {if_match} is stale: {res_type}/{res_id} {have}")
        version = cur.version + 1 if cur else 1
        prepared = prepare(resource, res_id, version, self.now, self.repo.registry,
                           validated=validated)
        self.write([(prepared, cur, "PUT")])
        return self._stored(prepared, "PUT"), cur is None or cur.deleted

    def delete(self, res_type: str, res_id: str, *, if_match: int | None = None) -> Stored | None:
        """Delete: a new version marked deleted, index rows removed, history kept. Deleting a
        missing or already deleted resource is not an error (returns None)."""
        cur = self.current(res_type, res_id, lock=True)
        if if_match is not None and (cur is None or cur.version != if_match):
            raise PreconditionFailed(f"If-Match version {if_match} is stale for {res_type}/{res_id}")
        if cur is None or cur.deleted:
            return None
        self.delete_rows([(res_type, res_id, cur)])
        return Stored(res_type, res_id, cur.version + 1, self.now, True, None, "DELETE")

    def delete_rows(self, targets: Sequence[tuple[str, str, Current]]) -> None:
        """Mark many existing resources deleted in a few statements."""
        if not targets:
            return
        rids = [c.rid for _, _, c in targets]
        self.known.difference_update((t, i) for t, i, _ in targets)
        self._drop_indexes(rids)
        m = self.mark
        self.cur.executemany(
            f"UPDATE resources SET version = {m}, last_updated = {m}, deleted = {m}, "  # noqa: S608
            f"patient_id = NULL, doc = NULL WHERE rid = {m}",
            [(c.version + 1, self.now, True, c.rid) for _, _, c in targets])
        self._insert("resource_versions", ("rid", "version", "res_type", "last_updated", "method",
                                           "deleted", "content"),
                     [(c.rid, c.version + 1, t, self.now, "DELETE", True, None) for t, _, c in targets])

    def write(self, items: Sequence[tuple[Prepared, Current | None, str]]) -> None:
        """Write prepared versions: new resources (current None) and new versions of existing
        ones, in multi-row statements. Index rows are replaced, so only the current version
        of a resource is ever found by search."""
        if not items:
            return
        pg = self.repo.is_postgres
        new = [p for p, cur, _ in items if cur is None]
        old = [(p, cur) for p, cur, _ in items if cur is not None]
        rids: list[int] = []
        if new:
            rids = self._allocate_rids(len(new))
            cols: tuple[str, ...] = ("rid", "res_type", "res_id", "version", "last_updated", "deleted",
                                     "patient_id")
            rows: list[tuple[Any, ...]] = [(rid, p.res_type, p.res_id, p.version, p.last_updated, False,
                     p.compartments[0] if p.compartments else None) for rid, p in zip(rids, new, strict=True)]
            if pg:  # the JSONB copy for analytics, cast from the very bytes we serve
                cols += ("doc",)
                rows = [(*row, p.content.decode()) for row, p in zip(rows, new, strict=True)]
            try:
                self._insert("resources", cols, rows, last_cast="jsonb" if pg else None)
            except self.repo.engine.dialect.dbapi.IntegrityError as exc:  # type: ignore[union-attr]
                raise Conflict("A resource with this type and id already exists") from exc
        if old:
            self._drop_indexes([cur.rid for _, cur in old])
            m = self.mark
            doc = f", doc = CAST({m} AS jsonb)" if pg else ""
            self.cur.executemany(
                f"UPDATE resources SET version = {m}, last_updated = {m}, deleted = {m}, "  # noqa: S608
                f"patient_id = {m}{doc} WHERE rid = {m}",
                [(p.version, p.last_updated, False, p.compartments[0] if p.compartments else None,
                  *((p.content.decode(),) if pg else ()), cur.rid) for p, cur in old])
        pairs = list(zip(rids, new, strict=True)) + [(cur.rid, p) for p, cur in old]
        self.known.update((p.res_type, p.res_id) for _, p in pairs)
        methods = {id(p): m for p, _, m in items}
        self._insert("resource_versions", ("rid", "version", "res_type", "last_updated", "method",
                                           "deleted", "content"),
                     [(rid, p.version, p.res_type, p.last_updated, methods[id(p)], False, p.content)
                      for rid, p in pairs])
        self._insert_indexes(pairs)
        for p in new + [p for p, _ in old]:
            if p.res_type == "SearchParameter" and p.resource is not None:
                self.repo.registry.add(p.resource)

    def _insert(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]], *,
                last_cast: str | None = None) -> None:
        """Multi-row INSERT through the driver's executemany: a constant statement with bound
        parameters, without SQLAlchemy's per-row parameter processing (the hot load path).
        ``last_cast`` casts the last column's parameter (PostgreSQL JSONB)."""
        if not rows:
            return
        mark = "?" if self.repo.paramstyle == "qmark" else "%s"
        marks = [mark] * len(columns)
        if last_cast:
            marks[-1] = f"CAST({mark} AS {last_cast})"
        # Table and column names are constants of this module; values are bound parameters.
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})"  # noqa: S608
        self.cur.executemany(sql, rows)

    def _allocate_rids(self, n: int) -> list[int]:
        """Surrogate keys for ``n`` new resources, so that all rows can be written with
        executemany (no per-row RETURNING). PostgreSQL: the rid sequence. SQLite: the unit
        holds the write lock (BEGIN IMMEDIATE), so counting on from MAX(rid) is safe."""
        if self.repo.is_postgres:
            self.cur.execute("SELECT nextval(pg_get_serial_sequence('resources', 'rid')) "
                             "FROM generate_series(1, %s)", (n,))
            return [int(r[0]) for r in self.cur.fetchall()]
        if self._next_rid is None:
            self.cur.execute("SELECT COALESCE(MAX(rid), 0) FROM resources")
            self._next_rid = int(self.cur.fetchone()[0] or 0) + 1
        start = self._next_rid
        self._next_rid += n
        return list(range(start, start + n))

    def _insert_indexes(self, pairs: list[tuple[int, Prepared]]) -> None:
        string: list[tuple[Any, ...]] = []
        token: list[tuple[Any, ...]] = []
        date: list[tuple[Any, ...]] = []
        number: list[tuple[Any, ...]] = []
        quantity: list[tuple[Any, ...]] = []
        reference: list[tuple[Any, ...]] = []
        uri: list[tuple[Any, ...]] = []
        composite: list[tuple[Any, ...]] = []
        content: list[tuple[Any, ...]] = []
        comp: list[tuple[Any, ...]] = []
        inner: list[tuple[Any, ...]] = []
        # Contained resources are indexed like resources, under their own rids and keys (schema.contained)
        items: list[tuple[int, str, IndexRows, Callable[[str, str], int]]] = []
        for rid, p in pairs:
            items.append((rid, p.res_type, p.rows, s.param_key))
            comp += [(rid, pid) for pid in p.compartments]
            for i, (ctype, cid, crows) in enumerate(p.rows.contained):
                crid = s.contained_rid(rid, i)
                items.append((crid, ctype, crows, s.contained_key))
                inner.append((crid, rid, ctype, cid))
        for rid, t, rows, key in items:
            if rows.content:
                content.append((rid, document(key(t, "_content"), rows.content)))
            string += [(rid, key(t, c), v, e) for c, v, e in rows.string]
            token += [(rid, key(t, c), sy, co, tx) for c, sy, co, tx in rows.token]
            date += [(rid, key(t, c), lo, hi) for c, lo, hi in rows.date]
            number += [(rid, key(t, c), v, lo, hi) for c, v, lo, hi in rows.number]
            quantity += [(rid, key(t, c), sy, co, v, lo, hi) for c, sy, co, v, lo, hi in rows.quantity]
            reference += [(rid, key(t, c), rt, ri, u) for c, rt, ri, u in rows.reference]
            uri += [(rid, key(t, c), v) for c, v in rows.uri]
            for c, parts in rows.composite:
                cols = composite_columns(self.repo.registry, t, c, parts)
                if cols is not None:
                    composite.append((rid, key(t, c), *cols))
        self._insert("idx_string", ("rid", "pkey", "value", "exact"), string)
        self._insert("idx_token", ("rid", "pkey", "system", "code", "text"), token)
        self._insert("idx_date", ("rid", "pkey", "low", "high"), date)
        self._insert("idx_number", ("rid", "pkey", "value", "low", "high"), number)
        self._insert("idx_quantity", ("rid", "pkey", "system", "code", "value", "low", "high"), quantity)
        self._insert("idx_reference", ("rid", "pkey", "ref_type", "ref_id", "url"), reference)
        self._insert("idx_uri", ("rid", "pkey", "value"), uri)
        self._insert("idx_composite", ("rid", "pkey", "a_system", "a_code", "b_system", "b_code",
                                       "b_low", "b_high", "c_low", "c_high"), composite)
        # In rid order: FTS5 flushes its pending terms whenever a rowid is not above the last
        # one, and contained resources' (negative) rids come between their containers'.
        content.sort()
        self._insert("idx_content", ("rid", "words"), content)
        if not self.repo.is_postgres:  # its FTS5 index (migration 0009), written by the store:
            self._text += content  # a trigger cost 5x; at the commit: see flush_text
        self._insert("compartments", ("rid", "patient_id"), comp)
        self._insert("contained", ("rid", "container", "res_type", "res_id"), inner)

    def flush_text(self) -> None:
        """Write the FTS5 rows held back (SQLite), in rowid order.

        Why they wait: FTS5 writes the terms it holds in memory to a new segment of its index
        at every SAVEPOINT, and a write batch may run each request's job under a savepoint of
        its own (api/writes.py: transactions, and small jobs after a failed all-together try). Written with each job, every create made a one-row segment that
        FTS5 then had to merge: 90 us a create in batches of 7-8 Patients, a fifth of the
        database work (2026-11-23). Held back, a batch makes one segment, at the commit.

        Whatever must see them first writes them first: a ``_content`` search inside the unit
        (content.settle) and the removal of a row written earlier in the unit. A savepoint
        rolled back forgets its own rows and holds again those it wrote for earlier blocks."""
        rows = self._text[self._text_done:]
        if rows:
            rows.sort()
            self._insert("idx_content_fts", ("rowid", "words"), rows)
            self._text_done = len(self._text)

    def _drop_indexes(self, rids: list[int]) -> None:
        """Remove the index rows of resources ``rids`` and of the resources they contain."""
        if len(self._text) > self._text_done:  # the delete trigger must find them in FTS5
            self.flush_text()
        for start in range(0, len(rids), 500):
            chunk = rids[start:start + 500]
            marks = ", ".join([self.mark] * len(chunk))
            self.cur.execute(f"SELECT rid FROM contained WHERE container IN ({marks})", chunk)  # noqa: S608
            inner = [r[0] for r in self.cur.fetchall()]
            if inner:
                self.cur.execute(f"DELETE FROM contained WHERE container IN ({marks})", chunk)  # noqa: S608
            for part in (chunk, *(inner[i:i + 500] for i in range(0, len(inner), 500))):
                marks = ", ".join([self.mark] * len(part))
                for table in s.INDEX_TABLES.values():
                    self.cur.execute(f"DELETE FROM {table.name} WHERE rid IN ({marks})", part)  # noqa: S608
            marks = ", ".join([self.mark] * len(chunk))
            self.cur.execute(f"DELETE FROM compartments WHERE rid IN ({marks})", chunk)  # noqa: S608

    def _stored(self, p: Prepared, method: str) -> Stored:
        return Stored(p.res_type, p.res_id, p.version, p.last_updated, False, p.content, method)


class Repository:
    """Entry point of the store. Thread-safe; holds the engine and search parameter registry."""

    def __init__(self, engine: Engine, registry: SearchParamRegistry | None = None, *,
                 load_custom: bool = True) -> None:
        """``registry``: the search parameters (default: the official R4 set plus the custom
        SearchParameter resources stored in this database)."""
        self.engine = engine
        self.registry = registry or SearchParamRegistry()
        self.is_postgres = engine.dialect.name == "postgresql"
        self.paramstyle = engine.dialect.paramstyle
        mark = "?" if self.paramstyle == "qmark" else "%s"
        # Only the driver's placeholder is interpolated; the values are bound parameters.
        # The compartments come with the read (one indexed lookup by rid; FHIR ids have no
        # spaces): the audit trail names the patient of every read without parsing the content.
        agg = "string_agg(c.patient_id, ' ')" if self.is_postgres else "group_concat(c.patient_id, ' ')"
        self._read_sql = ("SELECT r.version, r.last_updated, r.deleted, v.content, "  # noqa: S608
                          f"(SELECT {agg} FROM compartments c WHERE c.rid = r.rid) "
                          "FROM resources r JOIN resource_versions v "
                          "ON v.rid = r.rid AND v.version = r.version "
                          f"WHERE r.res_type = {mark} AND r.res_id = {mark}")
        if registry is None and load_custom:
            from carerecord.store.reindex import load_custom_parameters

            load_custom_parameters(self)

    @contextmanager
    def unit(self) -> Iterator[Unit]:
        """A write transaction: commits when the block ends normally, rolls back on any error.
        On SQLite the process-shared writer lock is taken first (store/writer_lock.py)."""
        with writing(self.engine), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                unit = Unit(self, conn)
                if not self.is_postgres:
                    conn.info[PENDING] = unit
                try:
                    yield unit
                    unit.flush_text()
                finally:
                    conn.info.pop(PENDING, None)
                    unit.cur.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection for a consistent series of reads."""
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    # -- single-operation conveniences ---------------------------------------------------------
    def create(self, resource: dict[str, Any]) -> Stored:
        with self.unit() as u:
            return u.create(resource)

    def update(self, res_type: str, res_id: str, resource: dict[str, Any], *,
               if_match: int | None = None) -> tuple[Stored, bool]:
        check(resource)  # validate before taking the write lock
        with self.unit() as u:
            return u.update(res_type, res_id, resource, if_match=if_match, validated=True)

    def delete(self, res_type: str, res_id: str, *, if_match: int | None = None) -> Stored | None:
        with self.unit() as u:
            return u.delete(res_type, res_id, if_match=if_match)

    # -- reads ---------------------------------------------------------------------------------
    def read(self, res_type: str, res_id: str, *, conn: Connection | None = None) -> Stored:
        """The current version; NotFound if it never existed, Gone if deleted.

        The hot path of the API: outside a unit it is one constant, parameterised statement on
        a pooled driver connection, without SQLAlchemy's per-statement work (measured at about
        a third of a read's CPU) or a BEGIN/ROLLBACK pair around a single SELECT."""
        if conn is not None:
            row = conn.exec_driver_sql(self._read_sql, (res_type, res_id)).first()
        else:
            rows = point_rows(self.engine, self._read_sql, (res_type, res_id))
            row = rows[0] if rows else None
        if row is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        version, last_updated, deleted, content, patients = row
        if deleted:
            raise Gone(f"{res_type}/{res_id} was deleted")
        return Stored(res_type, res_id, version, last_updated, False, bytes(content),
                      patients=tuple(patients.split(" ")) if patients else ())

    def vread(self, res_type: str, res_id: str, version: int) -> Stored:
        """One version; NotFound if there is no such version, Gone if it is a deletion."""
        q = (select(_V.c.version, _V.c.last_updated, _V.c.deleted, _V.c.content, _V.c.method)
             .join(_R, _R.c.rid == _V.c.rid)
             .where(_R.c.res_type == res_type, _R.c.res_id == res_id, _V.c.version == version))
        with self.engine.connect() as c:
            row = c.execute(q).first()
        if row is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version}")
        if row.deleted:
            raise Gone(f"Version {version} of {res_type}/{res_id} is a deletion")
        return Stored(res_type, res_id, row.version, row.last_updated, False, row.content, row.method)
