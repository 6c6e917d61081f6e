"""What the audit trail costs on the read path (issue 4): read by id with audit on and off.

``python -m benchmarks.audit`` starts ``carerecord serve`` (benchmarks/server.py) twice on the
same freshly loaded SQLite (or ``--database``) store, once as configured by default (audit on)
and once with ``CARERECORD_AUDIT=false``, drives closed-loop reads by id with wrk (or the
Python load generator, benchmarks/loadgen.py), and prints a table: requests/s, p50 and p99
latency and server CPU per request, and the ratio on/off.

Audit off exists only for this comparison: a server holding real records must never run
with it (docs/performance.md).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import loadgen
from benchmarks.server import Server


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
             seconds: float, workers: int, generator: str) -> dict[str, Any]:
    env = {} if audit else {"CARERECORD_AUDIT": "false"}
    with Server(database, workers, workdir, extra_env=env) as server:
        loadgen.reads(server.base, paths_file, connections, min(1.0, seconds), generator)  # warm up
        cpu0 = server.cpu()
        out = loadgen.reads(server.base, paths_file, connections, seconds, generator)
        out["server_cpu_us"] = (server.cpu() - cpu0) / max(1, out["requests"]) * 1e6
    return out


def run(patients: int, seconds: float, connections: int, workers: int, generator: str,
        database: str | None, workdir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Load a store, then measure reads by id with audit on and off; the two results."""
    database = database or f"sqlite:///{workdir / 'audit-bench.db'}"
    with Server(database, 1, workdir) as server:
        paths = _load(server, patients)
    paths_file = workdir / "read-paths.txt"
    paths_file.write_text("".join(p + "\n" for p in paths))
    results = []
    for label, audit in (("audit on", True), ("audit off", False)):
        results.append((label, _measure(database, workdir, audit, paths_file, connections, seconds,
                                        workers, generator)))
        time.sleep(0.5)
    return results


def render(results: list[tuple[str, dict[str, Any]]], workers: int, connections: int) -> str:
    """The table: one row per metric, a column per setting and the on/off ratio."""
    on, off = results[0][1], results[1][1]
    metrics = (("requests/s", "rate", 0), ("p50 ms", "p50_ms", 2), ("p99 ms", "p99_ms", 2),
               ("server CPU us/request", "server_cpu_us", 0), ("errors", "errors", 0))
    head = f"read by id, workers={workers}, {connections} conns ({on['generator']})"
    lines = [f"{head:<52}{'audit on':>12}{'audit off':>12}{'on/off':>9}", "-" * 85]
    for name, key, digits in metrics:
        a, b = float(on[key]), float(off[key])
        ratio = f"{a / b:.2f}" if b else "-"
        lines.append(f"{name:<52}{a:>12.{digits}f}{b:>12.{digits}f}{ratio:>9}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--generator", choices=("wrk", "python"),
                        default="wrk" if loadgen.have_wrk() else "python")
    parser.add_argument("--database", help="a store URL (default: a new SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="carerecord-audit-bench-") as tmp:
        results = run(args.patients, args.seconds, args.connections, args.workers, args.generator,
                      args.database, Path(tmp))
    print(render(results, args.workers, args.connections))


if __name__ == "__main__":
    main()
