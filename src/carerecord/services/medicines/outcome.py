"""What a medicines workflow step did, as a value: its status, the resources it wrote, and the
findings it raised (shown to the person acting, whether or not they stopped the step).

A step that a critical finding blocks writes nothing and says ``blocked``; the findings carry
stable keys, so the same step sent again with an override (a reason) for each goes ahead and
the overrides are written as DetectedIssues (``detected_issue.from_override``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from carerecord.services.medicines.checker import Gate, sign_gate
from carerecord.services.medicines.detected_issue import Override
from carerecord.services.medicines.findings import Finding, most_severe_first

BLOCKED = "blocked"


@dataclass(slots=True)
class Outcome:
    """``status`` names what happened (e.g. ``signed``, ``blocked``, ``given``, ``issued``);
    ``resources`` are the resources written (final versions), ``findings`` every finding raised
    (most severe first), ``blocked`` the critical ones that stopped the step."""

    status: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    blocked: list[Finding] = field(default_factory=list)

    def of_type(self, res_type: str) -> list[dict[str, Any]]:
        """The written resources of ``res_type``."""
        return [r for r in self.resources if r.get("resourceType") == res_type]


def gate(findings: Sequence[Finding], overrides: Mapping[str, Override], patient_id: str,
         when: datetime, unoverridable: frozenset[str] = frozenset()) -> Gate:
    """``checker.sign_gate``, except that findings of a kind in ``unoverridable`` block even when
    overridden (a wrong-patient scan must never be waved through)."""
    result = sign_gate([f for f in findings if f.kind not in unoverridable], overrides, patient_id, when)
    result.blocked += [f for f in findings if f.kind in unoverridable]
    return result


def blocked(findings: Sequence[Finding], stopping: Sequence[Finding]) -> Outcome:
    """The outcome of a step that ``stopping`` findings blocked: nothing written."""
    return Outcome(BLOCKED, [], most_severe_first(list(findings)), most_severe_first(list(stopping)))
