"""``carerecord serve --workers N`` (cli/workers.py): a listening socket per worker on one port,
so the kernel spreads connections over the workers; a worker that dies is started again on its
own socket; SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from carerecord.cli.workers import balanced, reuse_port_socket

pytestmark = pytest.mark.skipif(not balanced() or not Path("/proc/net/tcp").exists(),
                                reason="SO_REUSEPORT and /proc are Linux's")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(out)


def _sockets(pid: int) -> set[int]:
    """The socket inodes process ``pid`` has open."""
    out = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def _tcp(port: int) -> tuple[set[int], dict[int, int]]:
    """Of /proc/net/tcp, for local port ``port``: the inodes of the listening sockets, and the
    inode of each established connection by its remote port."""
    listening, conns = set(), {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local_port, remote_port, state, inode = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16), f[3], int(f[9])
        if local_port != port:
            continue
        if state == "0A":
            listening.add(inode)
        elif state == "01":
            conns[remote_port] = inode
    return listening, conns


def _wait_up(base: str, server: subprocess.Popen[bytes], workers: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200 and len(_children(server.pid)) >= workers:
                return
        except httpx.TransportError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def test_sockets_on_one_port_each_take_connections() -> None:
    port = _port()
    a, b = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    try:
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
        time.sleep(0.1)
        accepted = {"a": 0, "b": 0}
        for name, s in (("a", a), ("b", b)):
            s.setblocking(False)
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted[name] += 1
        assert accepted["a"] + accepted["b"] == 32
        assert accepted["a"] > 0 and accepted["b"] > 0  # (all 32 on one: 2 in 4 billion)
        for c in clients:
            c.close()
    finally:
        a.close()
        b.close()


def test_two_workers_listen_apart_survive_a_killed_worker_and_stop_on_sigterm(tmp_path: Path) -> None:
    port, db = _port(), f"sqlite:///{tmp_path / 'w.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARERECORD_")}
    env["CARERECORD_DATA_DIR"] = str(tmp_path)
    server = subprocess.Popen([sys.executable, "-m", "carerecord.cli", "serve", "--workers", "2",
                               "--port", str(port), "--database", db], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, server, 2)
        workers = _children(server.pid)
        workers = [w for w in workers if _sockets(w)]  # (not multiprocessing's resource tracker)
        assert len(workers) == 2
        listening, _ = _tcp(port)
        assert len(listening) == 2  # a listening socket each, not one shared
        assert [len(_sockets(w) & listening) for w in workers] == [1, 1]
        assert _sockets(workers[0]) & listening != _sockets(workers[1]) & listening

        # 16 keep-alive connections: the kernel gives them to both workers
        clients = [httpx.Client(base_url=base, timeout=10) for _ in range(16)]
        try:
            for c in clients:
                assert c.get("/healthz").status_code == 200
            _, conns = _tcp(port)
            owners = {w: len(_sockets(w) & set(conns.values())) for w in workers}
            assert sum(owners.values()) == 16 and all(owners.values()), owners
        finally:
            for c in clients:
                c.close()

        os.kill(workers[0], signal.SIGKILL)  # a worker dies: another takes its socket
        deadline = time.monotonic() + 60
        while True:
            now = [w for w in _children(server.pid) if _sockets(w) & listening]
            if len(now) == 2 and workers[0] not in now:
                break
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.2)
        for _ in range(16):  # fresh connections, whichever socket they are hashed to
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    assert server.returncode == 0, server.stderr.read() if server.stderr else ""
    assert not _children(server.pid)
