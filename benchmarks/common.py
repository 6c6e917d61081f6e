"""Helpers shared by the benchmark steps: the Synthea input, CPU time of process trees read
from /proc, free ports, a clean environment for child processes, and machine facts."""

from __future__ import annotations

import gzip
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea-r4"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Bundle:
    """One input file: its path, the decompressed bytes, and how many resources it writes."""

    path: Path
    body: bytes
    resources: int


def synthea_files(folder: Path, limit: int | None) -> list[Path]:
    """The patient bundles (``*.json.gz`` directly in ``folder``, not ``_aux``), sorted, so
    ``limit`` always picks the same ones."""
    files = sorted(folder.glob("*.json.gz"))
    if not files:
        raise SystemExit(f"No *.json.gz bundles in {folder}")
    return files[:limit] if limit else files


def read_bundles(files: list[Path]) -> list[Bundle]:
    out = []
    for f in files:
        body = gzip.decompress(f.read_bytes())
        doc = orjson.loads(body)
        n = sum(1 for e in doc.get("entry") or []
                if (e.get("request") or {}).get("method") in ("POST", "PUT"))
        out.append(Bundle(f, body, n))
    return out


# -- processes ------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; everything after its closing ')' is split
    return [str(pid), "comm", *text[text.rindex(")") + 2:].split()]


def tree(root: int) -> list[int]:
    """``root`` and every live descendant process."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st:
                children.setdefault(int(st[3]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def tree_cpu(root: int | None) -> float:
    """CPU seconds (user + system, including reaped children) of ``root`` and its descendants."""
    if root is None:
        return 0.0
    total = 0
    for pid in tree(root):
        st = _stat(pid)
        if st:
            total += sum(int(st[i]) for i in (13, 14, 15, 16))
    return total / CLK_TCK


def system_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


def background_load(seconds: float = 1.0) -> float:
    """How many CPU cores other work keeps busy right now (sampled over ``seconds``)."""
    b0, _ = system_busy()
    time.sleep(seconds)
    b1, _ = system_busy()
    return (b1 - b0) / seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """The environment for child processes: no CARERECORD_* settings leak in from outside, and
    the repository root is importable (for ``python -m benchmarks.worker``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARERECORD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def carerecord_command() -> list[str]:
    """How to run the ``carerecord`` command of this virtualenv."""
    script = Path(sys.executable).with_name("carerecord")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from carerecord.cli import main; main()"]


# -- machine --------------------------------------------------------------------------------------
def machine(postgres_version: str | None) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    try:
        import sqlalchemy

        sa_version = sqlalchemy.__version__
    except ImportError:  # pragma: no cover
        sa_version = "?"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "ram_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres_version,
        "sqlalchemy": sa_version,
        "kernel": platform.release(),
        "git": _git_head(),
    }


def _git_head() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return out.stdout.strip() or None


# The bearer token of the server under measurement (a system/*.* token the harness mints when it
# starts a server, see server.Server.start). Kept in the environment so wrk's Lua scripts, which
# run in a child process, send it too (os.getenv).
TOKEN_ENV = "CARERECORD_BENCH_TOKEN"


def auth_headers() -> dict[str, str]:
    """The Authorization header for the server under measurement (none before one started)."""
    token = os.environ.get(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}
