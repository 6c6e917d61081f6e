"""Every SUBSETTED copy the server makes is one a write refuses (hazard H054): the guard's
redaction of a restricted patient (access/redaction.py) and ``_summary``/``_elements`` in a
search or a bulk export (fhir/subset.py) mark the copy with the very marks fhir/subsetted.py
refuses, so the two cannot drift apart."""

from __future__ import annotations

import orjson
import pytest

from carerecord.access.redaction import redact
from carerecord.errors import Unprocessable
from carerecord.fhir import subsetted
from carerecord.fhir.subset import keep_elements, mark_subsetted

PATIENT = {"resourceType": "Patient", "id": "p", "meta": {"tag": [{"system": "urn:x", "code": "y"}]},
           "address": [{"line": ["1 Hidden Lane"]}], "name": [{"family": "Full"}]}


def test_the_copies_the_server_makes_are_refused() -> None:
    """A requested subset is tagged SUBSETTED; the guard's redaction carries the security label
    REDACTED (the code system: SUBSETTED is "not suitable ... when information is removed for
    security reasons"); both are refused, each at its own place, and marked once."""
    for copy, where in ((redact(PATIENT), ["Patient.meta.security[0]"]),
                        (mark_subsetted(keep_elements(PATIENT, ["name"])), ["Patient.meta.tag[1]"]),
                        (mark_subsetted(redact(redact(PATIENT))), ["Patient.meta.tag[1]", "Patient.meta.security[0]"]),
                        (mark_subsetted(mark_subsetted(dict(PATIENT))), ["Patient.meta.tag[1]"])):
        assert subsetted.locations(copy) == where
        with pytest.raises(Unprocessable) as err:
            subsetted.refuse(copy)
        assert err.value.issues[0].code == "business-rule" and err.value.status == 422
        assert subsetted.marked(orjson.dumps(copy))
    assert redact(PATIENT)["meta"]["security"] == [{"system": subsetted.SYSTEM, "code": "REDACTED", "display": "redacted"}]
    assert subsetted.locations(PATIENT) == [] and not subsetted.marked(orjson.dumps(PATIENT))


def test_only_the_resource_and_its_contained_resources_count() -> None:
    tag = {"system": subsetted.SYSTEM, "code": subsetted.CODE}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {**PATIENT, "meta": {"tag": [tag]}}}]}
    assert subsetted.locations(bundle) == []  # a stored Bundle's entry is not a write of that copy
    report = {"resourceType": "DiagnosticReport", "contained": [{"resourceType": "Patient"}, {"resourceType": "Patient",
                                                                                          "meta": {"tag": [tag]}}]}
    assert subsetted.locations(report) == ["DiagnosticReport.contained[1].meta.tag[0]"]
    assert subsetted.locations({**PATIENT, "meta": {"tag": [{"code": subsetted.CODE}]}}) == []  # no system: not the tag
