"""Every generated resource, and every Bundle, is valid FHIR R4 by carerecord's own validator."""

from __future__ import annotations

from typing import Any

from carerecord.fhir.validation import validate
from tests.demo.helpers import Resource


def test_every_generated_resource_is_valid_fhir_r4(resources: list[Resource]) -> None:
    problems = [(r["resourceType"], r["id"], issue.diagnostics, issue.expression)
                for r in resources for issue in validate(r) if issue.severity in ("error", "fatal")]
    assert problems == []


def test_every_transaction_bundle_is_valid_fhir_r4(community: list[dict[str, Any]]) -> None:
    problems = [issue for bundle in community for issue in validate(bundle)
                if issue.severity in ("error", "fatal")]
    assert problems == []

