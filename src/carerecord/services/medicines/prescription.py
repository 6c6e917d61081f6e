"""Issued community prescriptions, shaped like the NHS Electronic Prescription Service's
(the examples in ../shared/data/nhs-eps): one MedicationRequest ``intent=instance-order`` per
issue, ``basedOn`` the authorisation it was issued from, with the EPS essentials:

- the medicine as a dm+d code in the SNOMED CT system (:func:`eps_medicine`) with its display, the dosage text (and the
  structured timing), the quantity with its unit and the expected supply duration;
- the prescription and line-item identifiers (``prescription-order-number``, with the EPS
  check character, as ``groupIdentifier``; ``prescription-order-item-number`` as identifier);
- the prescriber (``requester``: a PractitionerRole whose Practitioner carries the GMC/NMC/GPhC
  number) and their organisation's ODS code, gathered by :func:`prescription_bundle`;
- ``dispenseRequest.performer``: the patient's nominated pharmacy (UK Core's
  ``Extension-UKCore-NominatedPharmacy`` on the Patient), by reference and ODS code;
- for repeats, UK Core's ``Extension-UKCore-MedicationRepeatInformation`` (issue number and the
  authorisation's review date, ``authorisationExpiryDate``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from carerecord.services.medicines.records import Records, reference_id
from carerecord.services.medicines.tasks import instant

REPEAT_INFO = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-MedicationRepeatInformation"
NOMINATED_PHARMACY = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NominatedPharmacy"
ORDER_NUMBER = "https://fhir.nhs.uk/Id/prescription-order-number"
ITEM_NUMBER = "https://fhir.nhs.uk/Id/prescription-order-item-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
DMD = "https://dmd.nhs.uk"
SNOMED = "http://snomed.info/sct"
_MOD37 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ+"


def check_character(body: str) -> str:
    """The ISO/IEC 7064 MOD 37-2 check character EPS puts at the end of a prescription order
    number (computed over the characters without the dashes)."""
    total = 0
    for ch in body.replace("-", ""):
        total = (total + _MOD37.index(ch)) * 2 % 37
    return _MOD37[(38 - total) % 37]


def order_number(ods: str, token: str) -> str:
    """An EPS-format short-form prescription id: 6 hex characters, the prescriber's ODS code
    padded to 6, 5 hex characters and the check character (e.g. ``24F5DA-A83008-7EFE6Z``)."""
    head, tail = token[:6].upper(), token[6:11].upper()
    body = f"{head}-{ods.upper()[-6:].rjust(6, '0')}-{tail}"
    return body + check_character(body)


def ods_code(organization: Mapping[str, Any] | None) -> str:
    """The ODS code of an Organization ('' if it has none)."""
    return next((str(i.get("value")) for i in (organization or {}).get("identifier", ()) if i.get("system") == ODS), "")


def eps_medicine(concept: Mapping[str, Any]) -> dict[str, Any]:
    """``concept`` with each dm+d coding (UK Core's ``https://dmd.nhs.uk`` system) also given in
    the SNOMED CT system, as EPS sends dm+d codes (they are SNOMED CT identifiers)."""
    codings = [dict(c) for c in concept.get("coding", ())]
    have = {(c.get("system"), c.get("code")) for c in codings}
    for c in list(codings):
        if c.get("system") == DMD and (SNOMED, c.get("code")) not in have:
            codings.insert(0, {"system": SNOMED, "code": c.get("code"), "display": c.get("display", "")})
    out = dict(concept)
    if codings:
        out["coding"] = [{k: v for k, v in c.items() if v} for c in codings]
    return out


def nominated_pharmacy(patient: Mapping[str, Any]) -> str | None:
    """The Organization id of the patient's nominated pharmacy, if any."""
    for ext in patient.get("extension", ()):
        if ext.get("url") == NOMINATED_PHARMACY:
            return reference_id(ext.get("valueReference"), "Organization")
    return None


def repeat_information(order: Mapping[str, Any]) -> dict[str, Any]:
    """The UK Core repeat information of an order: {"numberOfPrescriptionsIssued": int,
    "authorisationExpiryDate": str} (either may be missing)."""
    for ext in order.get("extension", ()):
        if ext.get("url") == REPEAT_INFO:
            return {e.get("url"): e.get("valueUnsignedInt", e.get("valueDateTime")) for e in ext.get("extension", ())}
    return {}


def with_repeat_information(order: dict[str, Any], issued: int, review: str | None) -> None:
    """Set the UK Core repeat information of ``order`` (issue count and review date)."""
    parts: list[dict[str, Any]] = [{"url": "numberOfPrescriptionsIssued", "valueUnsignedInt": issued}]
    if review:
        parts.append({"url": "authorisationExpiryDate", "valueDateTime": review})
    order["extension"] = [e for e in order.get("extension", []) if e.get("url") != REPEAT_INFO]
    order["extension"].append({"url": REPEAT_INFO, "extension": parts})


def new_issue(records: Records, authorisation: Mapping[str, Any], prescriber: str | None, number: int,
              now: datetime) -> dict[str, Any]:
    """The next issue (unsaved) of ``authorisation``: issue ``number`` (1 is the first), by
    ``prescriber``, routed to the patient's nominated pharmacy (else the authorisation's)."""
    pid = reference_id(authorisation.get("subject"), "Patient") or ""
    patient = records.get("Patient", pid)
    pharmacy = nominated_pharmacy(patient) or reference_id(
        (authorisation.get("dispenseRequest") or {}).get("performer"), "Organization")
    requester = prescriber or (authorisation.get("requester") or {}).get("reference")
    token = uuid.uuid4().hex
    org = _organisation_of(records, requester)
    issue: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": ITEM_NUMBER, "value": str(uuid.uuid4())}],
        "status": "active", "intent": "instance-order",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                                  "code": "community", "display": "Community"}]}]}
    if "medicationReference" in authorisation:
        issue["medicationReference"] = authorisation["medicationReference"]
    elif "medicationCodeableConcept" in authorisation:
        issue["medicationCodeableConcept"] = eps_medicine(authorisation["medicationCodeableConcept"])
    issue["subject"] = {"reference": f"Patient/{pid}"}
    issue["authoredOn"] = instant(now)
    if requester:
        issue["requester"] = {"reference": requester}
    issue["basedOn"] = [{"reference": f"MedicationRequest/{authorisation['id']}"}]
    issue["groupIdentifier"] = {"system": ORDER_NUMBER, "value": order_number(ods_code(org) or "000000", token)}
    if "courseOfTherapyType" in authorisation:
        issue["courseOfTherapyType"] = authorisation["courseOfTherapyType"]
    if "dosageInstruction" in authorisation:
        issue["dosageInstruction"] = authorisation["dosageInstruction"]
    dispense = {k: v for k, v in (authorisation.get("dispenseRequest") or {}).items()
                if k in ("quantity", "expectedSupplyDuration")}
    dispense["validityPeriod"] = {"start": now.date().isoformat()}
    if pharmacy:
        chosen = records.read("Organization", pharmacy)
        dispense["performer"] = {"reference": f"Organization/{pharmacy}"}
        if ods_code(chosen):
            dispense["performer"]["identifier"] = {"system": ODS, "value": ods_code(chosen)}
    issue["dispenseRequest"] = dispense
    review = repeat_information(authorisation).get("authorisationExpiryDate")
    if _continuous(authorisation):
        with_repeat_information(issue, number, review)
    return issue


