"""What the audit trail costs on the read path (issue 4): read by id with audit on and off.

``python -m benchmarks.audit`` starts ``carerecord serve`` (benchmarks/server.py) twice on the
same freshly loaded SQLite (or ``--database``) store, once as configured by default (audit on)
and once with ``CARERECORD_AUDIT=false``, drives closed-loop reads by id with wrk (or the
Python load generator, benchmarks/loadgen.py), and prints a table: requests/s, p50 and p99
latency and server CPU per request, and the ratio on/off.

``--postgres`` starts a throwaway PostgreSQL cluster (benchmarks/postgres.py) with the
settings the audit guarantee needs and operators are told to use (fsync and
synchronous_commit on, :data:`DURABLE`; ``--pg-option`` adds more, e.g. ``-c commit_delay=...``)
and measures in a fresh database there; the table then also gives PostgreSQL's own CPU per
request (its process tree, which shares the cores with the server). ``--runs N`` repeats the
on/off pair and prints each run's table and the medians; the machine's other load (cores busy
with work not ours, sampled just before each measurement) is printed with each table, and
``--wait-quiet S`` waits up to S seconds for it to fall below a quarter of a core.

Audit off exists only for this comparison: a server holding real records must never run
with it (docs/performance.md).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks import loadgen, postgres
from benchmarks.common import background_load, tree_cpu
from benchmarks.server import Server

# What the audit guarantee needs of PostgreSQL (a commit is on disk before it returns), and the
# settings docs/operations tell operators to keep: not the general suite's synchronous_commit=off.
DURABLE = "-c fsync=on -c synchronous_commit=on"
QUIET = 0.25  # cores of other work below which the machine counts as quiet (as benchmarks.run)


def _load(server: Server, patients: int) -> list[str]:
    """``patients`` Patients and one Observation each, through the API; their read paths."""
    paths: list[str] = []
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=f"{server.base}/fhir", headers=headers, timeout=60) as c:
        for k in range(0, patients, 100):
            entries = []
            for n in range(k, min(k + 100, patients)):
                pid = f"bench-p{n}"
                entries.append({"resource": {"resourceType": "Patient", "id": pid,
                                             "name": [{"family": f"Family{n}", "given": ["Ann"]}]},
                                "request": {"method": "PUT", "url": f"Patient/{pid}"}})
                entries.append({"resource": {"resourceType": "Observation", "id": f"bench-o{n}",
                                             "status": "final", "code": {"text": "heart rate"},
                                             "subject": {"reference": f"Patient/{pid}"}},
                                "request": {"method": "PUT", "url": f"Observation/bench-o{n}"}})
                paths += [f"/fhir/Patient/{pid}", f"/fhir/Observation/bench-o{n}"]
            r = c.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
            r.raise_for_status()
    random.Random(7).shuffle(paths)
    return paths


def _measure(database: str, workdir: Path, audit: bool, paths_file: Path, connections: int,
             seconds: float, workers: int, generator: str, db_pid: int | None,
             wait_quiet: float = 0.0) -> dict[str, Any]:
    env = {} if audit else {"CARERECORD_AUDIT": "false"}
    with Server(database, workers, workdir, extra_env=env) as server:
        loadgen.reads(server.base, paths_file, connections, min(1.0, seconds), generator)  # warm up
        other = background_load(1.0)  # other work on the machine (ours is idle now)
        deadline = time.monotonic() + wait_quiet
        while other >= QUIET and time.monotonic() < deadline:
            other = background_load(1.0)
        cpu0, db0 = server.cpu(), tree_cpu(db_pid)
        out = loadgen.reads(server.base, paths_file, connections, seconds, generator)
        n = max(1, out["requests"])
        out["server_cpu_us"] = (server.cpu() - cpu0) / n * 1e6
        if db_pid is not None:
            out["db_cpu_us"] = (tree_cpu(db_pid) - db0) / n * 1e6
        out["other_load"] = other
    return out


def run(patients: int, seconds: float, connections: int, workers: int, generator: str,
        database: str | None, workdir: Path, db_pid: int | None = None,
        runs: int = 1, wait_quiet: float = 0.0) -> list[list[tuple[str, dict[str, Any]]]]:
    """Load a store, then measure reads by id with audit on and off, ``runs`` times; for each
    run the two results."""
    database = database or f"sqlite:///{workdir / 'audit-bench.db'}"
    with Server(database, 1, workdir) as server:
        paths = _load(server, patients)
    paths_file = workdir / "read-paths.txt"
    paths_file.write_text("".join(p + "\n" for p in paths))
    out = []
    for _ in range(runs):
        results = []
        for label, audit in (("audit on", True), ("audit off", False)):
            results.append((label, _measure(database, workdir, audit, paths_file, connections, seconds,
                                            workers, generator, db_pid, wait_quiet)))
            time.sleep(0.5)
        out.append(results)
    return out


def render(results: list[tuple[str, dict[str, Any]]], workers: int, connections: int) -> str:
    """The table: one row per metric, a column per setting and the on/off ratio."""
    on, off = results[0][1], results[1][1]
    metrics = [("requests/s", "rate", 0), ("p50 ms", "p50_ms", 2), ("p99 ms", "p99_ms", 2),
               ("server CPU us/request", "server_cpu_us", 0)]
    if "db_cpu_us" in on:
        metrics.append(("PostgreSQL CPU us/request", "db_cpu_us", 0))
    metrics += [("other load before (cores)", "other_load", 2), ("errors", "errors", 0)]
    head = f"read by id, workers={workers}, {connections} conns ({on['generator']})"
    lines = [f"{head:<52}{'audit on':>12}{'audit off':>12}{'on/off':>9}", "-" * 85]
    for name, key, digits in metrics:
        a, b = float(on[key]), float(off[key])
        ratio = f"{a / b:.2f}" if b and key != "other_load" else "-"
        lines.append(f"{name:<52}{a:>12.{digits}f}{b:>12.{digits}f}{ratio:>9}")
    return "\n".join(lines)


def medians(runs: list[list[tuple[str, dict[str, Any]]]]) -> str:
    """The median over runs of each setting's rate and of the on/off ratio of the same run."""
    on = [r[0][1]["rate"] for r in runs]
    off = [r[1][1]["rate"] for r in runs]
    ratios = [a / b for a, b in zip(on, off, strict=True) if b]
    return (f"median of {len(runs)} runs: audit on {statistics.median(on):,.0f}/s, audit off "
            f"{statistics.median(off):,.0f}/s, on/off (same run) {statistics.median(ratios):.2f} "
            f"[{', '.join(f'{x:.2f}' for x in ratios)}]")


