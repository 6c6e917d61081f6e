"""One export's folder, ``<data_dir>/exports/<id>/``: everything about the job is in files, so
whichever worker process a client's poll or download reaches can answer it.

- ``job.json``: the request, its owner (client id, subject, kind), its purpose and the process
  running it. Written once, at kick-off.
- ``state.json``: queued, running, complete or failed; progress; when it finished. Replaced
  atomically by the process running the job, and by nobody else.
- ``heartbeat``: touched every few seconds by that process while the job is queued or running.
- ``manifest.json``: written last, after the audit records of every exported patient are
  committed. The output files, ``<Type>-<n>.ndjson``, are served only once they are listed in it.
- ``interrupted``: left by whoever finds the job's process gone (a restart, a crash). A job with
  it is failed for good: its process, if it was only paused, can no longer complete it.

A job is interrupted when its process is known to be gone (this host and its pid is dead, or its
pid now belongs to a new process) or its heartbeat is older than :data:`STALE_SECONDS`. So a job
interrupted by a restart is reported as failed, and never as complete.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

QUEUED, RUNNING, COMPLETE, FAILED = "queued", "running", "complete", "failed"
HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 60.0
_ID = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^[A-Z][A-Za-z]+-[1-9][0-9]*\.ndjson$")
_PROCESS: dict[int, str] = {}


def process_id() -> str:
    """This process's identity: its pid and a random part, so that a new process that happens
    to get a dead one's pid (common in containers) is not taken for it."""
    pid = os.getpid()
    if pid not in _PROCESS:
        _PROCESS[pid] = f"{pid}-{uuid.uuid4().hex}"
    return _PROCESS[pid]


def valid_id(job_id: str) -> bool:
    return bool(_ID.match(job_id))


def valid_file_name(name: str) -> bool:
    return bool(_FILE.match(name))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a reader sees the old or the new file, never
    half of one). FileNotFoundError if the job's folder is gone (the job was deleted)."""
    tmp = path.with_name(f".{path.name}.{process_id()}.tmp")
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Owner:
    """Who started an export; only the same client acting as the same subject sees it again."""

    kind: str
    client_id: str
    subject: str


@dataclass(slots=True)
class State:
    status: str = QUEUED
    progress: str = "queued"
    error: str | None = None
    finished_us: int | None = None


class Job:
    """The folder of one export job."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.id = job_id
        self.dir = root / job_id

    # -- what it is ------------------------------------------------------------------------------
    def create(self, record: dict[str, Any]) -> None:
        """Make the folder with ``job.json`` (FileExistsError if the id is taken)."""
        self.dir.mkdir(mode=0o700)
        write_atomically(self.dir / "job.json", orjson.dumps({**record, "process": process_id(),
                                                              "host": socket.gethostname()}))
        self.beat()

    def record(self) -> dict[str, Any] | None:
        """``job.json``, or None when there is no such job (or it was deleted)."""
        try:
            found: dict[str, Any] = orjson.loads((self.dir / "job.json").read_bytes())
        except (FileNotFoundError, NotADirectoryError, orjson.JSONDecodeError):
            return None
        return found

    @staticmethod
    def owner_of(record: dict[str, Any]) -> Owner:
        o = record.get("owner") or {}
        return Owner(str(o.get("kind")), str(o.get("client_id")), str(o.get("subject")))

    # -- how it goes -----------------------------------------------------------------------------
    def state(self) -> State:
        try:
            raw = orjson.loads((self.dir / "state.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return State()
        return State(raw.get("status", QUEUED), raw.get("progress", ""), raw.get("error"), raw.get("finished_us"))

    def set_state(self, state: State) -> None:
        write_atomically(self.dir / "state.json", orjson.dumps({
            "status": state.status, "progress": state.progress, "error": state.error,
            "finished_us": state.finished_us}))

    def beat(self) -> None:
        """Touch the heartbeat (FileNotFoundError once the job is deleted)."""
        path = self.dir / "heartbeat"
        with open(path, "ab"):
            pass
        os.utime(path)

    def exists(self) -> bool:
        return (self.dir / "job.json").exists()

    def manifest(self) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = orjson.loads((self.dir / "manifest.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return found

    def complete(self, manifest: dict[str, Any], finished_us: int) -> bool:
        """Publish the manifest (the files become available) and mark the job complete; False,
        publishing nothing, when the job was deleted or found interrupted meanwhile."""
        if not self.exists() or self.interrupted_mark():
            return False
        try:
            write_atomically(self.dir / "manifest.json", orjson.dumps(manifest))
            self.set_state(State(COMPLETE, "complete", None, finished_us))
        except FileNotFoundError:
            return False
        return True

    def interrupted_mark(self) -> bool:
        return (self.dir / "interrupted").exists()

    def interrupted(self, record: dict[str, Any], running_here: bool) -> bool:
        """Whether this queued or running job's process is gone (see the module docstring); if
        so the job is marked, so it can never complete afterwards."""
        if self.interrupted_mark():
            return True
        if running_here:
            return False
        gone = self._process_gone(str(record.get("process", "")), str(record.get("host", "")))
        if not gone:
            try:
                gone = time.time() - (self.dir / "heartbeat").stat().st_mtime > STALE_SECONDS
            except FileNotFoundError:
                gone = True
        if gone:
            try:
                with open(self.dir / "interrupted", "ab"):
                    pass
            except FileNotFoundError:
                pass  # deleted meanwhile
        return gone

    @staticmethod
    def _process_gone(process: str, host: str) -> bool:
        if host != socket.gethostname():
            return False  # another machine's process: only its heartbeat tells
        pid_text = process.partition("-")[0]
        if not pid_text.isdigit():
            return True
        pid = int(pid_text)
        if pid == os.getpid():
            return process != process_id()  # our pid, but another process's job
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # alive, someone else's: the heartbeat decides
        return False
