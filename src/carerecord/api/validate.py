"""The $validate operation (http://hl7.org/fhir/R4/resource-operation-validate.html).

Runs the same validation as a write, without writing, and always answers 200 with an
OperationOutcome listing every issue (or one information issue saying all is well); a body
that cannot be parsed at all is still a 400. A SUBSETTED copy is reported as a write would
refuse it (:mod:`carerecord.fhir.subsetted`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from carerecord.api.http import fhir_response, read_body, response_format
from carerecord.errors import Invalid, Issue
from carerecord.fhir import subsetted
from carerecord.fhir.outcome import outcome
from carerecord.fhir.validation import validate
from carerecord.store.interactions import check_type


async def validate_operation(request: Request) -> Response:
    media = response_format(request)
    t = request.path_params["type"]
    check_type(t)
    body = await read_body(request)
    if body.get("resourceType") == "Parameters":
        given = body.get("parameter")
        params = [p for p in given if isinstance(p, dict) and p.get("name") == "resource"] \
            if isinstance(given, list) else []
        if not params or not isinstance(params[0].get("resource"), dict):
            raise Invalid("$validate Parameters need a 'resource' parameter", "Parameters.parameter")
        body = params[0]["resource"]
    issues = [*subsetted.issues(body), *validate(body)]
    if body.get("resourceType") != t:
        issues.insert(0, Issue("error", "invalid", f"Resource is a {body.get('resourceType')}, "
                               f"not a {t}", ("resourceType",)))
    rid = request.path_params.get("id")
    if rid is not None and body.get("id") != rid:
        issues.insert(0, Issue("error", "invalid", f"Resource id does not match {rid}", ("id",)))
    if not issues:
        issues = [Issue("information", "informational", "Validation passed: no issues found")]
    return fhir_response(outcome(issues), 200, media=media)
