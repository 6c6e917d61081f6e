"""Overrides of safety findings, recorded as FHIR DetectedIssue resources
(http://hl7.org/fhir/R4/detectedissue.html): the finding's what, why and evidence, and the
prescriber's reason as the mitigation. Writing them (with the signed order, and audit) is the
prescribing workflow's job; this module only builds them, so they are countable later
(``DetectedIssue?patient=..&code=..``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from carerecord.services.medicines.findings import Finding, Severity

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
OVERRIDE_REASONS = "https://carerecord.org/fhir/CodeSystem/medicines-override-reason"
FINDING_KIND = "https://carerecord.org/fhir/CodeSystem/medicines-finding"
_CODES = {"allergy": ("ALGY", "Allergy Alert"), "interaction": ("DRG", "Drug Interaction Alert"),
          "duplicate": ("DUPTHPY", "Duplicate Therapy Alert"), "dose": ("DOSEH", "High Dose Alert"),
          "renal": ("DOSEH", "High Dose Alert")}
_SEVERITY = {Severity.CRITICAL: "high", Severity.WARNING: "moderate", Severity.INFO: "low"}

REASONS: tuple[tuple[str, str], ...] = (
    ("benefit-outweighs-risk", "Benefit outweighs risk; patient will be monitored"),
    ("tolerated-before", "Patient has tolerated this medicine before"),
    ("allergy-record-wrong", "Allergy record is inaccurate; record to be corrected"),
    ("specialist-advice", "On specialist advice"),
    ("dose-intended", "Dose is intended and checked"),
    ("other-stopped", "Other medicine is being stopped"),
)
"""The override reasons offered on cards (code, display)."""


@dataclass(frozen=True, slots=True)
class Override:
    """A prescriber's decision to go ahead despite a finding: a coded reason (a Coding) and
    or a free-text comment, by ``author`` (a reference such as ``Practitioner/1``)."""

    reason: Mapping[str, Any] | None = None
    comment: str = ""
    author: str = ""

    @property
    def has_reason(self) -> bool:
        return bool((self.reason and (self.reason.get("code") or self.reason.get("display"))) or self.comment.strip())


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def from_override(finding: Finding, override: Override, patient_id: str, when: datetime) -> dict[str, Any]:
    """A DetectedIssue (status final) recording that ``finding`` was overridden."""
    code, display = _CODES.get(finding.kind, ("ISSUE", "Detected Issue"))
    implicated = [{"reference": e.reference, "display": e.display[:250]}
                  for e in (finding.order, *finding.evidence) if e.reference]
    action_text = "; ".join(x for x in ((override.reason or {}).get("display", ""), override.comment) if x)
    action: dict[str, Any] = {"text": action_text or "Overridden"}
    if override.reason and override.reason.get("code"):
        action["coding"] = [{k: v for k, v in override.reason.items() if k in ("system", "code", "display")}]
    issue: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "status": "final",
        "code": {"coding": [{"system": ACT_CODE, "code": code, "display": display},
                            {"system": FINDING_KIND, "code": finding.kind}], "text": finding.summary},
        "severity": _SEVERITY[finding.severity],
        "patient": {"reference": f"Patient/{patient_id}"},
        "identifiedDateTime": _instant(when),
        "detail": f"{finding.detail} Advice: {finding.advice}".strip(),
        "mitigation": [{"action": action, "date": _instant(when)}],
    }
    if implicated:
        issue["implicated"] = implicated
    if finding.source.url:
        issue["reference"] = finding.source.url
    if override.author:
        issue["author"] = {"reference": override.author}
        issue["mitigation"][0]["author"] = {"reference": override.author}
    return issue
