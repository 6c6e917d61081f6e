"""The raw database limit: the exact rows carerecord writes for the Synthea bundles (same JSON
bytes, same index rows, same schema), inserted straight through the driver (sqlite3 or psycopg)
with executemany and one transaction per bundle. Everything is prepared before the clock starts,
so the figure is what the database and driver alone can do on this machine.

Also the raw limits for the HTTP figures: point reads by (type, id) with the query the store
uses, and single-resource create transactions, on one connection (one core)."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from carerecord.fhir.references import reference_objects
from carerecord.fhir.search_params import default_registry
from carerecord.store.prepare import Prepared, prepare
from carerecord.store.records import now_us
from carerecord.store.schema import param_key

Row = tuple[Any, ...]

# table -> columns, in the order the store writes them (repository.Unit.write/_insert_indexes)
COLUMNS: dict[str, tuple[str, ...]] = {
    "resources": ("rid", "res_type", "res_id", "version", "last_updated", "deleted", "patient_id", "doc"),
    "resource_versions": ("rid", "version", "res_type", "last_updated", "method", "deleted", "content"),
    "idx_string": ("rid", "pkey", "value", "exact"),
    "idx_token": ("rid", "pkey", "system", "code", "text"),
    "idx_date": ("rid", "pkey", "low", "high"),
    "idx_number": ("rid", "pkey", "value", "low", "high"),
    "idx_quantity": ("rid", "pkey", "system", "code", "value", "low", "high"),
    "idx_reference": ("rid", "pkey", "ref_type", "ref_id", "url"),
    "idx_uri": ("rid", "pkey", "value"),
    "compartments": ("rid", "patient_id"),
}
READ_SQL = ("SELECT r.rid, r.version, r.last_updated, r.deleted, v.content FROM resources r "
            "JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version "
            "WHERE r.res_type = {m} AND r.res_id = {m}")

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=30000",
                  "PRAGMA cache_size=-65536", "PRAGMA temp_store=MEMORY", "PRAGMA mmap_size=268435456")


def insert_sql(table: str, mark: str, *, jsonb: bool = False) -> str:
    cols = COLUMNS[table]
    marks = [f"{mark}::jsonb" if jsonb and c == "doc" else mark for c in cols]
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(marks)})"  # noqa: S608


@dataclass(slots=True)
class RawBundle:
    """The rows of one bundle, rid included, per table; ``doc`` is None (SQLite) until
    :meth:`for_postgres` fills it as PostgreSQL's JSONB copy."""

    resources: int
    tables: dict[str, list[Row]] = field(default_factory=dict)

    def for_postgres(self) -> dict[str, list[Row]]:
        out = dict(self.tables)
        content = {r[0]: r[6] for r in self.tables["resource_versions"]}
        out["resources"] = [(*r[:7], content[r[0]].decode()) for r in self.tables["resources"]]
        return out


def rows_of(prepared: list[Prepared], first_rid: int) -> dict[str, list[Row]]:
    """The rows the store writes for freshly created resources, with rids from ``first_rid``."""
    t: dict[str, list[Row]] = {name: [] for name in COLUMNS}
    for rid, p in enumerate(prepared, first_rid):
        rt, r = p.res_type, p.rows
        t["resources"].append((rid, rt, p.res_id, p.version, p.last_updated, False,
                               p.compartments[0] if p.compartments else None, None))
        t["resource_versions"].append((rid, p.version, rt, p.last_updated, "POST", False, p.content))
        t["idx_string"] += [(rid, param_key(rt, c), v, e) for c, v, e in r.string]
        t["idx_token"] += [(rid, param_key(rt, c), sy, co, tx) for c, sy, co, tx in r.token]
        t["idx_date"] += [(rid, param_key(rt, c), lo, hi) for c, lo, hi in r.date]
        t["idx_number"] += [(rid, param_key(rt, c), v, lo, hi) for c, v, lo, hi in r.number]
        t["idx_quantity"] += [(rid, param_key(rt, c), sy, co, v, lo, hi)
                              for c, sy, co, v, lo, hi in r.quantity]
        t["idx_reference"] += [(rid, param_key(rt, c), ty, i, u) for c, ty, i, u in r.reference]
        t["idx_uri"] += [(rid, param_key(rt, c), v) for c, v in r.uri]
        t["compartments"] += [(rid, pid) for pid in p.compartments]
    return t


