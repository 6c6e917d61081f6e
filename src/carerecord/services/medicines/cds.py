"""The medicines checks as CDS Hooks 2.0 services (https://cds-hooks.hl7.org/2.0/), without
HTTP: discovery, a call to ``order-select`` or ``order-sign``, and feedback.

- ``order-select`` checks the newly selected orders (``context.selections``) against the
  patient's record and every other draft order of the session;
- ``order-sign`` checks every draft order the same way, just before signing.

Patient data comes from the request's ``prefetch`` when the client sent it (a key present
with ``null`` means "no data"), and otherwise from ``fetch``: a function that answers a
prefetch template's relative FHIR URL from the local store (``store_fetch.StoreFetcher``).
The ``fhirServer`` in a request is never contacted. Without prefetch and without a store,
the call fails with 412 as the specification requires. Prefetched resources about another
patient are refused (400) rather than checked."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

from carerecord.services.medicines.cards import card
from carerecord.services.medicines.checker import check_order
from carerecord.services.medicines.feedback import FeedbackLog, IssuedCard
from carerecord.services.medicines.knowledge import KnowledgeBase
from carerecord.services.medicines.order import order_from
from carerecord.services.medicines.patient import EGFR_CODES, build_context
from carerecord.services.medicines.resolve import Resolver

Fetch = Callable[[str], Mapping[str, Any] | None]

_EGFR = ",".join(f"{s}|{c}" for s, c in sorted(EGFR_CODES))
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold"
                   "&_include=MedicationRequest:medication",
    "statements": "MedicationStatement?patient={{context.patientId}}&status=active,intended",
    "egfr": f"Observation?patient={{{{context.patientId}}}}&code={_EGFR}&_sort=-date&_count=1",
}
REQUIRED = ("patient", "allergies", "medications")
SERVICES = {
    "carerecord-medicines-select": {
        "hook": "order-select", "title": "Medicines safety checks (on selection)",
        "description": "Checks newly selected medication orders against the patient's allergies, current "
                       "medicines, the other draft orders, adult maximum doses and renal limits.",
    },
    "carerecord-medicines-sign": {
        "hook": "order-sign", "title": "Medicines safety checks (before signing)",
        "description": "Checks every draft medication order before signing; critical findings must be "
                       "overridden with a reason.",
        "usageRequirements": "Critical cards block signing in carerecord's own prescribing workflow until "
                             "overridden with a reason.",
    },
}
_TOKEN = re.compile(r"\{\{context\.(\w+)\}\}")


class CdsError(Exception):
    """A call the service cannot answer; ``status`` is the HTTP status (400, 404, 412)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fill(template: str, context: Mapping[str, Any]) -> str:
    """A prefetch template with its ``{{context.x}}`` tokens replaced (URL-encoded)."""
    def value(m: re.Match[str]) -> str:
        v = context.get(m.group(1))
        if not isinstance(v, str | int):
            raise CdsError(400, f"context.{m.group(1)} is needed and must be a string")
        return quote(str(v), safe="")
    return _TOKEN.sub(value, template)


