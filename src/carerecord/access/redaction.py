"""Removing what a restricted (S-flagged) patient's record must not show outside their care.

A patient with a PDS "restricted" flag (``meta.security`` v3 Confidentiality ``R`` or ``V``, see
:mod:`carerecord.access.policy`) is, typically, someone hiding from a person who might harm
them. Their address, telecom and GP (which gives away where they live) are removed for anyone but
themselves, their proxies, trusted systems and their own care organisations (those with a
legitimate relationship, not a claim or break-glass), and the resource is marked SUBSETTED
(http://hl7.org/fhir/R4/v3/ObservationValue/cs.html) so no one takes it for the whole record.
The narrative goes too, since it is generated from the same fields.
"""

from __future__ import annotations

from typing import Any

from carerecord.access.policy import OBSERVATION_VALUE, RESTRICTED_PATIENT, labels

SUBSETTED = {"system": OBSERVATION_VALUE, "code": "SUBSETTED", "display": "subsetted"}
_PATIENT_FIELDS = ("address", "telecom", "generalPractitioner", "text")
_CONTACT_FIELDS = ("address", "telecom")


def restricted(resource: dict[str, Any]) -> bool:
    """Whether ``resource`` is an S-flagged Patient."""
    return resource.get("resourceType") == "Patient" and bool(labels(resource) & RESTRICTED_PATIENT)


def redact(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy of an S-flagged Patient without address, telecom, GP, contact addresses and
    narrative, marked SUBSETTED."""
    out = {k: v for k, v in resource.items() if k not in _PATIENT_FIELDS}
    if isinstance(out.get("contact"), list):
        out["contact"] = [{k: v for k, v in c.items() if k not in _CONTACT_FIELDS}
                          for c in out["contact"] if isinstance(c, dict)]
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    out["meta"] = meta
    return out
