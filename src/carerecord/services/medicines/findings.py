"""Safety findings as values: what was found, why, how severe, the evidence, the source and
what to do. Checks never raise for a clinical problem; they return findings.

Severity follows CDS Hooks card indicators (critical > warning > info) so a finding maps to a
card without translation. ``critical`` findings block signing until overridden with a reason
(see ``checker.sign_gate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Severity(IntEnum):
    """Ordered so that ``max()`` picks the most urgent."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def indicator(self) -> str:
        """The CDS Hooks card indicator for this severity."""
        return self.name.lower()

    def lowered(self) -> Severity:
        """One step less urgent (never below INFO): used when a record is low criticality
        or unconfirmed, so a doubtful record warns rather than blocks."""
        return Severity(max(self.value - 1, Severity.INFO.value))


@dataclass(frozen=True, slots=True)
class Source:
    """A citable public source for a rule (publisher, title, date, url)."""

    title: str
    publisher: str = ""
    url: str = ""
    date: str = ""

    def label(self) -> str:
        parts = [p for p in (self.publisher, self.title, self.date) if p]
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Evidence:
    """A record that the finding rests on: ``reference`` like ``AllergyIntolerance/123``
    (empty when the record has no id, e.g. an unsaved draft), ``display`` for people."""

    reference: str
    display: str


NO_SOURCE = Source("carerecord medicines checks")


@dataclass(frozen=True, slots=True)
class Finding:
    """One safety finding about one order.

    ``key`` is stable for the same problem on the same records (kind, order, evidence), so an
    override given at order-select still applies at order-sign. ``kind`` is one of
    ``allergy``, ``interaction``, ``duplicate``, ``dose``, ``renal``, ``unchecked``."""

    key: str
    kind: str
    severity: Severity
    summary: str
    detail: str
    order: Evidence
    evidence: tuple[Evidence, ...] = ()
    source: Source = NO_SOURCE
    advice: str = ""
    group: str = field(default="", compare=False)

    @property
    def blocks_signing(self) -> bool:
        return self.severity is Severity.CRITICAL


def most_severe_first(findings: list[Finding]) -> list[Finding]:
    """Findings ordered critical first, then by kind and key (a stable display order)."""
    return sorted(findings, key=lambda f: (-f.severity, f.kind, f.key))
