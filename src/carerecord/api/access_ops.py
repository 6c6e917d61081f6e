"""Operations of the guard: self-claimed relationships, break-glass and the privacy officer's
queue (issue 4; :mod:`carerecord.access.breakglass`).

- ``POST /fhir/Patient/{id}/$claim-relationship`` and ``POST /fhir/Patient/{id}/$break-glass``
  with Parameters ``reason`` (a code of :data:`~carerecord.access.breakglass.REASONS`) and
  ``text`` (free text, required): staff only; break-glass needs the EMERGENCY_ACCESS activity.
  An unknown patient is a 404 (as a read would be for one who may break the glass: they could
  reach any known patient anyway). Answers the grant as Parameters (kind, expires).
- ``GET /fhir/$access-queue``: the unreviewed grants of the privacy officer's organisation
  (made by its staff, or about patients registered with it), newest first, as Parameters (each
  with its ``id``); ``?reviewed=true`` lists the reviewed ones with their outcome, note and
  reviewer; REVIEW_ACCESS.
- ``POST /fhir/$review-access`` with Parameters ``grant`` (the id), ``outcome`` (a code of
  :data:`~carerecord.access.breakglass.OUTCOMES`) and ``note`` (free text, required): closes
  the item; REVIEW_ACCESS. 404 for an unknown grant and alike for another organisation's, 409
  for one already reviewed, 400 naming
  the parameter for a bad outcome or an empty note. Audited as an operation about the grant's
  patient, purpose "privacy-review" (HCOMPL).
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
    review: list[dict[str, Any]] = []
    if g.reviewed:
        review = [{"name": "outcome", "valueCode": g.review_outcome or ""},
                  {"name": "note", "valueString": g.review_note or ""},
                  *([{"name": "reviewer", "valueReference": {"reference": g.reviewer}}] if g.reviewer else []),
                  *([{"name": "reviewed", "valueDateTime": _iso(g.reviewed_us)}] if g.reviewed_us else [])]
    return [{"name": "grant", "part": [
        {"name": "id", "valueId": g.grant_id},
        {"name": "kind", "valueCode": g.kind}, {"name": "patient", "valueReference": {"reference": f"Patient/{g.patient_id}"}},
        {"name": "who", "valueReference": {"reference": g.subject}},
        {"name": "role", "valueReference": {"reference": g.practitioner_role}},
        *([{"name": "organization", "valueReference": {"reference": g.organization}}] if g.organization else []),
        {"name": "reason", "valueCode": g.reason}, {"name": "text", "valueString": g.text},
        {"name": "created", "valueDateTime": _iso(g.created_us)},
        {"name": "expires", "valueDateTime": _iso(g.expires_us)}, *review]}]


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
    reviewed = request.query_params.get("reviewed", "false")
    if reviewed not in ("true", "false"):
        raise Invalid("reviewed must be true or false", "reviewed")
    grants = breakglass.queue(request.app.state.ctx.repo.engine, who.role.organization if who.role else None,
                              reviewed=reviewed == "true")
    return fhir_response({"resourceType": "Parameters", "parameter": [p for g in grants for p in _grant_parameters(g)]},
                         media=response_format(request))


def _parameter(body: dict[str, Any], name: str) -> tuple[str, str]:
    """(the value of parameter ``name`` or "", its location in the body for an error)."""
    for n, p in enumerate(body.get("parameter") or []):
        if isinstance(p, dict) and p.get("name") == name:
            for k, v in p.items():
                if k.startswith("value"):
                    return (v if isinstance(v, str) else ""), f"Parameters.parameter[{n}].{k}"
            return "", f"Parameters.parameter[{n}]"
    return "", f"Parameters.parameter.where(name='{name}')"


async def review_access(request: Request) -> Response:
    """Close a self-claim or break-glass in the privacy officer's queue."""
    who = principal(request)
    media = response_format(request)
    if not who.may(Activity.REVIEW_ACCESS) or who.role is None:
        raise Forbidden("Reviewing access is for privacy officers (REVIEW_ACCESS)")
    body = await read_body(request)
    if body.get("resourceType") != "Parameters":
        raise Invalid("The body must be a Parameters resource", "resourceType")
    (grant_id, at_grant), (outcome, at_outcome), (note, at_note) = (
        _parameter(body, "grant"), _parameter(body, "outcome"), _parameter(body, "note"))
    if not grant_id:
        raise Invalid("The grant to review is required (its id, from $access-queue)", at_grant)
    try:
        breakglass.check_review(outcome, note)
    except Invalid as err:
        raise Invalid(err.message, at_outcome if err.issues[0].expression == ("outcome",) else at_note) from None
    engine = request.app.state.ctx.repo.engine
    try:
        grant = await guarded.on_store(request, lambda: breakglass.review(
            engine, grant_id, outcome, note, who.subject, who.role.practitioner_role if who.role else "",
            who.role.organization if who.role else None))
    except NotFound as err:
        raise NotFound(err.message, at_grant) from None
    g = guarded.guard(request)
    g.state["audit_patients"].add(grant.patient_id)
    g.state["audit_outcome"] = "success"
    g.state["audit_reason"] = "privacy-review"
    return fhir_response({"resourceType": "Parameters", "parameter": _grant_parameters(grant)}, media=media)


def routes() -> list[Route]:
    return [Route("/fhir/Patient/{id}/$claim-relationship", _grant(breakglass.SELF_CLAIM), methods=["POST"]),
            Route("/fhir/Patient/{id}/$break-glass", _grant(breakglass.BREAK_GLASS), methods=["POST"]),
            Route("/fhir/$access-queue", access_queue, methods=["GET"]),
            Route("/fhir/$review-access", review_access, methods=["POST"])]
