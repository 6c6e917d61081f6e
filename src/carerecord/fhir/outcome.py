"""OperationOutcome building (http://hl7.org/fhir/R4/operationoutcome.html).

The one place an error becomes a resource: every failure a client sees goes through
:func:`from_error`, so its shape is uniform and no stack trace or internal detail leaks."""

from __future__ import annotations

from typing import Any

from carerecord.errors import FhirError, Issue


def outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource (as a dict) holding ``issues``."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def from_error(err: FhirError) -> dict[str, Any]:
    return outcome(err.issues)


def information(message: str) -> dict[str, Any]:
    return outcome([Issue("information", "informational", message)])
