"""Tests of the search parameter registry (carerecord.fhir.search_params)."""

from __future__ import annotations

import pytest

from carerecord.errors import Invalid
from carerecord.fhir.paths import compile_expression, is_native
from carerecord.fhir.search_params import SearchParam, SearchParamRegistry, default_registry

BIRTHSEX = {
    "resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/patient-birthsex",
    "code": "birthsex", "base": ["Patient"], "type": "token",
    "expression": "Patient.extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex').value",
}


def test_official_registry_holds_all_1375_r4_parameters() -> None:
    assert len(list(SearchParamRegistry())) == 1375


def test_every_type_gets_the_resource_and_domainresource_parameters() -> None:
    params = default_registry().for_type("Patient")
    for code in ("_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content"):
        assert code in params
    assert params["birthdate"].type == "date"


def test_bundle_is_not_a_domainresource_so_has_no_text_parameter() -> None:
    params = default_registry().for_type("Bundle")
    assert "_id" in params and "_text" not in params and "composition" in params


def test_unknown_resource_type_has_no_parameters() -> None:
    assert default_registry().for_type("Nonsense") == {}
    assert default_registry().get("Nonsense", "_id") is None


def test_get_finds_own_then_inherited_parameters() -> None:
    reg = default_registry()
    assert reg.get("Observation", "code").base[0] == "AllergyIntolerance"  # the multi-base clinical one
    assert reg.get("Observation", "_tag").expression == "Resource.meta.tag"
    assert reg.get("Observation", "no-such-code") is None


def test_multi_base_parameter_keeps_all_bases_and_targets() -> None:
    patient = default_registry().get("Encounter", "patient")
    assert patient is not None and "Encounter" in patient.base and "Observation" in patient.base
    assert patient.targets == ("Patient",) or "Patient" in patient.targets


def test_composite_parameter_lists_its_components() -> None:
    p = default_registry().get("Observation", "code-value-quantity")
    assert p is not None and p.type == "composite"
    assert [e for _, e in p.components] == ["code", "value.as(Quantity)"]
    assert all(default_registry().by_url(u) is not None for u, _ in p.components)


def test_by_url_finds_a_parameter_and_ignores_a_version_suffix() -> None:
    url = "http://hl7.org/fhir/SearchParameter/individual-birthdate"
    reg = default_registry()
    assert reg.by_url(url) is reg.get("Patient", "birthdate")
    assert reg.by_url(url + "|4.0.1") is reg.get("Patient", "birthdate")
    assert reg.by_url("http://example.org/none") is None


def test_for_type_returns_a_copy_the_caller_may_change() -> None:
    reg = SearchParamRegistry()
    reg.for_type("Patient").clear()
    assert "name" in reg.for_type("Patient")


def test_add_registers_a_custom_parameter_on_its_base() -> None:
    reg = SearchParamRegistry()
    p = reg.add(BIRTHSEX)
    assert isinstance(p, SearchParam) and p.type == "token" and p.base == ("Patient",)
    assert reg.get("Patient", "birthsex") is p and reg.by_url(BIRTHSEX["url"]) is p
    assert "birthsex" in reg.for_type("Patient") and reg.get("Observation", "birthsex") is None


def test_add_without_url_derives_one() -> None:
    p = SearchParamRegistry().add({**BIRTHSEX, "url": None})
    assert p.url == "urn:carerecord:SearchParameter:Patient-birthsex"


def test_add_replaces_a_parameter_of_the_same_code_and_base() -> None:
    reg = SearchParamRegistry()
    reg.add({**BIRTHSEX, "code": "gender", "url": "http://example.org/g"})
    assert reg.get("Patient", "gender").url == "http://example.org/g"  # type: ignore[union-attr]


def test_add_on_the_default_registry_does_not_leak_into_a_fresh_one() -> None:
    default_registry().add({**BIRTHSEX, "code": "zz-leak-check", "base": ["Basic"], "url": "urn:x:leak",
                            "expression": "Basic.code"})
    assert default_registry().get("Basic", "zz-leak-check") is not None
    assert SearchParamRegistry().get("Basic", "zz-leak-check") is None


def test_add_on_one_fresh_registry_does_not_leak_into_another() -> None:
    a, b = SearchParamRegistry(), SearchParamRegistry()
    a.add(BIRTHSEX)
    assert b.get("Patient", "birthsex") is None and default_registry().get("Patient", "birthsex") is None


@pytest.mark.parametrize("change", [
    {"expression": None}, {"expression": "  "}, {"code": None}, {"code": "has space"},
    {"base": []}, {"base": ["NotAResource"]}, {"base": "Patient"}, {"type": "fuzzy"}, {"type": None},
    {"expression": "Patient.name.("}, {"expression": "Patient..name"}, {"resourceType": "Patient"},
    {"type": "composite"}, {"type": "composite", "component": [{"definition": "x"}]},
])
def test_add_of_a_bad_search_parameter_raises_invalid(change: dict[str, object]) -> None:
    reg = SearchParamRegistry()
    with pytest.raises(Invalid):
        reg.add({**BIRTHSEX, **change})
    assert reg.get("Patient", "birthsex") is None


def test_add_accepts_valid_fhirpath_outside_the_compiled_subset() -> None:
    p = SearchParamRegistry().add({**BIRTHSEX, "code": "a-names", "type": "string",
                                   "expression": "Patient.name.where(given.startsWith('A')).family"})
    assert p.expression is not None


def test_add_bumps_the_version_and_clears_derived_caches() -> None:
    reg = SearchParamRegistry()
    reg.cache["x"] = 1
    before = reg.version
    reg.add(BIRTHSEX)
    assert reg.version > before and reg.cache == {}


def test_all_official_expressions_compile_natively() -> None:
    native = total = 0
    for p in SearchParamRegistry():
        if p.expression is None:
            continue
        total += 1
        types = [b if b not in ("Resource", "DomainResource") else "Patient" for b in p.base]
        native += all(is_native(compile_expression(p.expression, t)) for t in types)
    assert (native, total) == (1372, 1372)