def _continuous(order: Mapping[str, Any]) -> bool:
    return any(c.get("code") in ("continuous", "seasonal")
               for c in (order.get("courseOfTherapyType") or {}).get("coding", ()))


def _organisation_of(records: Records, requester: str | None) -> dict[str, Any] | None:
    rid = reference_id({"reference": requester}, "PractitionerRole") if requester else None
    role = records.read("PractitionerRole", rid) if rid else None
    oid = reference_id((role or {}).get("organization"), "Organization")
    return records.read("Organization", oid) if oid else None


def prescription_bundle(records: Records, issue_id: str, base: str = "") -> dict[str, Any]:
    """The issued prescription with everything a dispenser needs, as a collection Bundle in
    EPS order: the MedicationRequest, the Patient, the prescriber's PractitionerRole and
    Practitioner, their Organization, and the pharmacy it is routed to. ``base``: this
    server's FHIR base URL, for absolute ``fullUrl`` values."""
    issue = records.get("MedicationRequest", issue_id)
    found: list[dict[str, Any]] = [issue]
    pid = reference_id(issue.get("subject"), "Patient")
    if pid:
        found.append(records.get("Patient", pid))
    requester = (issue.get("requester") or {}).get("reference")
    rid = reference_id({"reference": requester}, "PractitionerRole") if requester else None
    role = records.read("PractitionerRole", rid) if rid else None
    if role:
        found.append(role)
        prac = reference_id(role.get("practitioner"), "Practitioner")
        org = reference_id(role.get("organization"), "Organization")
        found += [r for r in (records.read("Practitioner", prac) if prac else None,
                              records.read("Organization", org) if org else None) if r]
    pharmacy = reference_id((issue.get("dispenseRequest") or {}).get("performer"), "Organization")
    if pharmacy and (chosen := records.read("Organization", pharmacy)):
        found.append(chosen)
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"{base.rstrip('/')}/{r['resourceType']}/{r['id']}".lstrip("/"), "resource": r}
                      for r in found]}
