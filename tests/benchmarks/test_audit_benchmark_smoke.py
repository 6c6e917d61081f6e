"""benchmarks/audit.py runs end to end in a tiny mode and prints its on/off table (no timing
is asserted: figures depend on the machine)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.http


def test_audit_benchmark_prints_reads_with_audit_on_and_off() -> None:
    out = subprocess.run([sys.executable, "-m", "benchmarks.audit", "--patients", "20", "--seconds", "0.5",
                          "--connections", "2", "--generator", "python"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    lines = out.stdout.splitlines()
    assert "audit on" in lines[0] and "audit off" in lines[0]
    rate = next(ln for ln in lines if ln.startswith("requests/s"))
    assert re.fullmatch(r"requests/s\s+\d+\s+\d+\s+[\d.]+", rate), out.stdout