def prepare_bundle(body: bytes) -> list[Prepared]:
    """What a transaction does to a Synthea bundle before writing: a server id for every entry,
    ``urn:uuid:`` references rewritten to them, then stamp/serialise/index (validation skipped:
    the raw limit measures writing, and the data is valid)."""
    doc = orjson.loads(body)
    registry = default_registry()
    now = now_us()
    entries = [e for e in doc.get("entry") or [] if (e.get("request") or {}).get("method") in ("POST", "PUT")]
    mapping, ids = {}, []
    for e in entries:
        res = e["resource"]
        rid = res.get("id") if e["request"]["method"] == "PUT" else None
        ids.append(rid or str(uuid.uuid4()))
        if e.get("fullUrl"):
            mapping[e["fullUrl"]] = f"{res['resourceType']}/{ids[-1]}"
    out = []
    for e, res_id in zip(entries, ids, strict=True):
        res = e["resource"]
        for _, obj in reference_objects(res, res["resourceType"]):
            obj["reference"] = mapping.get(obj["reference"], obj["reference"])
        out.append(prepare(res, res_id, 1, now, registry, validated=True))
    return out


def prepare_all(bodies: list[bytes]) -> list[RawBundle]:
    out, rid = [], 1
    for body in bodies:
        prepared = prepare_bundle(body)
        out.append(RawBundle(len(prepared), rows_of(prepared, rid)))
        rid += len(prepared)
    return out


def create_rows(body: bytes) -> Prepared:
    """The prepared single resource that the create benchmark POSTs."""
    return prepare(orjson.loads(body), str(uuid.uuid4()), 1, now_us(), default_registry(), validated=True)


