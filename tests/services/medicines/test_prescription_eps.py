"""The prescriptions carerecord issues carry the essentials of an NHS EPS prescription, as the
EPS examples in ../shared/data/nhs-eps show them (services/medicines/prescription.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from carerecord.fhir.validation import validate
from carerecord.services.medicines import repeats
from carerecord.services.medicines.prescription import check_character, prescription_bundle
from carerecord.store.repository import Repository
from tests.conftest import shared_data
from tests.services.medicines.test_repeats_workflow import authorisation
from tests.services.medicines.world import GP, KB, NOW, RESOLVER, save, step

REGISTRATIONS = {"https://fhir.hl7.org.uk/Id/gmc-number", "https://fhir.hl7.org.uk/Id/nmc-number",
                 "https://fhir.hl7.org.uk/Id/gphc-number", "https://fhir.hl7.org.uk/Id/hcpc-number",
                 "https://fhir.hl7.org.uk/Id/din-number"}
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
EPS_EXAMPLES = ("spec/prescribing/prescription-order/repeat-primary-example-req.json",
                "primary-care/acute-and-repeat-prescribing/1-Prepare-Request-200_OK.json")


def essentials(bundle: dict[str, Any]) -> dict[str, bool]:
    """Which EPS essentials a prescription Bundle carries (first MedicationRequest)."""
    resources = [e["resource"] for e in bundle.get("entry", [])]
    order = next(r for r in resources if r["resourceType"] == "MedicationRequest")
    codings = order.get("medicationCodeableConcept", {}).get("coding", [])
    quantity = order.get("dispenseRequest", {}).get("quantity", {})
    group = order.get("groupIdentifier", {}).get("value", "")
    return {
        "dm+d coded medicine": any(c.get("system") == "http://snomed.info/sct" and str(c.get("code", "")).isdigit()
                                   and c.get("display") for c in codings),
        "dosage text": bool(order.get("dosageInstruction", [{}])[0].get("text")),
        "quantity with unit": isinstance(quantity.get("value"), int | float) and bool(quantity.get("unit")),
        "prescriber registration": any(i.get("system") in REGISTRATIONS for r in resources
                                       if r["resourceType"] == "Practitioner" for i in r.get("identifier", [])),
        "organisation ODS code": any(i.get("system") == ODS for r in resources if r["resourceType"] == "Organization"
                                     for i in r.get("identifier", [])),
        "prescription id with check character": bool(re.fullmatch(r"[0-9A-F]{6}-[A-Z0-9]{6}-[0-9A-F]{5}[0-9A-Z+]", group))
        and check_character(group[:-1]) == group[-1],
        "line item id": any(i.get("system") == "https://fhir.nhs.uk/Id/prescription-order-item-number"
                            for i in order.get("identifier", [])),
        "requester": bool(order.get("requester")),
    }


@pytest.mark.parametrize("example", EPS_EXAMPLES)
def test_the_eps_examples_have_every_essential(example: str) -> None:
    """The yardstick itself: every essential is present in the NHS's own examples."""
    bundle = json.loads(shared_data("nhs-eps", *example.split("/")).read_text())
    assert all(essentials(bundle).values()), essentials(bundle)


def test_an_issued_repeat_carries_the_eps_essentials(community: Repository) -> None:
    auth = save(community, authorisation())
    issued = step(community, lambda r: repeats.issue(r, auth["id"], GP, {}, NOW, kb=KB, resolver=RESOLVER)).of_type("MedicationRequest")[0]
    bundle = step(community, lambda r: prescription_bundle(r, issued["id"], "http://testserver/fhir"))
    assert essentials(bundle) == dict.fromkeys(essentials(bundle), True)
    assert validate(bundle) == []
    order = bundle["entry"][0]["resource"]
    assert order["dispenseRequest"]["performer"]["identifier"] == {"system": ODS, "value": "FZ001"}
    assert [r["resource"]["resourceType"] for r in bundle["entry"]] == [
        "MedicationRequest", "Patient", "PractitionerRole", "Practitioner", "Organization", "Organization"]