def _resources(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        return []
    if value.get("resourceType") == "Bundle":
        return [e["resource"] for e in value.get("entry", ()) if isinstance(e, Mapping) and "resource" in e]
    return [value]


def _about(resource: Mapping[str, Any]) -> str | None:
    for element in ("patient", "subject"):
        target = (resource.get(element) or {}).get("reference")
        if target:
            return str(target).split("/_history")[0].rsplit("Patient/", 1)[-1] if "Patient/" in target else ""
    return None


class CdsService:
    """The CDS Hooks services over a knowledge base. ``fetch`` answers prefetch templates
    from the local store (None: prefetch only); ``today`` is injectable for tests."""

    def __init__(self, kb: KnowledgeBase, resolver: Resolver | None = None, fetch: Fetch | None = None,
                 feedback: FeedbackLog | None = None, today: Callable[[], date] = date.today) -> None:
        self.kb = kb
        self.resolver = resolver or Resolver(kb)
        self.fetch = fetch
        self.feedback_log = feedback or FeedbackLog()
        self.today = today

    def discovery(self) -> dict[str, Any]:
        """The discovery document (GET /cds-services)."""
        return {"services": [{"id": sid, **s, "prefetch": dict(PREFETCH)} for sid, s in SERVICES.items()]}

    def needs_fetch(self, body: Mapping[str, Any]) -> bool:
        prefetch = body.get("prefetch") if isinstance(body, Mapping) else None
        return not isinstance(prefetch, Mapping) or any(k not in prefetch for k in PREFETCH)

    def _data(self, body: Mapping[str, Any], context: Mapping[str, Any], fetch: Fetch | None) -> dict[str, Any]:
        prefetch = body.get("prefetch") or {}
        if not isinstance(prefetch, Mapping):
            raise CdsError(400, "prefetch must be an object")
        data: dict[str, Any] = {}
        for key, template in PREFETCH.items():
            given = prefetch.get(key, ...)
            if given is not ... and not (isinstance(given, Mapping) and given.get("resourceType") == "OperationOutcome"):
                data[key] = given
            elif fetch is not None:
                data[key] = fetch(fill(template, context))
            elif key in REQUIRED:
                raise CdsError(412, f"prefetch '{key}' is missing and this service has no other access to it")
        return data

    def call(self, service_id: str, body: Any, fetch: Fetch | None = None) -> dict[str, Any]:
        """Answer a hook call: ``{"cards": [...]}``. Raises CdsError. ``fetch`` replaces the
        service's own for this call (the API passes one that checks the caller's scopes)."""
        service = SERVICES.get(service_id)
        if service is None:
            raise CdsError(404, f"There is no CDS service '{service_id}'")
        if not isinstance(body, Mapping) or not isinstance(body.get("context"), Mapping):
            raise CdsError(400, "The request must be a JSON object with a 'context' object")
        if body.get("hook") != service["hook"]:
            raise CdsError(400, f"Service '{service_id}' answers the '{service['hook']}' hook")
        if not isinstance(body.get("hookInstance"), str):
            raise CdsError(400, "hookInstance is required")
        context = body["context"]
        pid = context.get("patientId")
        drafts = context.get("draftOrders")
        if not isinstance(pid, str) or not isinstance(drafts, Mapping):
            raise CdsError(400, "context.patientId and context.draftOrders are required")
        data = self._data(body, context, fetch or self.fetch)
        patient = next(iter(_resources(data.get("patient"))), None)
        if patient is not None and patient.get("resourceType") == "Patient" and patient.get("id") not in (None, pid):
            raise CdsError(400, "prefetch 'patient' is a different patient from context.patientId")
        records = {k: _resources(data.get(k)) for k in ("allergies", "medications", "statements", "egfr")}
        for key, items in records.items():
            if any(_about(r) not in (None, pid) for r in items if r.get("resourceType") != "Medication"):
                raise CdsError(400, f"prefetch '{key}' holds records of another patient")
        draft_resources = _resources(drafts)
        meds = {f"Medication/{r['id']}": r for r in records["medications"] + draft_resources
                if r.get("resourceType") == "Medication" and r.get("id")}
        ctx = build_context(patient, pid, records["allergies"], records["medications"] + records["statements"],
                            records["egfr"], self.resolver, self.today(), meds)
        orders = [order_from(r, self.resolver, meds) for r in draft_resources if r.get("resourceType") == "MedicationRequest"]
        targets = orders
        if service["hook"] == "order-select":
            selections = context.get("selections")
            if not isinstance(selections, list):
                raise CdsError(400, "context.selections is required for order-select")
            chosen = set(map(str, selections))
            targets = [o for o in orders if o.reference in chosen]
        cards = []
        for order in targets:
            for finding in check_order(order, ctx, self.kb, self.resolver, orders):
                c = card(finding)
                self.feedback_log.issued(c["uuid"], IssuedCard(service_id, pid, finding))
                cards.append(c)
        return {"cards": cards}

    def feedback(self, service_id: str, body: Any) -> None:
        """Record feedback (POST /cds-services/{id}/feedback)."""
        if service_id not in SERVICES:
            raise CdsError(404, f"There is no CDS service '{service_id}'")
        from carerecord.services.medicines.feedback import FeedbackError

        try:
            self.feedback_log.record(service_id, body)
        except FeedbackError as e:
            raise CdsError(400, str(e)) from e
