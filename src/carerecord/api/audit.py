"""The audit edge: an ASGI middleware that records an AuditEvent for every request to the
record and sends no response before that record is committed (issue 4, audit).

Every request under ``/fhir`` (and ``/cds-services``) but the open ones (metadata, discovery)
is audited, whether it succeeded, was refused (401/403, by BearerAuth or the guard) or failed.
The middleware sits outside BearerAuth, so it sees refusals too, and holds the response: it
keeps the start message and the body, builds the AuditEvents (access/audit.py), hands them to
the process's :class:`~carerecord.access.audit_writer.AuditWriter` and waits for their group
commit. Only then is the response sent; if the commit fails the client gets a 503
OperationOutcome and none of the data. The cost is that responses are buffered whole (they
are already built in memory by the handlers).

What was touched comes from the guard through the request state (``audit_patients``,
``audit_resources``, ``audit_links`` (which patients each resource belongs to, so a patient's
record lists their own resources), ``audit_outcome``, ``audit_reason``; see
docs/architecture.md). A handler that streams its answer (an export's file) sets
``audit_before_body``: the record is then committed before the first byte and the body is passed
through, not held. Where the guard set none they are derived here: patients from the path (``Patient/{id}``...), from
``patient``/``subject`` search parameters and from the Patient compartment of every resource
in a JSON response body (so ``_include``d and ``_revinclude``d resources count); resources from
the path and the response body; the outcome from the status code.

AuditEvents are not writable through the API: a create, update, patch or delete of the type
AuditEvent, or a transaction or batch with an AuditEvent entry, is refused here with a 405
OperationOutcome (and audited as denied).

``Settings.audit = False`` turns all of this off; it exists only to measure what audit costs
(benchmarks/audit.py) and must not be used with real records.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carerecord.access.audit import DENIED, ERROR, SUCCESS, Facts, audit_events
from carerecord.access.audit_store import AuditStore
from carerecord.access.audit_writer import AuditUnavailable, AuditWriter, Ticket
from carerecord.api.auth import OPEN_PATHS
from carerecord.errors import Issue
from carerecord.fhir.indexing import patient_compartments
from carerecord.fhir.outcome import outcome as outcome_doc
from carerecord.fhir.xml import parse_xml
from carerecord.store.records import now_us

log = logging.getLogger("carerecord.audit")
AUDITED_PREFIXES = ("/fhir", "/cds-services")
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_READS = frozenset({"GET", "HEAD"})
_UNRECORDED = "The access could not be recorded in the audit trail, so nothing is returned; try again shortly"
_PATIENT_PARAMS = frozenset({"patient", "subject", "patient:Patient", "subject:Patient", "_id"})


def audited(path: str) -> bool:
    """Whether a request on ``path`` is audited (everything that may reach patient data)."""
    return path.startswith(AUDITED_PREFIXES) and path not in OPEN_PATHS and "/.well-known/" not in path


def writer_of(app: Any) -> AuditWriter | None:
    """The application's audit writer, made on first use (None when audit is off)."""
    state = app.state
    found: AuditWriter | None = getattr(state, "audit_writer", None)
    if found is None:
        ctx = state.ctx
        if not ctx.settings.audit:
            return None
        window = ctx.settings.audit_window_ms
        found = AuditWriter(AuditStore(ctx.repo.engine), window=None if window is None else window / 1000)
        state.audit_writer = found
    return found


