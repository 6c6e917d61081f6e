"""Closed-loop HTTP load on 127.0.0.1: ``connections`` clients, each sending its next request
as soon as the last answer arrives, for a fixed time.

``wrk`` (C, one thread) is used when installed, so the client costs little of the two cores the
server also needs; otherwise a small asyncio client in this process does the same job and its
CPU time is reported, because on a small machine a Python client can be the bottleneck."""

from __future__ import annotations

import asyncio
import json
import resource
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks.common import auth_headers

LUA = Path(__file__).with_name("lua")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(base: str, script: str, args: list[str], connections: int, seconds: float) -> dict[str, Any]:
    """wrk with one thread and ``connections`` connections; its Lua ``done`` prints JSON."""
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError("load is only ever generated against 127.0.0.1")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(LUA / script), base, "--", *args]
    cpu0 = _children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    client_cpu = _children_cpu() - cpu0
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-500:]} {out.stdout[-500:]}")
    r = json.loads(lines[-1])
    secs = r["duration_us"] / 1e6
    errors = sum(r["errors"].values())
    lat = r["latency_us"]
    return {"generator": "wrk", "connections": connections, "requests": r["requests"],
            "seconds": secs, "rate": r["requests"] / secs, "errors": errors, "error_detail": r["errors"],
            "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
            "max_ms": lat["max"] / 1000, "mean_ms": lat["mean"] / 1000,
            "client_cpu_seconds": client_cpu}


# -- the Python fallback ------------------------------------------------------------------------
def _request(method: str, path: str, body: bytes | None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/fhir+json",
            *[f"{k}: {v}" for k, v in auth_headers().items()]]
    if body is not None:
        head += ["Content-Type: application/fhir+json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def _client(port: int, requests: list[bytes], offset: int, deadline: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(requests[i % len(requests)])
            i += 1
            status_line = await reader.readline()
            length, close = 0, False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding":
                    raise RuntimeError("chunked responses are not supported by the Python client")
                elif name == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            parts = status_line.split()
            if len(parts) < 2 or not parts[1].startswith((b"2", b"3")):
                errors[0] += 1
            if close:
                break
    finally:
        writer.close()


def run_python(base: str, requests: list[tuple[str, str, bytes | None]], connections: int,
               seconds: float) -> dict[str, Any]:
    """The same measurement as :func:`run_wrk` with asyncio streams in this process."""
    if not base.startswith("http://127.0.0.1:"):
        raise ValueError("load is only ever generated against 127.0.0.1")
    port = int(base.rsplit(":", 1)[1])
    raw = [_request(m, p, b) for m, p, b in requests]
    latencies: list[float] = []
    errors = [0]

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        await asyncio.wait_for(asyncio.gather(*[
            _client(port, raw, k * max(1, len(raw) // connections), deadline, latencies, errors)
            for k in range(connections)]), timeout=seconds + 30)

    cpu0, start = time.process_time(), time.perf_counter()
    asyncio.run(main())
    secs, client_cpu = time.perf_counter() - start, time.process_time() - cpu0
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"generator": "python", "connections": connections, "requests": len(lat), "seconds": secs,
            "rate": len(lat) / secs, "errors": errors[0], "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "mean_ms": sum(lat) / len(lat) * 1000 if lat else float("nan"),
            "client_cpu_seconds": client_cpu}


def reads(base: str, paths_file: Path, connections: int, seconds: float, generator: str) -> dict[str, Any]:
    if generator == "wrk":
        return run_wrk(base, "read.lua", [str(paths_file)], connections, seconds)
    paths = [p for p in paths_file.read_text().splitlines() if p]
    return run_python(base, [("GET", p, None) for p in paths], connections, seconds)


def posts(base: str, path: str, body_file: Path, connections: int, seconds: float,
          generator: str) -> dict[str, Any]:
    if generator == "wrk":
        return run_wrk(base, "post.lua", [path, str(body_file)], connections, seconds)
    return run_python(base, [("POST", path, body_file.read_bytes())], connections, seconds)
