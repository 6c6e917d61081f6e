"""CDS Hooks cards from findings (https://cds-hooks.hl7.org/2.0/#card-attributes).

One card per finding: ``summary`` (under 140 characters), ``detail`` in Markdown (why, the
evidence, what to do, the source), ``indicator`` from the severity, ``source`` with the cited
publication (and a ``topic`` naming the kind of check), ``overrideReasons`` for critical and
warning cards, and, where the order can be dropped, a suggestion to delete it."""

from __future__ import annotations

import uuid
from typing import Any

from carerecord.services.medicines.detected_issue import FINDING_KIND, OVERRIDE_REASONS, REASONS
from carerecord.services.medicines.findings import Finding, Severity

SOURCE_LABEL = "carerecord medicines safety checks"


def _detail(f: Finding) -> str:
    lines = [f.detail]
    if f.evidence:
        lines.append("**Evidence:** " + "; ".join(
            f"{e.display} ({e.reference})" if e.reference else e.display for e in f.evidence))
    lines.append(f"**Order:** {f.order.display}" + (f" ({f.order.reference})" if f.order.reference else ""))
    if f.advice:
        lines.append(f"**What to do:** {f.advice}")
    lines.append(f"**Source:** {f.source.label()}" + (f" <{f.source.url}>" if f.source.url else ""))
    return "\n\n".join(lines)


def card(f: Finding) -> dict[str, Any]:
    """The CDS Hooks card for one finding (a fresh uuid each time)."""
    source: dict[str, Any] = {"label": f"{SOURCE_LABEL}: {f.source.label()}"[:200],
                              "topic": {"system": FINDING_KIND, "code": f.kind, "display": f.kind}}
    if f.source.url:
        source["url"] = f.source.url
    out: dict[str, Any] = {"uuid": str(uuid.uuid4()), "summary": f.summary[:139], "indicator": f.severity.indicator,
                           "detail": _detail(f), "source": source}
    if f.severity >= Severity.WARNING and f.kind != "unchecked":
        out["overrideReasons"] = [{"system": OVERRIDE_REASONS, "code": c, "display": d} for c, d in REASONS]
    if f.kind in ("allergy", "interaction", "duplicate") and f.order.reference:
        out["suggestions"] = [{"label": f"Remove the order for {f.order.display}"[:120], "uuid": str(uuid.uuid4()),
                               "isRecommended": f.severity is Severity.CRITICAL,
                               "actions": [{"type": "delete", "description": f"Remove {f.order.display}",
                                            "resourceId": f.order.reference}]}]
        out["selectionBehavior"] = "at-most-one"
    return out
