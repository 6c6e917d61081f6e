"""``GET /fhir/Patient/{id}/$access-log``: who looked at this record, when, from which
organisation and why, in plain words (issue 4, audit).

The answer is a ``searchset`` Bundle of the patient's AuditEvents, newest first (at most
``_count``, default 100, ceiling 1000). Each AuditEvent is the BALP event of a stored audit
record (access/audit.py ``balp``) with a
generated narrative (``text``) that says what happened in a sentence
(access/access_log.py), so any FHIR viewer shows the plain words and a program still has the
coded event. Who may ask: the patient themselves, a proxy for a patient they were granted,
staff with the view-audit activity (the privacy officer), and systems whose scopes read
AuditEvent; anyone else gets a 403 (staff without the activity) or a 404 (a patient or proxy
asking about someone else, the same answer as for a patient that does not exist).
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response

from carerecord.access.access_log import may_view, narrative, sentence
from carerecord.access.audit import balp
from carerecord.access.audit_store import AuditStore
from carerecord.api.auth import principal
from carerecord.api.context import Context
from carerecord.api.http import fhir_response, response_format
from carerecord.errors import FhirError, Forbidden, Gone, NotFound
from carerecord.fhir.search_query import parse_int

DEFAULT_COUNT, MAX_COUNT = 100, 1000


def _names(ctx: Context) -> Any:
    cache: dict[str, str | None] = {}

    def name(ref: str) -> str | None:
        if ref not in cache:
            cache[ref] = None
            rtype, _, rid = ref.partition("/")
            try:
                stored = ctx.repo.read(rtype, rid)
                doc = orjson.loads(stored.content or b"{}")
                cache[ref] = doc.get("name") if isinstance(doc.get("name"), str) else _human(doc)
            except (FhirError, ValueError):
                pass
        return cache[ref]
    return name


def _human(doc: dict[str, Any]) -> str | None:
    names = doc.get("name")
    if not isinstance(names, list) or not names or not isinstance(names[0], dict):
        return None
    n = names[0]
    if n.get("text"):
        return str(n["text"])
    parts = [*n.get("prefix", []), *n.get("given", []), n.get("family", "")]
    return " ".join(p for p in parts if p) or None


def _log(ctx: Context, patient: str, count: int) -> dict[str, Any]:
    try:
        ctx.repo.read("Patient", patient)
    except Gone:
        pass  # a deleted patient's log is still theirs to see
    events = AuditStore(ctx.repo.engine).for_patient(patient, count)
    names = _names(ctx)
    entries = []
    for stored in events:
        event = balp(stored.seq, stored.recorded_us, stored.patient, stored.content, stored.shard)
        event["text"] = narrative(sentence(event, patient, names))
        entries.append({"fullUrl": f"urn:uuid:{event['id']}", "resource": event, "search": {"mode": "match"}})
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


async def access_log(request: Request) -> Response:
    """The handler of ``GET [base]/Patient/{id}/$access-log``."""
    ctx: Context = request.app.state.ctx
    who = principal(request)
    patient = request.path_params["id"]
    allowed = may_view(who, patient)
    if allowed is False:
        raise Forbidden("Seeing a patient's access log needs the view-audit activity (a privacy officer's role)")
    if allowed is None:
        raise NotFound(f"Patient/{patient} is not known")
    count = min(parse_int(request.query_params.get("_count", str(DEFAULT_COUNT)), "_count") or DEFAULT_COUNT,
                MAX_COUNT)
    bundle = await anyio.to_thread.run_sync(_log, ctx, patient, count)
    if who.role is not None:  # staff: reviewing access, not caring for the patient
        request.scope.setdefault("state", {}).setdefault("audit_reason", "privacy-review")
    return fhir_response(bundle, media=response_format(request), headers={"Cache-Control": "no-store"})