def _json(status: int, doc: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    body = orjson.dumps(doc)
    headers = [(b"content-type", b"application/fhir+json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *(extra or [])]
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body}]


def _refusal(status: int, code: str, text: str, extra: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    return _json(status, outcome_doc([Issue("error", code, text)]), extra)


def _writes_audit_events(method: str, segments: list[str]) -> bool:
    return (method in _WRITES and bool(segments) and segments[0] == "AuditEvent"
            and not (len(segments) >= 2 and segments[-1] == "$validate"))


def _bundle_writes_audit_events(body: bytes, content_type: str) -> bool:
    if b"AuditEvent" not in body:
        return False
    try:
        doc = parse_xml(body) if "xml" in content_type else orjson.loads(body)
    except Exception:  # noqa: BLE001 - a malformed Bundle is the transaction processor's to report
        return False
    entries = doc.get("entry") if isinstance(doc, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        res, req = entry.get("resource"), entry.get("request")
        if isinstance(res, dict) and res.get("resourceType") == "AuditEvent":
            return True
        if isinstance(req, dict) and str(req.get("url", "")).lstrip("/").startswith("AuditEvent") \
                and str(req.get("method", "")).upper() in _WRITES:
            return True
    return False


def _from_request(segments: list[str], params: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    patients: list[str] = []
    resources: list[str] = []
    if len(segments) >= 2 and not segments[0].startswith("$") and not segments[1].startswith(("_", "$")):
        resources.append(f"{segments[0]}/{segments[1]}")
        if segments[0] == "Patient":
            patients.append(segments[1])
    for name, value in params:
        if name in _PATIENT_PARAMS and (name != "_id" or segments[:1] == ["Patient"]):
            for v in value.split(","):
                ref = v.rsplit("/", 1)
                if len(ref) == 1 or ref[0].endswith("Patient"):
                    patients.append(ref[-1])
    return patients, resources


def _from_body(body: bytes, patients: list[str], resources: list[str]) -> None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if not isinstance(doc, dict):
        return
    found = [doc]
    if doc.get("resourceType") == "Bundle":
        found = [e["resource"] for e in doc.get("entry", []) if isinstance(e, dict)
                 and isinstance(e.get("resource"), dict)]
    for res in found:
        rtype, rid = res.get("resourceType"), res.get("id")
        if rtype in ("OperationOutcome", "Bundle", "Parameters", "AuditEvent") or not isinstance(rid, str):
            continue
        resources.append(f"{rtype}/{rid}")
        try:
            patients.extend(patient_compartments(res))
        except Exception:  # noqa: BLE001,S112 - a resource the indexer cannot read still has its ref
            continue


def facts(scope: Scope, status: int, headers: list[tuple[bytes, bytes]], body: bytes, server: str) -> Facts:
    """What a finished request did, from the guard's state where it set it, else derived."""
    state: dict[str, Any] = scope.get("state", {})
    path: str = scope["path"]
    sub = path[len("/fhir"):] if path.startswith("/fhir") else path
    segments = [s for s in sub.split("/") if s]
    query = scope.get("query_string", b"").decode("latin-1")
    patients = state.get("audit_patients")
    resources = state.get("audit_resources")
    links = state.get("audit_links")
    p, r = _from_request(segments, parse_qsl(query, keep_blank_values=True) if query else [])
    if not resources or links is None:  # the guard recorded nothing (yet) for this path
        links = None
        ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if 200 <= status < 300 and b"json" in ctype and b"ndjson" not in ctype and body:
            _from_body(body, p, r)
    # The patient a request names (path, patient/subject parameters) is always audited, even
    # when the guard refused before recording anything: asking is itself an access attempt.
    patients = sorted({*p, *(patients or ())})
    resources = list(dict.fromkeys([*(resources or r)]))
    outcome = state.get("audit_outcome") or (
        SUCCESS if status < 400 else DENIED if status in (401, 403) else ERROR)
    client = scope.get("client")
    return Facts(scope["method"], sub, query, status, state.get("principal"), patients,
                 resources, outcome, state.get("audit_reason"), now_us(),
                 client[0] if client else None, server, links=links)


class AuditTrail:
    """ASGI middleware: audit every request to the record; send nothing unaudited."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not audited(scope["path"]):
            await self.app(scope, receive, send)
            return
        writer = writer_of(scope["app"])
        if writer is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})
        # A batch waits (briefly) for the records of the reads in flight; not for writes and
        # uploads, which take longer than a batch should wait.
        ticket = writer.expect() if scope["method"] in _READS else None
        try:
            await self._audited(scope, receive, send, writer, ticket)
        finally:
            if ticket is not None:
                writer.settle(ticket)

    async def _audited(self, scope: Scope, receive: Receive, send: Send, writer: AuditWriter,
                       ticket: Ticket | None) -> None:
        server = scope["app"].state.ctx.base
        refused, receive = await self._refuse_audit_writes(scope, receive)
        messages: list[Message] = []
        streaming: list[bool] = []  # [sent] once a streamed response's record is committed
        if refused is not None:
            messages = refused
        else:
            async def hold(message: Message) -> None:
                if streaming:
                    if streaming[0]:
                        await send(message)
                    return
                if message["type"] == "http.response.start" and scope["state"].get("audit_before_body"):
                    # A streamed answer (an export's file): the record is committed before the first
                    # byte, so the body is never held in memory; nothing is sent if it fails.
                    ok = await self._record(writer, ticket, facts(scope, int(message["status"]),
                                                          list(message.get("headers", [])), b"", server))
                    streaming.append(ok)
                    for m in [message] if ok else _refusal(503, "transient", _UNRECORDED, [(b"retry-after", b"1")]):
                        await send(m)
                    return
                messages.append(message)
            try:
                await self.app(scope, receive, hold)
            except Exception:
                if not streaming:
                    await self._record(writer, ticket, facts(scope, 500, [], b"", server))
                raise
            if streaming:
                return
        start = next((m for m in messages if m["type"] == "http.response.start"), None)
        status = int(start["status"]) if start else 500
        headers = list(start.get("headers", [])) if start else []
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if not await self._record(writer, ticket, facts(scope, status, headers, body, server)):
            messages = _refusal(503, "transient", _UNRECORDED, [(b"retry-after", b"1")])
        for message in messages:
            await send(message)

    @staticmethod
    async def _record(writer: AuditWriter, ticket: Ticket | None, f: Facts) -> bool:
        try:
            await writer.record(audit_events(f), ticket)
            return True
        except AuditUnavailable:
            return False
        except Exception:  # noqa: BLE001 - building the event failed: still never send unaudited
            log.exception("could not build the AuditEvent of %s %s", f.method, f.path)
            return False

    async def _refuse_audit_writes(self, scope: Scope, receive: Receive) -> tuple[list[Message] | None, Receive]:
        """A 405 for writes of AuditEvent (and the receive to use next: a transaction's body,
        once read to look at its entries, is replayed to the application)."""
        path: str = scope["path"]
        method: str = scope["method"]
        segments = [s for s in path[len("/fhir"):].split("/") if s] if path.startswith("/fhir") else []
        if _writes_audit_events(method, segments):
            return _refusal(405, "not-supported", "AuditEvents are written by the server only; "
                            "they cannot be created, changed or deleted", [(b"allow", b"GET")]), receive
        if method != "POST" or segments:
            return None, receive
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        ctype = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"content-type"), "")
        if _bundle_writes_audit_events(body, ctype):
            return _refusal(405, "not-supported", "A transaction or batch cannot write AuditEvents: "
                            "they are written by the server only", [(b"allow", b"GET")]), receive
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return None, replay
