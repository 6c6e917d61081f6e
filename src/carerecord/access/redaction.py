"""Removing what a restricted (S-flagged) patient's record must not show outside their care.

A patient with a PDS "restricted" flag (``meta.security`` v3 Confidentiality ``R`` or ``V``, see
:mod:`carerecord.access.policy`) is, typically, someone hiding from a person who might harm
them. Where they live, how to reach them and who their GP is (which gives away where they
live) must not reach anyone but themselves, their proxies, trusted systems and their own care
organisations (those with a legitimate relationship, not a claim or break-glass). Those
details are not only in the Patient resource, so every resource of such a patient's
compartment is redacted for everyone else (:func:`redact`):

- every Address and ContactPoint anywhere in it (``address``, ``telecom``, ``valueAddress``,
  ``valueContactPoint``: a RelatedPerson's household address and phone, a contact's, an
  extension's), and every narrative (``text`` with a ``div``, of the resource and of contained
  ones, since narratives are generated from those fields);
- every reference to a place or to who provides care (Organization, Location, Practitioner,
  PractitionerRole, HealthcareService, Endpoint: an Encounter's locations and service
  provider, a prescriber's role, a care home's episode), masked with the data-absent-reason
  ``masked``, except references to the caller's own organisation, role and person, which tell
  them nothing;
- of a Patient also ``generalPractitioner``, ``managingOrganization`` and the contacts'
  organisations.

The resource carries the security label REDACTED (v3-ObservationValue: "filtered ... to remove
any portion ... not authorized to be accessed"; SUBSETTED is for a requested subset and the code
system says not for security) so no one takes it for the whole record, and so that no write takes it back: a redacted copy PUT back (by
a clinician who broke the glass) would replace the patient's address, GP and the rest with
nothing, so every write path refuses it with 422 (:mod:`carerecord.fhir.subsetted`, H054). Free-text notes (Annotation, CodeableConcept text) are kept: they
are clinical content an emergency needs, and the record's authors are asked not to write
addresses into them (docs/clinical-safety/hazard-log.md).

The guard makes sure nothing redacted comes back another way: ``_include`` follows only
references left in the redacted resource, ``_revinclude``, search parameters, chains and
``_has`` over these fields (:data:`masked_param`) do not match such a patient's resources.
"""

from __future__ import annotations

from typing import Any

from carerecord.access.policy import RESTRICTED_PATIENT, labels
from carerecord.fhir import subsetted
from carerecord.fhir.search_params import SearchParam

DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
MASKED_REFERENCE = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
# Types whose resources say where a person is or who cares for them.
MASKED_TYPES = frozenset({"Organization", "Location", "Practitioner", "PractitionerRole", "HealthcareService",
                          "Endpoint"})
_CONTACT_KEYS = frozenset({"address", "telecom", "valueAddress", "valueContactPoint"})
_PATIENT_FIELDS = ("generalPractitioner", "managingOrganization")
_TEXT_PARAMS = frozenset({"_text", "_content"})


def restricted(resource: dict[str, Any]) -> bool:
    """Whether ``resource`` is an S-flagged Patient."""
    return resource.get("resourceType") == "Patient" and bool(labels(resource) & RESTRICTED_PATIENT)


def masked_param(param: SearchParam) -> bool:
    """Whether a search parameter reads what :func:`redact` removes (an address, a telecom, the
    narrative, a reference to a place or carer), so that it must not match a redacted
    patient's resources: a search on it would tell what the redacted resource hides."""
    if param.code in _TEXT_PARAMS:
        return True
    if param.type == "reference":
        return bool(set(param.targets) & MASKED_TYPES) or not param.targets
    expression = param.expression or ""
    return "address" in expression or "telecom" in expression


def redact(resource: dict[str, Any], keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A copy of ``resource`` (of a restricted patient's compartment) without addresses,
    telecoms, narratives and references to places and carers (but those in ``keep``, e.g.
    ``Organization/x``: the caller's own), marked SUBSETTED."""
    out: dict[str, Any] = _scrub(resource, keep)
    if out.get("resourceType") == "Patient":
        for field in _PATIENT_FIELDS:
            out.pop(field, None)
        if isinstance(out.get("contact"), list):
            out["contact"] = [{k: v for k, v in c.items() if k != "organization"}
                              for c in out["contact"] if isinstance(c, dict)]
    return subsetted.mark(out, redacted=True)  # never written back (fhir/subsetted.py, H054)


def _scrub(node: Any, keep: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_scrub(x, keep) for x in node]
    if not isinstance(node, dict):
        return node
    if _names_carer_or_place(node) and node.get("reference") not in keep:
        return dict(MASKED_REFERENCE)
    out = {}
    for k, v in node.items():
        if k in _CONTACT_KEYS or (k == "text" and isinstance(v, dict) and "div" in v):
            continue
        out[k] = _scrub(v, keep)
    return out


def _names_carer_or_place(node: dict[str, Any]) -> bool:
    """Whether ``node`` is a Reference to a :data:`MASKED_TYPES` resource: by a relative or
    absolute URL (``Organization/x``, ``https://other/fhir/Location/y``), or logically by
    ``type`` with an identifier or display."""
    ref = node.get("reference")
    if isinstance(ref, str) and any(seg in MASKED_TYPES for seg in ref.split("/")[:-1]):
        return True
    kind = node.get("type")
    return isinstance(kind, str) and kind.rsplit("/", 1)[-1] in MASKED_TYPES and (
        "identifier" in node or "display" in node or "reference" in node)
