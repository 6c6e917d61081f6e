"""Tests of carerecord.fhir.patch: JSON Patch (RFC 6902) and FHIRPath Patch
(http://hl7.org/fhir/R4/fhirpatch.html)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carerecord.errors import Invalid, Unprocessable
from carerecord.fhir.patch import apply_fhirpath_patch, apply_json_patch

MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "3", "lastUpdated": "2024-01-01T00:00:00Z"},
        "active": True,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"},
                       {"system": "http://example.org/mrn", "value": "MRN1"}],
        "name": [{"use": "official", "family": "Smith", "given": ["Jane", "Ann"]}],
        "telecom": [{"system": "phone", "value": "01234 567890"}],
        "gender": "female",
        "birthDate": "1970-03-01",
        "_birthDate": {"extension": [{"url": "http://example.org/time", "valueDateTime": "1970-03-01T10:00:00Z"}]},
        "deceasedBoolean": False,
        "address": [{"line": ["1 High St"], "city": "Leeds", "postalCode": "LS1 1AA"}],
        "maritalStatus": {"coding": [{"system": MARITAL, "code": "M"}, {"system": "http://example.org", "code": "wed"}]},
    }


def op(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; `value` is given as the part's body (e.g. {"valueDate": ...})."""
    out: list[dict[str, Any]] = [{"name": "type", "valueCode": type_}, {"name": "path", "valueString": path}]
    for name, v in parts.items():
        if name == "value":
            out.append({"name": "value", **v})
        elif isinstance(v, int):
            out.append({"name": name, "valueInteger": v})
        else:
            out.append({"name": name, "valueString": v})
    return {"name": "operation", "part": out}


def fhirpath_patch(resource: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, {"resourceType": "Parameters", "parameter": list(ops)})


# ---- FHIRPath Patch: the five operations -----------------------------------------------------

def test_fhirpath_patch_adds_birthdate_to_patient_as_in_the_spec() -> None:
    before = {"resourceType": "Patient", "id": "p1"}
    after = fhirpath_patch(before, op("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"}))
    assert after == {"resourceType": "Patient", "id": "p1", "birthDate": "1930-01-01"}


def test_fhirpath_patch_replaces_patient_birthdate() -> None:
    after = fhirpath_patch(patient(), op("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"}))
    assert after["birthDate"] == "1930-01-01"


def test_fhirpath_patch_deletes_patient_birthdate_with_its_extensions() -> None:
    after = fhirpath_patch(patient(), op("delete", "Patient.birthDate"))
    assert "birthDate" not in after and "_birthDate" not in after


def test_fhirpath_patch_delete_of_nothing_is_a_no_op() -> None:
    assert fhirpath_patch(patient(), op("delete", "Patient.photo")) == patient()


def test_fhirpath_patch_inserts_identifier_at_index_zero() -> None:
    new = {"system": "http://example.org/other", "value": "X9"}
    after = fhirpath_patch(patient(), op("insert", "Patient.identifier", index=0, value={"valueIdentifier": new}))
    assert after["identifier"] == [new, *patient()["identifier"]]


def test_fhirpath_patch_insert_at_index_zero_creates_a_missing_list() -> None:
    after = fhirpath_patch(patient(), op("insert", "Patient.communication", index=0,
                                         value={"part": [{"name": "preferred", "valueBoolean": True}]}))
    assert after["communication"] == [{"preferred": True}]


def test_fhirpath_patch_moves_identifier_from_first_to_second() -> None:
    after = fhirpath_patch(patient(), op("move", "Patient.identifier", source=0, destination=1))
    assert after["identifier"] == list(reversed(patient()["identifier"]))


def test_fhirpath_patch_adds_contact_assembled_from_nested_parts() -> None:
    value = {"part": [
        {"name": "name", "valueHumanName": {"text": "John Smith"}},
        {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "07700 900000"}},
        {"name": "relationship", "part": [{"name": "text", "valueString": "husband"}]},
    ]}
    after = fhirpath_patch(patient(), op("add", "Patient", name="contact", value=value))
    assert after["contact"] == [{"name": {"text": "John Smith"},
                                 "telecom": [{"system": "phone", "value": "07700 900000"}],
                                 "relationship": [{"text": "husband"}]}]


def test_fhirpath_patch_add_appends_to_a_repeating_element() -> None:
    new = {"system": "http://example.org/x", "value": "1"}
    after = fhirpath_patch(patient(), op("add", "Patient", name="identifier", value={"valueIdentifier": new}))
    assert after["identifier"][-1] == new and len(after["identifier"]) == 3


