"""carerecord's benchmark suite: one command, SQLite and PostgreSQL side by side.

    .venv/bin/python -m benchmarks            # full run (~149 Synthea bundles, ~50,000 resources;
                                              # searches on a 100,000-person demo community)
    .venv/bin/python -m benchmarks --quick    # reduced size (5,000 people), a few minutes
    .venv/bin/python -m benchmarks --search-only --reuse-db PATH   # searches only, on a built file
    .venv/bin/python benchmarks/run.py --postgres postgresql://user@127.0.0.1:5432/postgres

Measures, on fresh databases each time:

1. ``load``: the Synthea bundles through carerecord.cli.load.Loader (what ``carerecord load``
   runs), resources/s;
2. the raw limit: the same rows (JSON bytes and index rows, prepared before timing) inserted
   straight with sqlite3/psycopg executemany, one transaction per bundle; and raw point reads and
   single-resource create transactions on one connection;
3. the bundles POSTed as transactions to ``carerecord serve`` (a child process on 127.0.0.1)
   from a few concurrent clients, resources/s;
4. read by id with 8 concurrent connections (requests/s, p50/p99 latency) and single creates
   (POST Patient), with ``--workers 1`` and ``--workers 2``, and the server's CPU per request
   (its process tree's CPU time from /proc, before and after);
5. searches (issue 3) on the demo community (``carerecord demo --people N``, 100,000 by default):
   Patient by NHS number and by family + birthdate, Observation by patient + code + date, a
   two-level chain, _include + _revinclude, each with 8 connections over URLs picked from the
   data (requests/s, p50/p99, server CPU per request); and ``_total=accurate`` on ~100,000
   matches, the first page and the last page of that search (median of 20 requests each).
   The SQLite community is cached under benchmarks/results/ (see benchmarks/search.py);
   PostgreSQL gets it loaded into a fresh database.

PostgreSQL: ``--postgres URL`` (a role allowed to CREATE DATABASE; databases named
carerecord_bench_* are created and dropped), else a throwaway cluster is started like
scripts/test.sh does when the PostgreSQL server is installed, else PostgreSQL is skipped.
Prints a table and writes the figures to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repository, not benchmarks/

import orjson

from benchmarks import loadgen, postgres, search
from benchmarks.common import (
    ROOT,
    SYNTHEA,
    Bundle,
    background_load,
    child_env,
    machine,
    read_bundles,
    synthea_files,
    system_busy,
    tree_cpu,
)
from benchmarks.server import Server, post_transactions
from benchmarks.table import Row, render

RESULTS = ROOT / "benchmarks" / "results"

# The single create: a small UK-flavoured Patient, the same body every time.
PATIENT = {
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}],
    "name": [{"use": "official", "family": "Benchmark", "given": ["Ada", "May"], "prefix": ["Ms"]}],
    "telecom": [{"system": "phone", "value": "01632 960001", "use": "home"}],
    "gender": "female",
    "birthDate": "1958-04-12",
    "address": [{"use": "home", "line": ["1 Test Street"], "city": "Leeds", "postalCode": "LS1 4AP",
                 "country": "GB"}],
}

TARGETS = {"load": 3000.0, "transaction": 2000.0, "read": 4000.0, "read_p99": 10.0, "create": 1000.0}


@dataclass
class Config:
    bundles: int | None
    seconds: float
    raw_seconds: float
    workers: list[int]
    tx_workers: list[int]
    connections: int
    tx_clients: int
    generator: str
    data: Path
    postgres: str | None
    use_postgres: bool
    json_path: Path | None
    wait_quiet: float = 0.0
    use_sqlite: bool = True
    server_env: dict[str, str] = field(default_factory=dict)
    foundation: bool = True  # load, raw limits, transactions, reads, creates
    search: bool = True
    people: int = 100_000
    seed: int = 2026
    search_workers: list[int] = field(default_factory=lambda: [2, 1])
    reuse_db: Path | None = None
    pg_community: str | None = None
    rebuild_db: bool = False
    median_requests: int = 20


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="reduced size: 30 bundles, 3 s per HTTP run, 5,000 people for the searches")
    p.add_argument("--bundles", type=int, help="use only the first N Synthea bundles (default all)")
    p.add_argument("--seconds", type=float, help="duration of each read/create run (default 10; quick 3)")
    p.add_argument("--raw-seconds", type=float, help="duration of the raw read/create loops (default 2)")
    p.add_argument("--workers", help="server worker counts for reads/creates, e.g. 1,2 (default 1,2)")
    p.add_argument("--tx-workers", help="server worker counts for the transaction load (default 1,2; quick 2)")
    p.add_argument("--connections", type=int, default=8, help="concurrent read/create connections")
    p.add_argument("--tx-clients", type=int, default=4, help="concurrent transaction clients")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="HTTP load generator (auto: wrk when installed)")
    p.add_argument("--data", type=Path, default=SYNTHEA, help="folder of Synthea *.json.gz bundles")
    p.add_argument("--postgres", metavar="URL", help="PostgreSQL server to use (instead of a throwaway cluster)")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only (the raw limits still run on both)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="before each measurement, wait up to SECONDS for other work on the machine "
                        "to drop below 0.25 cores (for a shared machine)")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the server processes (PYTHONPATH is prepended), "
                        "e.g. to try a different HTTP stack")
    p.add_argument("--people", type=int,
                   help="people in the demo community searched (default 100,000; quick 5,000)")
    p.add_argument("--seed", type=int, default=2026, help="demo community seed (default 2026)")
    p.add_argument("--search-workers", help="server worker counts for the searches (default 2,1; quick 2)")
    p.add_argument("--search-only", action="store_true",
                   help="only the searches (no load, raw limits, transactions, reads or creates)")
    p.add_argument("--no-search", action="store_true", help="no searches (the suite as before issue 3)")
    p.add_argument("--reuse-db", type=Path, metavar="PATH",
                   help="the SQLite community file to search (built there if missing; default "
                        "benchmarks/results/community-<people>p-seed<seed>-g<generator version>.db, "
                        "reused when present)")
    p.add_argument("--rebuild-db", action="store_true", help="rebuild the SQLite community file even if present")
    p.add_argument("--pg-community", metavar="URL",
                   help="a PostgreSQL database already holding the community (carerecord demo --no-serve "
                        "--people N --seed S --database URL), searched instead of loading a fresh one; "
                        "migrated and VACUUM ANALYZEd first")
    p.add_argument("--median-requests", type=int, default=20,
                   help="sequential requests per _total/paging latency (default 20)")
    p.add_argument("--json", type=Path, help="where to write the JSON results (default benchmarks/results/latest.json)")
    a = p.parse_args(argv)
    quick = a.quick

    def ints(text: str | None, default: str) -> list[int]:
        try:
            return [int(x) for x in (default if text is None else text).split(",") if x.strip()]
        except ValueError:
            p.error(f"not a comma-separated list of worker counts: {text!r}")

    if any("=" not in kv for kv in a.server_env):
        p.error("--server-env takes NAME=VALUE")
    if not ints(a.tx_workers, "2") or not ints(a.workers, "1"):
        p.error("--tx-workers and --workers each need at least one worker count")
    if a.no_sqlite and a.no_postgres:
        p.error("--no-sqlite and --no-postgres leave nothing to measure")
    if a.search_only and a.no_search:
        p.error("--search-only and --no-search leave nothing to measure")
    if not ints(a.search_workers, "2"):
        p.error("--search-workers needs at least one worker count")
    people = a.people if a.people is not None else (5000 if quick else 100_000)
    if people < 1:
        p.error("--people must be at least 1")
    generator = a.loadgen
    if generator == "auto":
        generator = "wrk" if loadgen.have_wrk() else "python"
    elif generator == "wrk" and not loadgen.have_wrk():
        p.error("wrk is not installed (Debian: apt-get install wrk)")
    return Config(
        bundles=a.bundles or (30 if quick else None),
        seconds=a.seconds or (3.0 if quick else 10.0),
        raw_seconds=a.raw_seconds or (1.0 if quick else 2.0),
        workers=ints(a.workers, "1,2"),
        tx_workers=ints(a.tx_workers, "2" if quick else "1,2"),
        connections=a.connections, tx_clients=a.tx_clients, generator=generator, data=a.data,
        postgres=a.postgres, use_postgres=not a.no_postgres,
        json_path=a.json or RESULTS / "latest.json", wait_quiet=a.wait_quiet, use_sqlite=not a.no_sqlite,
        server_env=dict(kv.split("=", 1) for kv in a.server_env),
        foundation=not a.search_only, search=not a.no_search, people=people, seed=a.seed,
        search_workers=ints(a.search_workers, "2" if quick else "2,1"),
        reuse_db=a.reuse_db.resolve() if a.reuse_db else None, rebuild_db=a.rebuild_db,
        pg_community=a.pg_community,
        median_requests=max(1, a.median_requests))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


QUIET = 0.25  # cores of other work below which the machine counts as quiet


def wait_quiet(cfg: Config) -> None:
    """Wait (at most ``cfg.wait_quiet`` seconds) until other work keeps < QUIET cores busy."""
    if cfg.wait_quiet <= 0:
        return
    deadline = time.monotonic() + cfg.wait_quiet
    busy = background_load(0.5)
    if busy >= QUIET:
        log(f"waiting for the machine to be quiet ({busy:.2f} cores busy)")
    while busy >= QUIET and time.monotonic() < deadline:
        busy = background_load(1.0)


def run_worker(args: list[str], timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.worker", *args], cwd=ROOT, env=child_env(),
                         capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {args[0]} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return dict(orjson.loads(lines[-1]))


# -- databases ------------------------------------------------------------------------------------
class Backend:
    """One database kind: how to get a fresh database, and the PID whose process tree is the
    database server (None for SQLite, which runs inside our processes)."""

    def __init__(self, name: str, fresh: Callable[[str], AbstractContextManager[str]],
                 db_pid: int | None = None) -> None:
        self.name = name
        self.fresh = fresh
        self.db_pid = db_pid


def sqlite_backend(workdir: Path) -> Backend:
    @contextlib.contextmanager
    def fresh(tag: str) -> Iterator[str]:
        path = workdir / f"{tag}-{uuid.uuid4().hex[:8]}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    return Backend("sqlite", fresh)


def postgres_backend(url: str, db_pid: int | None) -> Backend:
    return Backend("postgresql", lambda tag: postgres.fresh_database(url, tag), db_pid)


def sample_paths(url: str, n: int, dest: Path) -> int:
    from carerecord.store.engine import make_engine

    engine = make_engine(url)
    with engine.connect() as c:
        sql = f"SELECT res_type, res_id FROM resources WHERE NOT deleted ORDER BY random() LIMIT {int(n)}"  # noqa: S608
        rows = c.exec_driver_sql(sql).all()
    engine.dispose()
    dest.write_text("".join(f"/fhir/{t}/{i}\n" for t, i in rows))
    return len(rows)


# -- steps ----------------------------------------------------------------------------------------
def step_raw(cfg: Config, files: list[Path], workdir: Path, pg: Backend | None,
             body_file: Path) -> dict[str, Any]:
    wait_quiet(cfg)
    log("raw limit: preparing rows, then sqlite3" + (" and psycopg" if pg else ""))
    args = ["raw", "--sqlite", str(workdir / f"raw-{uuid.uuid4().hex[:8]}.db"),
            "--create-body", str(body_file), "--seconds", str(cfg.raw_seconds)]
    with pg.fresh("raw") if pg else contextlib.nullcontext(None) as pg_url:
        if pg_url:
            args += ["--postgres", pg_url]
        result = run_worker([*args, *map(str, files)], timeout=900)
    for f in workdir.glob("raw-*.db*"):
        f.unlink()
    return result


def step_load(cfg: Config, backend: Backend, files: list[Path]) -> dict[str, Any]:
    log(f"{backend.name}: load ({len(files)} bundles through the Loader)")
    with backend.fresh("load") as url:
        wait_quiet(cfg)
        watch = Watch(None, backend)
        r = run_worker(["loader", url, *map(str, files)], timeout=1800)
        r.update(watch.stop())
    log(f"{backend.name}: load {r['resources']} resources in {r['seconds']:.1f} s = {r['rate']:,.0f}/s "
        f"({r.get('jobs', 0)} staging workers)")
    return r


def _own_cpu() -> float:
    """CPU seconds of this process (all threads) and of its reaped children (workers, wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ru.ru_utime + ru.ru_stime


class Watch:
    """CPU accounting around one measurement: the server's, the database server's (when we
    started it) and ours, and how many cores *other* work on the machine kept busy meanwhile
    (the machine's busy time minus all of ours), so a noisy figure can be recognised."""

    def __init__(self, server: Server | None, backend: Backend) -> None:
        self.server, self.backend = server, backend
        self.start = time.perf_counter()
        self.busy0 = system_busy()[0]
        self.own0 = _own_cpu()
        self.srv0 = server.cpu() if server else 0.0
        self.db0 = tree_cpu(backend.db_pid)

    def stop(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.start
        busy = system_busy()[0] - self.busy0
        own = _own_cpu() - self.own0
        srv = (self.server.cpu() - self.srv0) if self.server else 0.0
        db = tree_cpu(self.backend.db_pid) - self.db0
        return {"server_cpu_seconds": srv, "db_cpu_seconds": db if self.backend.db_pid else None,
                "foreign_cores": max(0.0, (busy - own - srv - db) / wall) if wall > 0 else 0.0}


def measure(server: Server, backend: Backend, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one HTTP measurement and add the server's (and database server's) CPU per request."""
    watch = Watch(server, backend)
    r = fn()
    w = watch.stop()
    cpu, db = w["server_cpu_seconds"], w["db_cpu_seconds"]
    n = max(1, r["requests"])
    r.update(w, server_cpu_us_per_request=cpu / n * 1e6,
             server_cores=cpu / r["seconds"], client_cores=r["client_cpu_seconds"] / r["seconds"],
             db_cpu_us_per_request=db / n * 1e6 if db is not None else None)
    return r


def step_requests(cfg: Config, server: Server, backend: Backend, paths: Path, body: Path,
                  workers: int) -> dict[str, Any]:
    conn, secs, gen = cfg.connections, cfg.seconds, cfg.generator
    warm = min(2.0, secs)
    loadgen.reads(server.base, paths, conn, warm, gen)
    wait_quiet(cfg)
    reads = measure(server, backend, lambda: loadgen.reads(server.base, paths, conn, secs, gen))
    log(f"{backend.name} w={workers}: reads {reads['rate']:,.0f}/s p99 {reads['p99_ms']:.1f} ms "
        f"(errors {reads['errors']})")
    loadgen.posts(server.base, "/fhir/Patient", body, conn, min(1.0, secs), gen)
    wait_quiet(cfg)
    creates = measure(server, backend, lambda: loadgen.posts(server.base, "/fhir/Patient", body, conn, secs, gen))
    log(f"{backend.name} w={workers}: creates {creates['rate']:,.0f}/s p99 {creates['p99_ms']:.1f} ms "
        f"(errors {creates['errors']})")
    return {"reads": reads, "creates": creates}


def step_http(cfg: Config, backend: Backend, bundles: list[Bundle], workdir: Path,
              body: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    paths = workdir / f"paths-{backend.name}.txt"
    with backend.fresh("http") as main_url:
        for k, w in enumerate(cfg.tx_workers):
            with backend.fresh(f"tx{w}") if k else contextlib.nullcontext(main_url) as url:
                log(f"{backend.name} w={w}: POST {len(bundles)} transaction bundles, {cfg.tx_clients} clients")
                with Server(url, w, workdir, cfg.server_env) as server:
                    wait_quiet(cfg)
                    watch = Watch(server, backend)
                    tx = post_transactions(server, bundles, cfg.tx_clients)
                    tx.update(watch.stop())
                    log(f"{backend.name} w={w}: transactions {tx['rate']:,.0f} resources/s "
                        f"(failures {tx['failures']})")
                    out.setdefault(str(w), {})["transaction"] = tx
                    if k == 0:
                        sample_paths(url, 5000, paths)
                        if w in cfg.workers:
                            out[str(w)].update(step_requests(cfg, server, backend, paths, body, w))
        for w in cfg.workers:
            if "reads" not in out.get(str(w), {}):
                with Server(main_url, w, workdir, cfg.server_env) as server:
                    out.setdefault(str(w), {}).update(step_requests(cfg, server, backend, paths, body, w))
    return out


def step_search(cfg: Config, backend: Backend, workdir: Path) -> dict[str, Any]:
    """The searches on the demo community: the SQLite file (cached, see benchmarks/search.py) or
    a fresh PostgreSQL database loaded with the same people; then each search under load with
    each worker count, and the _total / paging latencies with the first."""
    out: dict[str, Any] = {}
    if backend.name == "sqlite":
        path = cfg.reuse_db or search.cache_path(cfg.people, cfg.seed)
        wait_quiet(cfg)
        info = search.sqlite_community(path, cfg.people, cfg.seed, workdir, cfg.rebuild_db, log)
        info["warm_seconds"] = search.warm_file(path)
        db: AbstractContextManager[str] = contextlib.nullcontext(f"sqlite:///{path}")
    elif cfg.pg_community:
        db = contextlib.nullcontext(cfg.pg_community)
        log(f"{backend.name}: searching the community already in {cfg.pg_community}")
        info = search.reuse_postgres(cfg.pg_community, cfg.people, cfg.seed)
    else:
        db = backend.fresh("search")
    with db as url:
        if backend.name != "sqlite" and not cfg.pg_community:
            log(f"{backend.name}: loading the demo community, {cfg.people:,} people (seed {cfg.seed})")
            wait_quiet(cfg)
            watch = Watch(None, backend)
            info = search.build(url, cfg.people, cfg.seed, workdir)
            info.update(watch.stop())
            info["vacuum_analyze_seconds"] = search.postgres_vacuum_analyze(url)
            log(f"{backend.name}: community loaded: {info['resources']:,} resources in {info['seconds']:.0f} s "
                f"({info['rate']:,.0f}/s); VACUUM ANALYZE {info['vacuum_analyze_seconds']:.0f} s")
        out["community"] = info
        facts = search.write_paths(url, workdir / f"search-{backend.name}", cfg.seed)
        out["data"] = facts
        conn, secs, gen = cfg.connections, cfg.seconds, cfg.generator
        for k, w in enumerate(cfg.search_workers):
            with Server(url, w, workdir, cfg.server_env) as server:
                runs: dict[str, Any] = {}
                for sd in search.SEARCHES:
                    f = Path(facts["files"][sd.key])
                    checked = search.check(server.base, f)
                    if secs >= 3:  # a short (smoke-test) run goes without the warm-up
                        loadgen.reads(server.base, f, conn, 2.0, gen)
                        drain(server, backend)
                    wait_quiet(cfg)
                    r = measure(server, backend, functools.partial(loadgen.reads, server.base, f, conn, secs, gen))
                    r["check"] = checked
                    if r["requests"] == 0:
                        # Not one answer within the run: its length is a lower bound of the latency.
                        r.update(no_completions=True, p50_ms=r["seconds"] * 1000, p99_ms=r["seconds"] * 1000,
                                 server_cpu_us_per_request=None)
                    r["drain_seconds"] = drain(server, backend)
                    runs[sd.key] = r
                    log(f"{backend.name} w={w}: {sd.label}: {r['rate']:,.0f}/s p99 {r['p99_ms']:.1f} ms "
                        f"(errors {r['errors']}; {checked['matches_per_page']:.1f} matches, "
                        f"{checked['included_per_page']:.1f} included per page)")
                if k == 0:
                    runs["total"] = step_total(cfg, server, backend)
                out.setdefault("http", {})[str(w)] = runs
    return out


def drain(server: Server, backend: Backend, limit: float = 180.0) -> float:
    """Wait until the server (and the database server, when we started it) is idle: when the
    load generator stops, requests it sent may still be running (a slow search blocks its worker,
    or its query goes on in PostgreSQL), and would eat into the next measurement."""
    start = time.monotonic()
    idle = 0
    while time.monotonic() - start < limit and idle < 2:  # two quiet half-seconds in a row
        cpu0 = server.cpu() + tree_cpu(backend.db_pid)
        time.sleep(0.5)
        idle = idle + 1 if server.cpu() + tree_cpu(backend.db_pid) - cpu0 < 0.03 else 0
    waited = time.monotonic() - start
    if waited > 2:
        log(f"waited {waited:.0f} s for the server to finish the requests still running")
    return waited


def step_total(cfg: Config, server: Server, backend: Backend) -> dict[str, Any]:
    """``_total=accurate`` on the heart-rate Observations (~1 per person), then the first page
    and the last page (the ``last`` link: ``_cursor=last``) of the same search without the count,
    and the last page with it; each ``cfg.median_requests`` times, one after another."""
    query, base, n = search.TOTAL_PATH, server.base, cfg.median_requests
    out: dict[str, Any] = {}

    def timed(name: str, path: str) -> None:
        search.timed_gets(base, path, 3)  # warm-up, outside the CPU accounting
        drain(server, backend)
        wait_quiet(cfg)
        out[name] = measure(server, backend, lambda: search.timed_gets(base, path, n))

    timed("total", query + "&_total=accurate")
    timed("first", query)
    timed("last", search.path_of(out["first"]["links"]["last"], base))
    timed("total_last", search.path_of(out["total"]["links"]["last"], base))
    out["last_page_ok"] = bool(out["last"]["entries"]) and "next" not in out["last"]["links"] \
        and "previous" in out["last"]["links"]
    out["ratio_last_first"] = out["last"]["median_ms"] / out["first"]["median_ms"]
    log(f"{backend.name}: _total=accurate ({out['total']['total']:,} matches) median "
        f"{out['total']['median_ms']:.1f} ms; first page {out['first']['median_ms']:.2f} ms, "
        f"last page {out['last']['median_ms']:.2f} ms; last page with the total "
        f"{out['total_last']['median_ms']:.1f} ms")
    return out


# -- the table ------------------------------------------------------------------------------------
def build_rows(cfg: Config, res: dict[str, Any]) -> list[Row]:
    s, p, raw = res.get("sqlite") or {}, res.get("postgresql") or {}, res.get("raw") or {}

    def get(d: dict[str, Any], *keys: str) -> Any:
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    def rawv(*keys: str) -> tuple[Any, Any]:
        return get(raw, "sqlite", *keys), get(raw, "postgresql", *keys)

    rows = foundation_rows(cfg, res, s, p, get, rawv) if cfg.foundation else []
    if cfg.search:
        rows += search_rows(cfg, s, p, get)
    return rows


def foundation_rows(cfg: Config, res: dict[str, Any], s: dict[str, Any], p: dict[str, Any],
                    get: Callable[..., Any], rawv: Callable[..., tuple[Any, Any]]) -> list[Row]:
    bulk = rawv("bulk", "rate")
    n = res["input"]["bundles"]
    rows = [
        Row(f"load, {n} bundles (Loader): resources/s", get(s, "load", "rate"), get(p, "load", "rate"),
            (">=", TARGETS["load"]), *bulk),
        Row("load: Loader CPU us/resource (writer + staging workers)",
            _per(get(s, "load", "cpu_seconds"), get(s, "load", "resources")),
            _per(get(p, "load", "cpu_seconds"), get(p, "load", "resources"))),
    ]
    for w in cfg.tx_workers:
        k = str(w)
        rows += [
            Row(f"POST transaction, workers={w}, {cfg.tx_clients} clients: resources/s",
                get(s, "http", k, "transaction", "rate"), get(p, "http", k, "transaction", "rate"),
                (">=", TARGETS["transaction"]), *bulk),
            Row(f"POST transaction, workers={w}: server CPU us/resource",
                get(s, "http", k, "transaction", "server_cpu_us_per_resource"),
                get(p, "http", k, "transaction", "server_cpu_us_per_resource")),
        ]
    for w in cfg.workers:
        k, c = str(w), cfg.connections
        rows += [
            Row(f"read by id, workers={w}, {c} conns: requests/s", get(s, "http", k, "reads", "rate"),
                get(p, "http", k, "reads", "rate"), (">=", TARGETS["read"]), *rawv("reads", "rate")),
            Row(f"read by id, workers={w}: p50 ms", get(s, "http", k, "reads", "p50_ms"),
                get(p, "http", k, "reads", "p50_ms"), digits=2),
            Row(f"read by id, workers={w}: p99 ms", get(s, "http", k, "reads", "p99_ms"),
                get(p, "http", k, "reads", "p99_ms"), ("<=", TARGETS["read_p99"]), digits=2),
            Row(f"read by id, workers={w}: server CPU us/request",
                get(s, "http", k, "reads", "server_cpu_us_per_request"),
                get(p, "http", k, "reads", "server_cpu_us_per_request")),
            Row(f"create Patient, workers={w}, {c} conns: creates/s", get(s, "http", k, "creates", "rate"),
                get(p, "http", k, "creates", "rate"), (">=", TARGETS["create"]), *rawv("creates", "rate")),
            Row(f"create Patient, workers={w}: p99 ms", get(s, "http", k, "creates", "p99_ms"),
                get(p, "http", k, "creates", "p99_ms"), digits=2),
            Row(f"create Patient, workers={w}: server CPU us/request",
                get(s, "http", k, "creates", "server_cpu_us_per_request"),
                get(p, "http", k, "creates", "server_cpu_us_per_request")),
        ]
    return rows


def search_rows(cfg: Config, s: dict[str, Any], p: dict[str, Any], get: Callable[..., Any]) -> list[Row]:
    rows: list[Row] = []
    c = cfg.connections
    for w in cfg.search_workers:
        k = str(w)
        for sd in search.SEARCHES:
            def v(field: str, sd: search.Search = sd, k: str = k) -> tuple[Any, Any]:
                return get(s, "search", "http", k, sd.key, field), get(p, "search", "http", k, sd.key, field)

            rows += [
                Row(f"{sd.label}, workers={w}, {c} conns: requests/s", *v("rate"),
                    (">=", sd.min_rate) if sd.min_rate else None),
                Row(f"{sd.label}, workers={w}: p50 ms", *v("p50_ms"), digits=2),
                Row(f"{sd.label}, workers={w}: p99 ms", *v("p99_ms"), ("<=", sd.max_p99), digits=2),
                Row(f"{sd.label}, workers={w}: server CPU us/request", *v("server_cpu_us_per_request")),
            ]
    w = cfg.search_workers[0]

    def t(*keys: str) -> tuple[Any, Any]:
        return get(s, "search", "http", str(w), "total", *keys), get(p, "search", "http", str(w), "total", *keys)

    matches = next((x for x in t("total", "total") if x is not None), None)
    label = f"_total=accurate, Observation?code=heart rate ({matches:,} matches)" if matches else \
        "_total=accurate, Observation?code=heart rate"
    rows += [
        Row(f"{label}, workers={w}: median ms", *t("total", "median_ms"), ("<=", search.TOTAL_TARGET_MS), digits=1),
        Row("_total=accurate: server CPU us/request", *t("total", "server_cpu_us_per_request")),
        Row("same search, first page (50), no _total: median ms", *t("first", "median_ms"), digits=2),
        Row("same search, last page (_cursor=last): median ms", *t("last", "median_ms"), digits=2),
        Row("last page / first page (median ms)", *t("ratio_last_first"), ("<=", search.LAST_PAGE_RATIO), digits=2),
        Row("last page with _total=accurate: median ms", *t("total_last", "median_ms"), digits=1),
    ]
    return rows


def _per(cpu: float | None, n: int | None) -> float | None:
    return cpu / n * 1e6 if cpu is not None and n else None


def _measurements(res: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for b in ("sqlite", "postgresql"):
        d = res.get(b) or {}
        if "load" in d:
            yield b, "load", d["load"]
        for w, r in d.get("http", {}).items():
            for kind in ("transaction", "reads", "creates"):
                if kind in r:
                    yield b, f"{kind} w={w}", r[kind]
        for w, r in (d.get("search") or {}).get("http", {}).items():
            for kind, m in r.items():
                if kind == "total":
                    for sub in ("total", "first", "last", "total_last"):
                        yield b, f"search {sub} w={w}", m[sub]
                else:
                    yield b, f"search {kind} w={w}", m


def footer(cfg: Config, res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = []
    if "input" in res:
        lines.append(f"input: {res['input']['bundles']} Synthea bundles, {res['input']['resources']:,} resources; "
                     f"HTTP load generator: {cfg.generator}, {cfg.connections} connections, "
                     f"{cfg.seconds:g} s per run")
    lines += search_footer(cfg, res)
    lines.append(f"machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB, Python {m['python']}, "
                 f"SQLite {m['sqlite']}, PostgreSQL {m['postgresql'] or 'not run'}, commit {m['git']}")
    jobs = [r["load"]["jobs"] for b in ("sqlite", "postgresql") if "jobs" in ((r := res.get(b) or {}).get("load") or {})]
    if jobs:
        lines.append(f"load: as `carerecord load` runs it, {jobs[0]} staging worker process(es) beside the writer")
    if "raw" in res:
        lines.append("raw limit: same rows via sqlite3/psycopg executemany, one transaction per bundle; "
                     "reads and creates: one connection, one core")
    copy = (res.get("raw") or {}).get("postgresql", {}).get("bulk_copy")
    if copy:
        lines.append(f"PostgreSQL raw bulk with COPY instead of executemany: {copy['rate']:,.0f} resources/s")
    if cfg.server_env:
        lines.append(f"server environment: {' '.join(f'{k}={v}' for k, v in cfg.server_env.items())}")
    gens = [r for b in ("sqlite", "postgresql") for w in (res.get(b) or {}).get("http", {}).values()
            for r in (w.get("reads"), w.get("creates")) if r]
    gens += [r for b in ("sqlite", "postgresql") for w in ((res.get(b) or {}).get("search") or {}).get("http", {}).values()
             for k, r in w.items() if k != "total"]
    if gens:
        lines.append(f"load generator CPU: at most {max(r['client_cores'] for r in gens):.2f} cores; "
                     f"server CPU: at most {max(r['server_cores'] for r in gens):.2f} cores")
    failures = [f"{b} w={w}: {r['transaction']['failures']} failed bundles"
                for b in ("sqlite", "postgresql") for w, r in (res.get(b) or {}).get("http", {}).items()
                if r.get("transaction", {}).get("failures")]
    errors = [f"{b} w={w} {kind}: {r[kind]['errors']} errors"
              for b in ("sqlite", "postgresql") for w, r in (res.get(b) or {}).get("http", {}).items()
              for kind in ("reads", "creates") if r.get(kind, {}).get("errors")]
    for b in ("sqlite", "postgresql"):
        if (res.get(b) or {}).get("load", {}).get("rejected_count"):
            failures.append(f"{b} load: {res[b]['load']['rejected_count']} rejected")
        for w, runs in ((res.get(b) or {}).get("search") or {}).get("http", {}).items():
            for key, r in runs.items():
                if key == "total":
                    bad = [f"{sub} {r[sub]['errors']} errors" for sub in ("total", "first", "last", "total_last")
                           if r[sub]["errors"]]
                    if not r["last_page_ok"]:
                        bad.append("the last page is not a last page (no entries, or a next link)")
                    errors += [f"{b} w={w} _total/paging: {x}" for x in bad]
                    continue
                if r.get("no_completions"):
                    errors.append(f"{b} w={w} search {key}: no request completed in {r['seconds']:.0f} s "
                                  f"(p50/p99 shown are that time, a lower bound; single requests took "
                                  f"{r['check']['median_ms']:,.0f} ms)")
                if r["errors"]:
                    errors.append(f"{b} w={w} search {key}: {r['errors']} errors {r.get('error_detail', '')}")
                if r["check"]["not_ok"] or not r["check"]["matches_per_page"]:
                    errors.append(f"{b} w={w} search {key}: {r['check']['not_ok']} of {r['check']['checked']} "
                                  f"checked URLs failed, {r['check']['matches_per_page']:.1f} matches per page")
    if failures or errors:
        lines.append("PROBLEMS: " + "; ".join(failures + errors))
    foreign = [(r["foreign_cores"], f"{b} {name}") for b, name, r in _measurements(res) if "foreign_cores" in r]
    if foreign:
        worst = max(foreign)
        lines.append(f"other work on the machine during the measurements: at most {worst[0]:.2f} cores "
                     f"({worst[1]}){'; figures may be low' if worst[0] > 0.25 else ''}")
    lines.append(f"other work on the machine: {res['background_cores_before']:.2f} cores busy before the "
                 f"run, {res['background_cores_after']:.2f} after; run took {res['elapsed_seconds']:.0f} s")
    return "\n".join(lines)


def search_footer(cfg: Config, res: dict[str, Any]) -> list[str]:
    lines = []
    for b, name in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL")):
        srch = (res.get(b) or {}).get("search")
        if not srch:
            continue
        info, data = srch["community"], srch["data"]
        how = (f"reused the file built {info.get('built', '?')} at commit {info.get('commit', '?')}"
               if info.get("reused") else "built in this run")
        rate = f" ({info['seconds']:.0f} s, {info['rate']:,.0f} resources/s)" if info.get("seconds") else ""
        extra = (f"; then VACUUM ANALYZE ({info['vacuum_analyze_seconds']:.0f} s)"
                 if "vacuum_analyze_seconds" in info else "; sampled ANALYZE by carerecord after its load or migration")
        lines.append(f"search ({name}): demo community, {cfg.people:,} people (seed {cfg.seed}), "
                     f"{data['resources']:,} resources; {how}{rate}{extra}")
    if lines:
        lines.append(f"search load: {cfg.generator}, {cfg.connections} connections, {cfg.seconds:g} s per search, "
                     f"URLs from the data ({search.SAMPLE:,} per search, fewer for prescribers); "
                     f"_total/paging: median of {cfg.median_requests} sequential requests")
    return lines


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.perf_counter()
    res: dict[str, Any] = {"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                           "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]),
                           "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()
                                      if k != "postgres"}}
    res["background_cores_before"] = background_load()
    workdir = Path(tempfile.mkdtemp(prefix="carerecord-bench."))
    cluster: postgres.Cluster | None = None
    try:
        files = synthea_files(cfg.data, cfg.bundles) if cfg.foundation else []
        bundles = read_bundles(files)
        if cfg.foundation:
            res["input"] = {"bundles": len(bundles), "resources": sum(b.resources for b in bundles),
                            "folder": str(cfg.data)}
        body = workdir / "patient.json"
        body.write_bytes(orjson.dumps(PATIENT))

        pg: Backend | None = None
        pg_version = None
        if cfg.use_postgres:
            url = cfg.postgres
            if url is None:
                bindir = postgres.find_bindir()
                if bindir is None:
                    log("PostgreSQL server not installed: PostgreSQL figures skipped (apt-get install postgresql)")
                else:
                    log(f"starting a throwaway PostgreSQL cluster ({bindir})")
                    cluster = postgres.Cluster(bindir)
                    cluster.start()
                    url = cluster.url
            if url:
                pg_version = postgres.version(url)
                pg = postgres_backend(url, cluster.postmaster_pid() if cluster else None)
                res["postgresql_settings"] = postgres.SERVER_OPTIONS if cluster else "as configured by --postgres"
        res["machine"] = machine(pg_version)

        backends = [*([sqlite_backend(workdir)] if cfg.use_sqlite else []), *([pg] if pg else [])]
        if cfg.foundation:
            res["raw"] = step_raw(cfg, files, workdir, pg, body)
            for backend in backends:
                res[backend.name] = {"load": step_load(cfg, backend, files)}
                res[backend.name]["http"] = step_http(cfg, backend, bundles, workdir, body)
        if cfg.search:
            for backend in backends:
                res.setdefault(backend.name, {})["search"] = step_search(cfg, backend, workdir)
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    res["background_cores_after"] = background_load()
    res["elapsed_seconds"] = time.perf_counter() - started
    rows = build_rows(cfg, res)
    res["table"] = [r.to_json() for r in rows]
    text = render(rows) + "\n\n" + footer(cfg, res)
    res["table_text"] = text
    print(text)
    if cfg.json_path:
        cfg.json_path.parent.mkdir(parents=True, exist_ok=True)
        cfg.json_path.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
        log(f"results written to {cfg.json_path}")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
