"""The bulk exports of one server process: start a job, report on it, hand out its files, delete
it (http://hl7.org/fhir/uv/bulkdata/STU2/export.html).

A job runs in a daemon thread of the process that accepted its kick-off (at most ``workers`` at
once; the others wait, queued), so a stopped process stops its jobs, and they are then reported
as failed (``jobs.py``). Status, files and deletion are answered from the job's folder, by any
worker process. Only the client that started a job (the same client id acting as the same
subject) learns anything about it: anyone else is told it does not exist, exactly as for an id
that was never given out. Finished jobs, and their files, are removed ``retention_seconds``
after they finished, when a later export is started.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carerecord.access.audit_store import AuditStore
from carerecord.access.principal import Principal
from carerecord.errors import Forbidden, NotFound
from carerecord.services.export.jobs import (
    COMPLETE,
    FAILED,
    HEARTBEAT_SECONDS,
    QUEUED,
    Job,
    Owner,
    State,
    valid_file_name,
    valid_id,
)
from carerecord.services.export.request import ExportRequest, may_export
from carerecord.services.export.runner import Runner
from carerecord.store.records import now_us
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher

log = logging.getLogger("carerecord.export")
IN_PROGRESS = "in-progress"


@dataclass(frozen=True, slots=True)
class JobStatus:
    """What a status request answers: in progress (with a progress note), complete (with the
    manifest and when the files expire) or failed (with what to tell the client)."""

    status: str
    progress: str = ""
    manifest: dict[str, Any] | None = None
    error: str | None = None
    expires_us: int | None = None


@dataclass(frozen=True, slots=True)
class OutputFile:
    path: Path
    res_type: str
    media: str


def owner(principal: Principal) -> Owner:
    return Owner(principal.kind.value, principal.client_id, principal.subject)


class Exports:
    """The export jobs of this process, kept under ``root`` (``<data_dir>/exports``)."""

    def __init__(self, repo: Repository, searcher: Searcher, base: str, root: Path, *, audit: bool = True,
                 max_file_bytes: int = 64 * 1024 * 1024, retention_seconds: int = 24 * 3600,
                 workers: int = 2, page_size: int = 500) -> None:
        self.repo, self.searcher, self.base, self.root = repo, searcher, base, root
        self.audit = AuditStore(repo.engine) if audit else None
        self.max_file_bytes, self.retention_seconds, self.page_size = max_file_bytes, retention_seconds, page_size
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._active: set[str] = set()  # queued or running here
        self._wake = threading.Event()
        self._heart: threading.Thread | None = None

    # -- kick-off --------------------------------------------------------------------------------
    def start(self, principal: Principal, req: ExportRequest, client_address: str | None = None) -> str:
        """Queue the export ``req`` for ``principal``; its job id."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.sweep()
        job = Job(self.root, uuid.uuid4().hex)
        job.create({"id": job.id, "owner": _owner_json(principal),
                     "purpose": principal.purpose.value, "level": req.level, "group": req.group,
                     "types": list(req.types), "since_us": req.since_us, "media": req.media,
                     "type_filters": [f"{f.res_type}?{f.criteria}" for f in req.filters],
                     "elements": [f"{t}.{e}" if t else e for t, e in req.elements],
                     "patients": list(req.patients) if req.patients is not None else None,
                     "include_associated_data": list(req.associated),
                     "request": f"{self.base}{req.path_and_query}", "created_us": now_us()})
        job.set_state(State(QUEUED, "queued"))
        runner = Runner(job, principal, req, self.repo, self.searcher, self.base, audit=self.audit,
                        max_file_bytes=self.max_file_bytes, page_size=self.page_size,
                        client_address=client_address)
        with self._lock:
            self._active.add(job.id)
            if self._heart is None:
                self._heart = threading.Thread(target=self._beat, name="carerecord-export-heartbeat", daemon=True)
                self._heart.start()
        threading.Thread(target=self._run, args=(runner,), name=f"carerecord-export-{job.id[:8]}",
                         daemon=True).start()
        return job.id

    def _run(self, runner: Runner) -> None:
        try:
            with self._slots:
                if runner.job.exists():
                    runner.run()
        finally:
            with self._lock:
                self._active.discard(runner.job.id)

    def _beat(self) -> None:
        while not self._wake.wait(HEARTBEAT_SECONDS):
            with self._lock:
                active = list(self._active)
            for job_id in active:
                try:
                    Job(self.root, job_id).beat()
                except FileNotFoundError:
                    pass  # deleted: its runner stops at its next page

    def close(self) -> None:
        """Stop the heartbeat (tests; a server's daemon threads end with the process)."""
        self._wake.set()

    # -- the owner's view ------------------------------------------------------------------------
    def _owned(self, principal: Principal, job_id: str) -> tuple[Job, dict[str, Any]]:
        """The job, if ``principal`` started it; NotFound alike for an id never given out, a
        deleted job and another client's job (no existence oracle)."""
        job = Job(self.root, job_id) if valid_id(job_id) else None
        record = job.record() if job is not None else None
        if job is None or record is None or Job.owner_of(record) != owner(principal):
            raise NotFound(f"There is no export {job_id}")
        return job, record

    def status(self, principal: Principal, job_id: str) -> JobStatus:
        job, record = self._owned(principal, job_id)
        state = job.state()
        if state.status == COMPLETE:
            manifest = job.manifest()
            if manifest is not None:
                return JobStatus(COMPLETE, "complete", manifest,
                                 expires_us=(state.finished_us or now_us()) + self.retention_seconds * 1_000_000)
        if state.status == FAILED:
            return JobStatus(FAILED, error=state.error or "The export failed")
        with self._lock:
            here = job_id in self._active
        if job.interrupted(record, here):
            return JobStatus(FAILED, error="The export was interrupted before it finished (the server "
                                           "stopped); its files were not made available. Start a new export.")
        return JobStatus(IN_PROGRESS, state.progress)

    def file(self, principal: Principal, job_id: str, name: str) -> OutputFile:
        """An output file of a complete job, listed in its manifest; NotFound otherwise, and
        Forbidden when the client's scopes no longer allow exporting its type."""
        job, record = self._owned(principal, job_id)
        manifest = job.manifest() if valid_file_name(name) else None
        listed = [o for o in (manifest or {}).get("output", []) if str(o.get("url", "")).endswith(f"/{name}")]
        if not listed:
            raise NotFound(f"Export {job_id} has no file {name}")
        res_type = str(listed[0]["type"])
        if not may_export(principal, res_type):
            raise Forbidden(f"The client's scopes no longer allow exporting {res_type}")
        path = job.dir / name
        if not path.is_file():
            raise NotFound(f"Export {job_id} has no file {name}")
        return OutputFile(path, res_type, str(record.get("media", "application/fhir+ndjson")))

    def cancel(self, principal: Principal, job_id: str) -> None:
        """Delete the job and its files; a running job stops at its next page."""
        job, _ = self._owned(principal, job_id)
        trash = self.root / f".deleted-{job_id}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(job.dir, trash)
        except FileNotFoundError:
            raise NotFound(f"There is no export {job_id}") from None
        shutil.rmtree(trash, ignore_errors=True)

    # -- housekeeping ----------------------------------------------------------------------------
    def sweep(self) -> None:
        """Remove jobs that finished (or were interrupted) more than ``retention_seconds`` ago,
        and what deletions left behind."""
        horizon = now_us() - self.retention_seconds * 1_000_000
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(".deleted-"):
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            if not valid_id(entry.name):
                continue
            job = Job(self.root, entry.name)
            record, state = job.record(), job.state()
            if record is None:
                continue
            with self._lock:
                here = entry.name in self._active
            finished = state.finished_us if state.status in (COMPLETE, FAILED) else (
                int(record.get("created_us", 0)) if job.interrupted(record, here) else None)
            if finished is not None and finished < horizon:
                shutil.rmtree(job.dir, ignore_errors=True)


def _owner_json(principal: Principal) -> dict[str, str]:
    o = owner(principal)
    return {"kind": o.kind, "client_id": o.client_id, "subject": o.subject}