def _timed_loop(step: Callable[[int], None], seconds: float, max_count: int) -> tuple[int, float]:
    """Run ``step(i)`` until ``seconds`` pass or ``max_count`` steps are done."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while n < max_count:
        step(n)
        n += 1
        if n % 64 == 0 and time.perf_counter() > deadline:
            break
    return n, time.perf_counter() - start


# -- SQLite ---------------------------------------------------------------------------------------
def sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for p in SQLITE_PRAGMAS:
        conn.execute(p)
    return conn


def sqlite_bulk(path: str, bundles: list[RawBundle]) -> dict[str, float]:
    conn = sqlite_connect(path)
    sql = {t: insert_sql(t, "?") for t in COLUMNS}
    total = sum(b.resources for b in bundles)
    start, cpu = time.perf_counter(), time.process_time()
    for b in bundles:
        conn.execute("BEGIN IMMEDIATE")
        for table, rows in b.tables.items():
            if rows:
                conn.executemany(sql[table], rows)
        conn.execute("COMMIT")
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    return {"resources": total, "seconds": seconds, "cpu_seconds": cpu, "rate": total / seconds}


def sqlite_reads(path: str, keys: list[tuple[str, str]], seconds: float) -> dict[str, float]:
    conn = sqlite_connect(path)
    sql = READ_SQL.format(m="?")

    def step(i: int) -> None:
        if conn.execute(sql, keys[i % len(keys)]).fetchone() is None:
            raise RuntimeError(f"raw read found nothing for {keys[i % len(keys)]}")

    n, secs = _timed_loop(step, seconds, 5_000_000)
    conn.close()
    return {"requests": n, "seconds": secs, "rate": n / secs}


def sqlite_creates(path: str, p: Prepared, seconds: float) -> dict[str, float]:
    conn = sqlite_connect(path)
    template = rows_of([p], 0)
    sql = {t: insert_sql(t, "?") for t in COLUMNS if t != "resources"}
    res_sql = insert_sql("resources", "?").replace("(rid, ", "(").replace("VALUES (?, ", "VALUES (")

    def step(i: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        r = template["resources"][0]
        rid = conn.execute(res_sql, (r[1], f"raw-{i}-{uuid.uuid4().hex[:8]}", *r[3:])).lastrowid
        for table, rows in template.items():
            if table != "resources" and rows:
                conn.executemany(sql[table], [(rid, *row[1:]) for row in rows])
        conn.execute("COMMIT")

    n, secs = _timed_loop(step, seconds, 1_000_000)
    conn.close()
    return {"requests": n, "seconds": secs, "rate": n / secs}


# -- PostgreSQL -----------------------------------------------------------------------------------
def postgres_bulk(url: str, bundles: list[RawBundle]) -> dict[str, float]:
    import psycopg

    data = [b.for_postgres() for b in bundles]  # before the clock, like everything else
    sql = {t: insert_sql(t, "%s", jsonb=True) for t in COLUMNS}
    total = sum(b.resources for b in bundles)
    with psycopg.connect(url, autocommit=True) as conn:
        start, cpu = time.perf_counter(), time.process_time()
        for tables in data:
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in tables.items():
                    if rows:
                        cur.executemany(sql[table], rows)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        # the rids were given explicitly: move the sequence past them for later inserts
        conn.execute("SELECT setval(pg_get_serial_sequence('resources', 'rid'), "
                     "(SELECT max(rid) FROM resources))")
    return {"resources": total, "seconds": seconds, "cpu_seconds": cpu, "rate": total / seconds}


def postgres_copy(url: str, bundles: list[RawBundle]) -> dict[str, float]:
    """The same rows with COPY instead of executemany (one transaction per bundle), into
    emptied tables: what a bulk path built on COPY could reach."""
    import psycopg

    data = [b.for_postgres() for b in bundles]
    copy = {t: f"COPY {t} ({', '.join(cols)}) FROM STDIN" for t, cols in COLUMNS.items()}
    total = sum(b.resources for b in bundles)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {', '.join(COLUMNS)}")
        start, cpu = time.perf_counter(), time.process_time()
        for tables in data:
            with conn.transaction(), conn.cursor() as cur:
                for table, rows in tables.items():
                    if rows:
                        with cur.copy(copy[table]) as cp:
                            for row in rows:
                                cp.write_row(row)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"resources": total, "seconds": seconds, "cpu_seconds": cpu, "rate": total / seconds}


def postgres_reads(url: str, keys: list[tuple[str, str]], seconds: float) -> dict[str, float]:
    import psycopg

    sql = READ_SQL.format(m="%s")
    with psycopg.connect(url, autocommit=True) as conn:
        def step(i: int) -> None:
            if conn.execute(sql, keys[i % len(keys)], prepare=True).fetchone() is None:
                raise RuntimeError(f"raw read found nothing for {keys[i % len(keys)]}")

        n, secs = _timed_loop(step, seconds, 5_000_000)
    return {"requests": n, "seconds": secs, "rate": n / secs}


def postgres_creates(url: str, p: Prepared, seconds: float) -> dict[str, float]:
    import psycopg

    template = rows_of([p], 0)
    sql = {t: insert_sql(t, "%s") for t in COLUMNS if t != "resources"}
    res_sql = (insert_sql("resources", "%s", jsonb=True).replace("(rid, ", "(")
               .replace("VALUES (%s, ", "VALUES (") + " RETURNING rid")
    doc = p.content.decode()
    with psycopg.connect(url, autocommit=True) as conn:
        def step(i: int) -> None:
            r = template["resources"][0]
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(res_sql, (r[1], f"raw-{i}-{uuid.uuid4().hex[:8]}", *r[3:7], doc))
                row = cur.fetchone()
                assert row is not None
                for table, rows in template.items():
                    if table != "resources" and rows:
                        cur.executemany(sql[table], [(row[0], *x[1:]) for x in rows])

        n, secs = _timed_loop(step, seconds, 1_000_000)
    return {"requests": n, "seconds": secs, "rate": n / secs}
