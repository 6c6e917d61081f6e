"""``carerecord serve --workers N``: N server processes on one port, each listening on a socket
of its own (``SO_REUSEPORT``), so the kernel spreads new connections over them.

Why not uvicorn's own supervisor: it binds one socket and every worker accepts from it. The
worker that wakes first accepts every connection waiting (an accept loop runs until the queue
is empty), so a burst of connections lands mostly on one worker and stays there for as long as
the clients keep them alive. Eight connections opened together, thirty times: 8 and 0 once,
7 and 1 eleven times, 4 and 4 once; with 8 wrk connections the two-worker server sometimes
served reads with one core (3,976 against 6,553-6,895 requests/s, 2026-11-23). A reverse proxy
that keeps a few upstream connections alive does the same. With a socket per worker the kernel
picks the socket by a hash of the connection's addresses: on average an even split, whoever is
awake.

The sockets are made here, in the parent, and kept open for its whole life: a worker that dies
is started again on its own socket, and connections that arrive meanwhile wait in its queue
instead of being refused. Where ``SO_REUSEPORT`` is missing, uvicorn's supervisor serves as
before (:func:`balanced`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
from multiprocessing.context import SpawnProcess
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

log = logging.getLogger("carerecord.serve")
_SPAWN = multiprocessing.get_context("spawn")
multiprocessing.allow_connection_pickling()  # (a listening socket goes to each worker)


def balanced() -> bool:
    """Whether this system can give each worker a socket of its own on one port."""
    return hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` that other sockets of this user may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def _work(config: uvicorn.Config, sock: socket.socket) -> None:
    """A worker process: one uvicorn server on its own socket."""
    config.configure_logging()
    uvicorn.Server(config).run(sockets=[sock])


class Workers:
    """Runs ``config.workers`` servers, one per socket, until SIGINT or SIGTERM; restarts a
    worker that exits, unless it failed before it could serve (then it would fail again: all
    stop, as uvicorn's supervisor does)."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.processes: list[SpawnProcess | None] = [None] * len(sockets)
        self.should_exit = threading.Event()
        self.failed = False

    def _start(self, i: int) -> None:
        p = _SPAWN.Process(target=_work, kwargs={"config": self.config, "sock": self.sockets[i]},
                           name=f"carerecord-worker-{i}")
        p.start()
        self.processes[i] = p

    def run(self) -> None:
        def stop(_sig: int, _frame: Any) -> None:
            self.should_exit.set()

        old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for i in range(len(self.sockets)):
                self._start(i)
            while not self.should_exit.wait(0.5):
                self.keep_alive()
        finally:
            self.stop_all()
            for s, handler in old.items():
                signal.signal(s, handler)

    def keep_alive(self) -> None:
        for i, p in enumerate(self.processes):
            if p is None or p.is_alive() or self.should_exit.is_set():
                continue
            p.join()
            if p.exitcode == STARTUP_FAILURE:
                log.error("worker %s failed to start; stopping", p.pid)
                self.failed = True
                self.should_exit.set()
                return
            log.warning("worker %s exited (%s); starting another", p.pid, p.exitcode)
            self._start(i)

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM to every worker (uvicorn finishes the requests in flight), SIGKILL to any
        still there after ``timeout`` seconds."""
        live = [p for p in self.processes if p is not None and p.is_alive()]
        for p in live:
            if p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        for p in live:
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join()


def serve(config: uvicorn.Config) -> int:
    """Serve ``config`` (``config.workers`` > 1) on per-worker sockets; the exit status."""
    sockets = [reuse_port_socket(config.host, config.port, config.backlog) for _ in range(config.workers)]
    try:
        workers = Workers(config, sockets)
        workers.run()
        return STARTUP_FAILURE if workers.failed else 0
    finally:
        for s in sockets:
            s.close()
