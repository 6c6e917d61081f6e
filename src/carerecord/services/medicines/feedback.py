"""What happened to the cards the CDS service issued (https://cds-hooks.hl7.org/2.0/#feedback):
accepted suggestions and overrides with their reasons, kept so overrides are countable.

The log holds the cards issued (by uuid, bounded) so that feedback can say which finding,
patient and order was overridden. It is in memory: the prescribing workflow records the
override durably as a DetectedIssue when the order is signed."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from carerecord.services.medicines.findings import Finding


class FeedbackError(ValueError):
    """The feedback document is not valid CDS Hooks feedback."""


@dataclass(frozen=True, slots=True)
class IssuedCard:
    service: str
    patient_id: str
    finding: Finding


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    service: str
    card: str
    outcome: str
    reason_code: str
    comment: str
    timestamp: str
    issued: IssuedCard | None


class FeedbackLog:
    """Thread-safe record of issued cards and of feedback about them."""

    def __init__(self, keep: int = 100_000) -> None:
        self._keep = keep
        self._issued: OrderedDict[str, IssuedCard] = OrderedDict()
        self.records: list[FeedbackRecord] = []
        self._lock = threading.Lock()

    def issued(self, card_uuid: str, card: IssuedCard) -> None:
        with self._lock:
            self._issued[card_uuid] = card
            while len(self._issued) > self._keep:
                self._issued.popitem(last=False)

    def record(self, service: str, body: Mapping[str, Any]) -> list[FeedbackRecord]:
        """Record a feedback POST body (``{"feedback": [...]}``); raises FeedbackError when
        it is not valid (unknown outcome, no card or timestamp, accepted without suggestions)."""
        items = body.get("feedback") if isinstance(body, Mapping) else None
        if not isinstance(items, list):
            raise FeedbackError("feedback must be an object with a 'feedback' array")
        out = []
        for item in items:
            if not isinstance(item, Mapping) or not item.get("card") or not item.get("outcomeTimestamp"):
                raise FeedbackError("each feedback needs 'card' and 'outcomeTimestamp'")
            outcome = item.get("outcome")
            if outcome not in ("accepted", "overridden"):
                raise FeedbackError("outcome must be 'accepted' or 'overridden'")
            if outcome == "accepted" and not item.get("acceptedSuggestions"):
                raise FeedbackError("an accepted outcome needs acceptedSuggestions")
            reason = item.get("overrideReason") or {}
            with self._lock:
                issued = self._issued.get(str(item["card"]))
            out.append(FeedbackRecord(service, str(item["card"]), outcome, str((reason.get("reason") or {}).get("code", "")),
                                      str(reason.get("userComment", "")), str(item["outcomeTimestamp"]), issued))
        with self._lock:
            self.records.extend(out)
        return out

    def override_counts(self) -> Counter[tuple[str, str]]:
        """Overrides by (finding kind, reason code); kind is '' for a card not issued here."""
        with self._lock:
            return Counter((r.issued.finding.kind if r.issued else "", r.reason_code)
                           for r in self.records if r.outcome == "overridden")
