"""Operations of the guard: self-claimed relationships, break-glass and the privacy officer's
queue (issue 4; :mod:`carerecord.access.breakglass`).

- ``POST /fhir/Patient/{id}/$claim-relationship`` and ``POST /fhir/Patient/{id}/$break-glass``
  with Parameters ``reason`` (a code of :data:`~carerecord.access.breakglass.REASONS`) and
  ``text`` (free text, required): staff only; break-glass needs the EMERGENCY_ACCESS activity.
  An unknown patient is a 404 (as a read would be for one who may break the glass: they could
  reach any known patient anyway). Answers the grant as Parameters (kind, expires).
- ``GET /fhir/$access-queue``: the unreviewed grants, newest first, as Parameters; REVIEW_ACCESS.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from carerecord.access import breakglass
from carerecord.access.principal import Kind
from carerecord.access.roles import Activity
from carerecord.api import guarded
from carerecord.api.auth import principal
from carerecord.api.http import fhir_response, read_body, response_format
from carerecord.errors import Forbidden, Gone, Invalid, NotFound


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat(timespec="seconds")


def _grant_parameters(g: breakglass.AccessGrant) -> list[dict[str, Any]]:
    return [{"name": "grant", "part": [
        {"name": "kind", "valueCode": g.kind}, {"name": "patient", "valueReference": {"reference": f"Patient/{g.patient_id}"}},
        {"name": "who", "valueReference": {"reference": g.subject}},
        {"name": "role", "valueReference": {"reference": g.practitioner_role}},
        *([{"name": "organization", "valueReference": {"reference": g.organization}}] if g.organization else []),
        {"name": "reason", "valueCode": g.reason}, {"name": "text", "valueString": g.text},
        {"name": "created", "valueDateTime": _iso(g.created_us)},
        {"name": "expires", "valueDateTime": _iso(g.expires_us)}]}]


def _value(body: dict[str, Any], name: str) -> str:
    for p in body.get("parameter") or []:
        if isinstance(p, dict) and p.get("name") == name:
            for k, v in p.items():
                if k.startswith("value") and isinstance(v, str):
                    return v
    return ""


def _grant(kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        who = principal(request)
        media = response_format(request)
        if who.kind is not Kind.STAFF or who.role is None:
            raise Forbidden("Only staff acting in a role can claim a relationship or break the glass")
        if kind == breakglass.BREAK_GLASS and not who.may(Activity.EMERGENCY_ACCESS):
            raise Forbidden("The selected role may not use emergency access")
        body = await read_body(request) if await request.body() else {}
        if body.get("resourceType") not in (None, "Parameters"):
            raise Invalid("The body must be a Parameters resource", "resourceType")
        reason, text = _value(body, "reason"), _value(body, "text")
        breakglass.check_reason(reason, text)
        pid = request.path_params["id"]
        c = request.app.state.ctx
        try:
            c.repo.read("Patient", pid)
        except Gone:
            raise NotFound(f"Patient/{pid} is not known") from None
        grant = breakglass.record(c.repo.engine, kind, who.subject, who.role.practitioner_role, who.role.organization,
                                  pid, reason, text)
        g = guarded.guard(request)
        g.state["audit_patients"].add(pid)
        g.state["audit_outcome"] = "success"
        g.state["audit_reason"] = grant.basis()
        return fhir_response({"resourceType": "Parameters", "parameter": _grant_parameters(grant)}, media=media)
    return endpoint


async def access_queue(request: Request) -> Response:
    who = principal(request)
    if not who.may(Activity.REVIEW_ACCESS):
        raise Forbidden("The access queue is for privacy officers (REVIEW_ACCESS)")
    grants = breakglass.queue(request.app.state.ctx.repo.engine)
    return fhir_response({"resourceType": "Parameters", "parameter": [p for g in grants for p in _grant_parameters(g)]},
                         media=response_format(request))


def routes() -> list[Route]:
    return [Route("/fhir/Patient/{id}/$claim-relationship", _grant(breakglass.SELF_CLAIM), methods=["POST"]),
            Route("/fhir/Patient/{id}/$break-glass", _grant(breakglass.BREAK_GLASS), methods=["POST"]),
            Route("/fhir/$access-queue", access_queue, methods=["GET"])]
