"""Every SUBSETTED copy the server makes is one a write refuses (hazard H054): the guard's
redaction of a restricted patient (access/redaction.py) and ``_summary``/``_elements`` in a
search or a bulk export (fhir/subset.py) mark the copy with the very tag fhir/subsetted.py
refuses, so the two cannot drift apart."""

from __future__ import annotations

import pytest

from carerecord.access.redaction import redact
from carerecord.errors import Unprocessable
from carerecord.fhir import subsetted
from carerecord.fhir.subset import keep_elements, mark_subsetted

PATIENT = {"resourceType": "Patient", "id": "p", "meta": {"tag": [{"system": "urn:x", "code": "y"}]},
           "address": [{"line": ["1 Hidden Lane"]}], "name": [{"family": "Full"}]}


def test_the_copies_the_server_makes_are_refused() -> None:
    for copy in (redact(PATIENT), mark_subsetted(keep_elements(PATIENT, ["name"])), mark_subsetted(redact(PATIENT))):
        assert subsetted.locations(copy) == ["Patient.meta.tag[1]"]
        with pytest.raises(Unprocessable) as err:
            subsetted.refuse(copy)
        assert err.value.issues[0].code == "business-rule" and err.value.status == 422
    assert subsetted.locations(PATIENT) == []


def test_only_the_resource_and_its_contained_resources_count() -> None:
    tag = {"system": subsetted.SYSTEM, "code": subsetted.CODE}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {**PATIENT, "meta": {"tag": [tag]}}}]}
    assert subsetted.locations(bundle) == []  # a stored Bundle's entry is not a write of that copy
    report = {"resourceType": "DiagnosticReport", "contained": [{"resourceType": "Patient"}, {"resourceType": "Patient",
                                                                                          "meta": {"tag": [tag]}}]}
    assert subsetted.locations(report) == ["DiagnosticReport.contained[1].meta.tag[0]"]
    assert subsetted.locations({**PATIENT, "meta": {"tag": [{"code": subsetted.CODE}]}}) == []  # no system: not the tag
