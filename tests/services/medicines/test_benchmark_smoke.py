"""benchmarks/medicines.py runs end to end at a tiny size and prints its table (no timing is
asserted: figures depend on the machine; docs/performance.md records them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.http


def test_the_medicines_benchmark_runs_in_tiny_mode_and_prints_p50_and_p99() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.medicines", "--iterations", "20", "--requests", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [ln for ln in out.stdout.splitlines() if re.search(r"\d+\.\d{3}\s+\d+\.\d{3}", ln)]
    assert [r.split("  ")[0] for r in rows] == ["check_order (context built)",
                                                "CDS call in-process (prefetch parsed each time)",
                                                "CDS Hooks order-sign over HTTP"]
