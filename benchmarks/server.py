"""A ``carerecord serve`` child process on 127.0.0.1 and a free port, its CPU time (the whole
process tree, so uvicorn's worker processes count), and the transaction-load client."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    TOKEN_ENV,
    Bundle,
    auth_headers,
    carerecord_command,
    child_env,
    free_port,
    tree,
    tree_cpu,
)

START_TIMEOUT = 90.0


class Server:
    """``carerecord serve --workers N --database URL``; start() waits until every worker answers."""

    def __init__(self, database: str, workers: int, workdir: Path,
                 extra_env: dict[str, str] | None = None) -> None:
        self.database = database
        self.extra_env = extra_env or {}
        self.workers = workers
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"server-{self.port}.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [*carerecord_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--workers", str(self.workers), "--database", self.database,
               "--data-dir", str(self.workdir)]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self._env(), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=5) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.log_tail()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server did not start in {START_TIMEOUT:.0f} s: {self.log_tail()}")
                try:
                    if c.get(f"{self.base}/healthz").status_code == 200 and self._workers_up():
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.token = self.mint_token()
        os.environ[TOKEN_ENV] = self.token  # for every client of this run, wrk's Lua included
        return self

    def mint_token(self, scopes: str = "system/*.*") -> str:
        """A system token for this server, signed with its key (carerecord.access.tokens)."""
        from carerecord.access.tokens import mint_system_token
        from carerecord.store.engine import make_engine

        engine = make_engine(self.database)
        try:
            return mint_system_token(engine, scopes, audience=f"{self.base}/fhir", client_id="benchmarks")
        finally:
            engine.dispose()

    def _env(self) -> dict[str, str]:
        env = child_env()
        for k, v in self.extra_env.items():
            env[k] = f"{v}{os.pathsep}{env[k]}" if k == "PYTHONPATH" and env.get(k) else v
        return env

    def _workers_up(self) -> bool:
        """With --workers N > 1 uvicorn runs N worker processes under the first one."""
        assert self.proc is not None
        return self.workers == 1 or len(tree(self.proc.pid)) >= self.workers + 1

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid if self.proc else None)

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the server (uvicorn stops its workers); SIGKILL to what is left of its
        process tree after 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = tree(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def post_transactions(server: Server, bundles: list[Bundle], clients: int,
                      timeout: float = 300.0) -> dict[str, Any]:
    """POST every bundle to ``/fhir`` as a transaction from ``clients`` threads, each with its own
    keep-alive connection; ``Prefer: return=minimal``, as ``carerecord load`` does not build the
    resources into its response either."""
    lock = threading.Lock()
    queue = list(reversed(bundles))
    failures: list[str] = []
    done = [0, 0]  # bundles, resources
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
               "Prefer": "return=minimal", **auth_headers()}

    def client() -> None:
        with httpx.Client(base_url=server.base, timeout=timeout, headers=headers) as c:
            while True:
                with lock:
                    if not queue:
                        return
                    b = queue.pop()
                try:
                    r = c.post("/fhir", content=b.body)
                    ok, why = r.status_code == 200, f"{r.status_code} {r.text[:300]}"
                except httpx.HTTPError as exc:
                    ok, why = False, repr(exc)
                with lock:
                    if ok:
                        done[0] += 1
                        done[1] += b.resources
                    else:
                        failures.append(f"{b.path.name}: {why}")

    cpu0, own0 = server.cpu(), time.process_time()
    start = time.perf_counter()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * len(bundles))
    seconds = time.perf_counter() - start
    server_cpu, client_cpu = server.cpu() - cpu0, time.process_time() - own0
    return {"bundles": done[0], "resources": done[1], "seconds": seconds, "rate": done[1] / seconds,
            "failures": len(failures), "failure_examples": failures[:3], "clients": clients,
            "server_cpu_seconds": server_cpu,
            "server_cpu_us_per_resource": server_cpu / done[1] * 1e6 if done[1] else None,
            "client_cpu_seconds": client_cpu}