@contextlib.contextmanager
def throwaway_postgres(options: str) -> Iterator[tuple[str, int | None]]:
    """A fresh database on a throwaway cluster started with ``options``; (URL, postmaster pid)."""
    bindir = postgres.find_bindir()
    if bindir is None:
        raise SystemExit("--postgres: the PostgreSQL server is not installed (apt-get install postgresql)")
    cluster = postgres.Cluster(bindir, options)
    try:
        cluster.start()
        with postgres.fresh_database(cluster.url, "audit") as url:
            yield url, cluster.postmaster_pid()
    finally:
        cluster.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--generator", choices=("wrk", "python"),
                        default="wrk" if loadgen.have_wrk() else "python")
    parser.add_argument("--database", help="a store URL (default: a new SQLite file)")
    parser.add_argument("--postgres", action="store_true",
                        help=f"a throwaway PostgreSQL cluster ({DURABLE}) instead of --database")
    parser.add_argument("--pg-option", action="append", default=[],
                        help="another server option for --postgres, e.g. '-c commit_delay=100'")
    parser.add_argument("--runs", type=int, default=1, help="on/off pairs to measure (medians printed)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement, wait up to this long for other work to stop")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="carerecord-audit-bench-") as tmp, \
            (throwaway_postgres(" ".join([DURABLE, *args.pg_option])) if args.postgres
             else contextlib.nullcontext((args.database, None))) as (database, db_pid):
        runs = run(args.patients, args.seconds, args.connections, args.workers, args.generator,
                   database, Path(tmp), db_pid, args.runs, args.wait_quiet)
    for results in runs:
        print(render(results, args.workers, args.connections), flush=True)
    if len(runs) > 1:
        print(medians(runs))


if __name__ == "__main__":
    main()
