"""Signing: critical findings block until overridden with a reason, and each override
becomes a valid FHIR DetectedIssue with the reason as its mitigation."""

from __future__ import annotations

from datetime import UTC, datetime

from carerecord.fhir.validation import validate
from carerecord.services.medicines.checker import sign_gate
from carerecord.services.medicines.detected_issue import OVERRIDE_REASONS, Override
from tests.services.medicines.helpers import allergy, check, order, taking

WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
REASON = {"system": OVERRIDE_REASONS, "code": "benefit-outweighs-risk", "display": "Benefit outweighs risk"}


def _findings() -> list:  # type: ignore[type-arg]
    return check(order("Amoxicillin 500mg capsules"), allergies=[allergy("Penicillin")],
                 medicines=[taking("Methotrexate 2.5mg tablets")])


def test_a_critical_finding_blocks_signing() -> None:
    gate = sign_gate(_findings(), {}, "p1", WHEN)
    assert not gate.can_sign
    assert [f.kind for f in gate.blocked] == ["allergy"]


def test_an_override_without_a_reason_does_not_unblock() -> None:
    findings = _findings()
    gate = sign_gate(findings, {findings[0].key: Override(author="Practitioner/1")}, "p1", WHEN)
    assert not gate.can_sign


def test_an_override_with_a_reason_unblocks_and_becomes_a_detected_issue() -> None:
    findings = _findings()
    gate = sign_gate(findings, {findings[0].key: Override(REASON, "Tolerated amoxicillin in 2024", "Practitioner/1")},
                     "p1", WHEN)
    assert gate.can_sign
    [issue] = gate.detected_issues
    assert validate(issue) == []
    assert issue["code"]["coding"][0]["code"] == "ALGY"
    assert issue["severity"] == "high"
    assert issue["mitigation"][0]["action"]["coding"][0]["code"] == "benefit-outweighs-risk"
    assert "Tolerated amoxicillin" in issue["mitigation"][0]["action"]["text"]
    assert {"reference": "AllergyIntolerance/a1"} in [{"reference": i["reference"]} for i in issue["implicated"]]
    assert issue["author"] == {"reference": "Practitioner/1"}


def test_warnings_never_block_signing() -> None:
    findings = [f for f in _findings() if not f.blocks_signing]
    assert findings and sign_gate(findings, {}, "p1", WHEN).can_sign