def test_fhirpath_patch_adds_family_name_to_the_official_name() -> None:
    after = fhirpath_patch({"resourceType": "Patient", "name": [{"use": "usual"}, {"use": "official"}]},
                           op("add", "Patient.name.where(use='official')", name="family",
                              value={"valueString": "Jones"}))
    assert after["name"] == [{"use": "usual"}, {"use": "official", "family": "Jones"}]


def test_fhirpath_patch_deletes_a_coding_chosen_by_where() -> None:
    after = fhirpath_patch(patient(), op("delete", f"Patient.maritalStatus.coding.where(system='{MARITAL}')"))
    assert after["maritalStatus"] == {"coding": [{"system": "http://example.org", "code": "wed"}]}


def test_fhirpath_patch_delete_of_the_last_coding_removes_the_emptied_parents() -> None:
    after = fhirpath_patch(patient(), op("delete", "Patient.maritalStatus.coding.where(code='M')"),
                           op("delete", "Patient.maritalStatus.coding.where(code='wed')"))
    assert "maritalStatus" not in after


def test_fhirpath_patch_replaces_a_choice_element_with_another_type() -> None:
    after = fhirpath_patch(patient(), op("replace", "Patient.deceased", value={"valueDateTime": "2024-05-01"}))
    assert after["deceasedDateTime"] == "2024-05-01" and "deceasedBoolean" not in after


def test_fhirpath_patch_replaces_observation_value_quantity() -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "valueQuantity": {"value": 70, "unit": "kg"}}
    after = fhirpath_patch(obs, op("replace", "Observation.value",
                                   value={"valueQuantity": {"value": 71.5, "unit": "kg"}}))
    assert after["valueQuantity"] == {"value": 71.5, "unit": "kg"}


def test_fhirpath_patch_replaces_an_extension_value_with_another_type_in_place() -> None:
    before = {"resourceType": "Patient", "extension": [{"url": "http://example.org/a", "valueString": "x",
                                                        "id": "e1"}]}
    after = fhirpath_patch(before, op("replace", "Patient.extension.where(url='http://example.org/a').value",
                                      value={"valueInteger": 3}))
    assert list(after["extension"][0].items()) == [("url", "http://example.org/a"), ("valueInteger", 3),
                                                   ("id", "e1")]


def test_fhirpath_patch_replaces_a_backbone_element_given_as_parts() -> None:
    before = {"resourceType": "Patient", "contact": [{"name": {"text": "Old"}}]}
    after = fhirpath_patch(before, op("replace", "Patient.contact[0]", value={"part": [
        {"name": "gender", "valueCode": "male"}, {"name": "telecom", "valueContactPoint": {"value": "1"}}]}))
    assert after["contact"] == [{"gender": "male", "telecom": [{"value": "1"}]}]


def test_fhirpath_patch_edits_a_contained_resource() -> None:
    before = {"resourceType": "Patient", "id": "p1",
              "contained": [{"resourceType": "Organization", "id": "o1", "name": "Old"}]}
    after = fhirpath_patch(before, op("replace", "Patient.contained.where(id='o1').name",
                                      value={"valueString": "New"}))
    assert after["contained"][0]["name"] == "New"


def test_fhirpath_patch_replaces_an_indexed_given_name() -> None:
    after = fhirpath_patch(patient(), op("replace", "Patient.name[0].given[1]", value={"valueString": "Anne"}))
    assert after["name"][0]["given"] == ["Jane", "Anne"]


def test_fhirpath_patch_keeps_primitive_extensions_aligned_when_moving() -> None:
    before = {"resourceType": "Patient", "name": [{"given": ["A", "B"], "_given": [None, {"id": "b"}]}]}
    after = fhirpath_patch(before, op("move", "Patient.name.given", source=1, destination=0))
    assert after["name"][0] == {"given": ["B", "A"], "_given": [{"id": "b"}, None]}


def test_fhirpath_patch_applies_operations_in_order() -> None:
    after = fhirpath_patch(patient(), op("delete", "Patient.birthDate"),
                           op("add", "Patient", name="birthDate", value={"valueDate": "2001-01-01"}))
    assert after["birthDate"] == "2001-01-01"


