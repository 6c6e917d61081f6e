"""The benchmark suite (benchmarks/) runs end to end in a tiny mode and prints its table.

Only that it completes and reports numbers is checked: timings depend on the machine, so no
figure is asserted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"

pytestmark = pytest.mark.http

NUMBER = re.compile(r"\d[\d,]*(\.\d+)?")
SEARCHES = ("search Patient by NHS number", "search Patient by family+birthdate",
            "search Observation by patient+code+date", "search MedicationRequest, 2-level chain",
            "search MedicationRequest, _include+_revinclude")


def _tiny_args(tmp_path: Path) -> list[str]:
    args = [sys.executable, "-m", "benchmarks", "--bundles", "3", "--seconds", "1", "--raw-seconds", "0.2",
            "--workers", "1", "--tx-workers", "1", "--json", str(tmp_path / "latest.json"),
            "--people", "300", "--search-workers", "1", "--median-requests", "3",
            "--reuse-db", str(tmp_path / "community.db")]
    url = os.environ.get("CARERECORD_TEST_DATABASE_URL", "")
    return args + (["--postgres", url] if url.startswith("postgres") else ["--no-postgres"])


def test_benchmark_suite_completes_in_tiny_mode_and_prints_a_table_of_numbers(tmp_path: Path) -> None:
    if not any(SYNTHEA.glob("*.json.gz")):
        pytest.skip(f"the Synthea bundles are not in {SYNTHEA}")
    out = subprocess.run(_tiny_args(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.splitlines()
    assert lines[0].split()[:3] == ["metric", "SQLite", "PostgreSQL"]
    rows = {ln.split(":")[0] + ":" + ln.split(":")[1].split("  ")[0]: ln for ln in lines[2:] if ":" in ln
            and ln.startswith(("load", "POST", "read", "create"))}
    rows.update({ln.split("  ")[0]: ln for ln in lines[2:] if ln.startswith(("search", "_total", "same search",
                                                                               "last page"))})
    searches = [f"{label}, workers=1{suffix}" for label in SEARCHES
                for suffix in (", 8 conns: requests/s", ": p50 ms", ": p99 ms", ": server CPU us/request")]
    for metric in ("load, 3 bundles (Loader): resources/s", "POST transaction, workers=1, 4 clients: resources/s",
                   "read by id, workers=1, 8 conns: requests/s", "read by id, workers=1: p99 ms",
                   "create Patient, workers=1, 8 conns: creates/s", *searches,
                   "same search, first page (50), no _total: median ms",
                   "same search, last page (_cursor=last): median ms", "last page / first page (median ms)"):
        assert metric in rows, f"no row {metric!r} in:\n{out.stdout}"
        sqlite_cell = rows[metric][len(metric):].split()[0]
        assert NUMBER.fullmatch(sqlite_cell), rows[metric]
    total = [ln for ln in lines if ln.startswith("_total=accurate, Observation?code=heart rate (")]
    assert total and NUMBER.fullmatch(total[0].split(": median ms")[1].split()[0]), out.stdout
    result = json.loads((tmp_path / "latest.json").read_text())
    assert result["input"]["bundles"] == 3
    assert result["sqlite"]["load"]["rejected_count"] == 0
    assert result["sqlite"]["http"]["1"]["transaction"]["failures"] == 0
    assert result["sqlite"]["http"]["1"]["reads"]["errors"] == 0
    assert result["raw"]["sqlite"]["bulk"]["rate"] > 0
    found = result["sqlite"]["search"]
    assert found["community"]["people"] == 300 and found["data"]["resources"] > 3000
    for key, run in found["http"]["1"].items():
        if key != "total":
            assert run["errors"] == 0 and run["check"]["not_ok"] == 0, (key, run)
            assert run["check"]["matches_per_page"] > 0, (key, run["check"])
    paging = found["http"]["1"]["total"]
    assert paging["total"]["total"] == found["data"]["total_matches"] > 0
    assert paging["last_page_ok"]


def test_python_load_generator_measures_reads_and_creates_against_a_real_server(tmp_path: Path) -> None:
    from benchmarks.loadgen import posts, reads
    from benchmarks.run import PATIENT
    from benchmarks.server import Server

    body = tmp_path / "patient.json"
    body.write_text(json.dumps(PATIENT))
    paths = tmp_path / "paths.txt"
    paths.write_text("/fhir/metadata\n")
    with Server(f"sqlite:///{tmp_path / 'db.sqlite'}", 1, tmp_path) as server:
        creates = posts(server.base, "/fhir/Patient", body, 2, 0.5, "python")
        reads = reads(server.base, paths, 2, 0.5, "python")
    for r in (creates, reads):
        assert r["requests"] > 0 and r["errors"] == 0
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
