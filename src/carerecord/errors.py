"""The error hierarchy of carerecord.

Every failure a client can cause is one of these; the API edge maps each to an
OperationOutcome exactly once (``carerecord.fhir.outcome``), so no layer formats HTTP errors
of its own and no stack trace ever reaches a client::

    FhirError                      (500, exception)   base; never raised bare
    ├── Invalid                    (400, invalid)     malformed request, bad search value, bad JSON/XML
    │   └── Unprocessable          (422, processing)  well-formed resource that fails validation
    ├── Unauthorized               (401, login)
    ├── Forbidden                  (403, forbidden)
    ├── NotFound                   (404, not-found)   also what a forbidden read looks like (no oracle)
    ├── MethodNotAllowed           (405, not-supported)
    ├── NotAcceptable              (406, not-supported)
    ├── Conflict                   (409, conflict)    e.g. id clash, version conflict in a transaction
    ├── Gone                       (410, deleted)     read of a deleted resource
    ├── PreconditionFailed         (412, conflict)    stale If-Match, several conditional matches
    ├── UnsupportedMediaType       (415, not-supported)
    └── NotSupported               (501, not-supported)

Each error carries one or more ``Issue`` values: severity, FHIR issue type code, a human
message, and the FHIRPath ``expression`` of the element at fault where there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong and where."""

    severity: str  # fatal | error | warning | information
    code: str  # FHIR IssueType code: invalid, structure, required, value, not-found, ...
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity, "code": self.code,
                                  "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


@dataclass(eq=False)
class FhirError(Exception):
    """Base of all client-visible errors. ``issues`` is never empty."""

    message: str
    expression: tuple[str, ...] | list[str] | str | None = None
    issues: list[Issue] = field(default_factory=list)

    status = 500
    code = "exception"

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)
        if not self.issues:
            expr = self.expression
            exprs: tuple[str, ...] = ((expr,) if isinstance(expr, str) else tuple(expr or ()))
            self.issues = [Issue("error", self.code, self.message, exprs)]

    @classmethod
    def of(cls, issues: list[Issue]) -> FhirError:
        """An error made of several issues (e.g. all validation failures of one resource)."""
        first = issues[0]
        return cls(first.diagnostics, first.expression, list(issues))


class Invalid(FhirError):
    status = 400
    code = "invalid"


class Unprocessable(Invalid):
    status = 422
    code = "processing"


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class NotSupported(FhirError):
    status = 501
    code = "not-supported"