def test_fhirpath_patch_does_not_modify_its_inputs() -> None:
    before, params = patient(), {"resourceType": "Parameters", "parameter": [
        op("add", "Patient", name="contact", value={"part": [{"name": "name", "valueHumanName": {"text": "X"}}]}),
        op("delete", "Patient.maritalStatus.coding.where(code='M')"),
        op("replace", "Patient.name[0].family", value={"valueString": "Jones"})]}
    params_copy = copy.deepcopy(params)
    after = apply_fhirpath_patch(before, params)
    after["contact"][0]["name"]["text"] = "changed"
    assert before == patient() and params == params_copy


# ---- FHIRPath Patch: errors ------------------------------------------------------------------

@pytest.mark.parametrize(("ops", "error", "message"), [
    ([op("frob", "Patient")], Invalid, "unknown operation type 'frob'"),
    ([op("replace", "Patient.birthDate")], Invalid, "needs a 'value' part"),
    ([op("insert", "Patient.identifier", value={"valueIdentifier": {}})], Invalid, "'index' part must be a non-negative integer"),
    ([op("add", "Patient", value={"valueDate": "2000"})], Invalid, "'name' part must be a string"),
    ([op("replace", "Patient.name.where(", value={"valueString": "x"})], Invalid, "cannot evaluate FHIRPath"),
    ([op("replace", "Patient.photo", value={"valueAttachment": {}})], Unprocessable, "matched 0 elements"),
    ([op("replace", "Patient.identifier", value={"valueIdentifier": {}})], Unprocessable, "matched 2 elements"),
    ([op("delete", "Patient.identifier")], Unprocessable, "delete removes only one"),
    ([op("add", "Patient", name="gender", value={"valueCode": "male"})], Unprocessable, "already exists"),
    ([op("insert", "Patient.identifier", index=5, value={"valueIdentifier": {}})], Unprocessable, "beyond the 2"),
    ([op("move", "Patient.identifier", source=2, destination=0)], Unprocessable, "must be below 2"),
    ([op("insert", "Patient.contact.telecom", index=0, value={"valueContactPoint": {}})], Unprocessable,
     "parent matched 0 elements"),
    ([op("replace", "Patient.name.given.first()", value={"valueString": "x"})], Unprocessable, "unsupported path"),
    ([op("delete", "Patient")], Unprocessable, "cannot delete the resource itself"),
    ([op("replace", "Patient.id", value={"valueId": "other"})], Unprocessable, "may not change id"),
    ([op("replace", "Patient.meta.versionId", value={"valueId": "9"})], Unprocessable, "may not change meta.versionId"),
    ([op("delete", "Patient.meta")], Unprocessable, "may not change meta.versionId"),
])
def test_fhirpath_patch_error_names_its_cause_and_status(ops: list[dict[str, Any]], error: type,
                                                         message: str) -> None:
    with pytest.raises(error) as caught:
        fhirpath_patch(patient(), *ops)
    assert type(caught.value) is error and message in caught.value.message
    assert caught.value.issues[0].expression == ("Parameters.parameter[0]",)


def test_fhirpath_patch_error_names_the_failing_operation_index() -> None:
    with pytest.raises(Unprocessable) as caught:
        fhirpath_patch(patient(), op("delete", "Patient.gender"), op("replace", "Patient.gender",
                                                                    value={"valueCode": "male"}))
    assert caught.value.status == 422 and caught.value.expression == "Parameters.parameter[1]"
    assert "operation 1 (replace Patient.gender)" in caught.value.message


@pytest.mark.parametrize("parameters", [[], {"resourceType": "Patient"},
                                        {"resourceType": "Parameters", "parameter": [{"name": "op"}]}])
def test_fhirpath_patch_rejects_a_malformed_parameters_as_invalid(parameters: Any) -> None:
    with pytest.raises(Invalid) as caught:
        apply_fhirpath_patch(patient(), parameters)
    assert caught.value.status == 400


def test_fhirpath_patch_cannot_change_resource_type() -> None:
    with pytest.raises(Unprocessable, match="may not change resourceType"):
        fhirpath_patch(patient(), op("replace", "Patient.resourceType", value={"valueString": "Person"}))


# ---- JSON Patch ------------------------------------------------------------------------------

def test_json_patch_adds_replaces_and_removes_elements() -> None:
    after = apply_json_patch(patient(), [
        {"op": "add", "path": "/telecom/-", "value": {"system": "email", "value": "j@example.org"}},
        {"op": "replace", "path": "/gender", "value": "other"},
        {"op": "remove", "path": "/address"}])
    assert after["telecom"][-1]["system"] == "email" and after["gender"] == "other" and "address" not in after


def test_json_patch_test_passes_then_moves_and_copies() -> None:
    after = apply_json_patch(patient(), [
        {"op": "test", "path": "/name/0/family", "value": "Smith"},
        {"op": "move", "from": "/identifier/1", "path": "/identifier/0"},
        {"op": "copy", "from": "/address/0", "path": "/address/-"}])
    assert after["identifier"][0]["value"] == "MRN1" and after["address"][0] == after["address"][1]


def test_json_patch_may_replace_id_with_the_same_value() -> None:
    assert apply_json_patch(patient(), [{"op": "replace", "path": "/id", "value": "p1"}]) == patient()


def test_json_patch_does_not_modify_its_inputs_even_when_it_fails() -> None:
    before, value = patient(), {"system": "email", "value": "a@b"}
    ops = [{"op": "add", "path": "/telecom/-", "value": value}]
    after = apply_json_patch(before, ops)
    after["telecom"][-1]["value"] = "changed"
    with pytest.raises(Unprocessable):
        apply_json_patch(before, [*ops, {"op": "remove", "path": "/nope"}])
    assert before == patient() and value == {"system": "email", "value": "a@b"}


@pytest.mark.parametrize(("operations", "error", "message", "expression"), [
    ({"op": "add"}, Invalid, "must be a JSON array", "Patch"),
    (["add"], Invalid, "operation 0 is not a JSON object", "Patch.operation[0]"),
    ([{"op": "frob", "path": "/a"}], Invalid, "Unknown operation 'frob'", "Patch.operation[0]"),
    ([{"op": "add", "path": "/gender"}], Invalid, "'value' member", "Patch.operation[0]"),
    ([{"op": "add", "path": "gender", "value": "x"}], Invalid, "must start with /", "Patch.operation[0]"),
    ([{"op": "test", "path": "/gender", "value": "female"}, {"op": "remove", "path": "/photo"}],
     Unprocessable, "operation 1 (remove /photo): path not found", "Patch.operation[1]"),
    ([{"op": "replace", "path": "/name/0/suffix/0", "value": "x"}], Unprocessable, "path not found",
     "Patch.operation[0]"),
    ([{"op": "test", "path": "/gender", "value": "male"}], Unprocessable, "test failed", "Patch.operation[0]"),
    ([{"op": "add", "path": "/identifier/7", "value": {}}], Unprocessable, "outside of list", "Patch.operation[0]"),
    ([{"op": "replace", "path": "/id", "value": "p2"}], Unprocessable, "may not change id", "Patch.operation[0]"),
    ([{"op": "remove", "path": "/id"}], Unprocessable, "may not change id", "Patch.operation[0]"),
    ([{"op": "replace", "path": "/resourceType", "value": "Person"}], Unprocessable,
     "may not change resourceType", "Patch.operation[0]"),
    ([{"op": "replace", "path": "/meta/versionId", "value": "4"}], Unprocessable,
     "may not change meta.versionId", "Patch.operation[0]"),
])
def test_json_patch_error_names_its_cause_operation_and_status(operations: object, error: type, message: str,
                                                               expression: str) -> None:
    with pytest.raises(error) as caught:
        apply_json_patch(patient(), operations)
    assert type(caught.value) is error and message in caught.value.message
    assert caught.value.issues[0].expression == (expression,)


# ---- property: replace a primitive at any existing path and read it back -----------------------

def _leaves(node: Any, path: str, ptr: tuple[Any, ...]) -> list[tuple[str, tuple[Any, ...], Any]]:
    """(FHIRPath, location, value) of each primitive value a patch may replace."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() if not k.startswith("_") and k not in ("resourceType", "id", "meta")
                for leaf in _leaves(v, f"{path}.{k}", (*ptr, k))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, f"{path}[{i}]", (*ptr, i))]
    return [(path, ptr, node)]


LEAVES = _leaves(patient(), "Patient", ())
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(leaf=st.sampled_from(LEAVES), data=st.data())
def test_fhirpath_patch_replaced_primitive_reads_back(leaf: tuple[str, tuple[Any, ...], Any],
                                                      data: st.DataObject) -> None:
    path, ptr, old = leaf
    new = data.draw(st.booleans() if isinstance(old, bool) else TEXT)
    value = {"valueBoolean": new} if isinstance(old, bool) else {"valueString": new}
    after = fhirpath_patch(patient(), op("replace", path, value=value))
    node: Any = after
    for seg in ptr:
        node = node[seg]
    assert node == new
    assert [leaf[1:] for leaf in _leaves(after, "Patient", ()) if leaf[1] != ptr] == \
        [leaf[1:] for leaf in LEAVES if leaf[1] != ptr]
