"""Token search (http://hl7.org/fhir/R4/search.html#token): code, system|code, |code, system|,
:text, :not, :of-type, :missing, escaping, on Coding, CodeableConcept, Identifier, code and
boolean, compared with the oracle."""

from __future__ import annotations

import gzip
import json
import random
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import shared_data
from tests.search import oracle
from tests.search.support import FEW, Fhir, check

LOINC, SNOMED, LOCAL = "http://loinc.org", "http://snomed.info/sct", "urn:oid:1.2.3|x"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CODES = [(LOINC, "8480-6", "Systolic blood pressure"), (LOINC, "8462-4", "Diastolic blood pressure"),
         (SNOMED, "271649006", "Systolic blood pressure"), (SNOMED, "8480-6", "Same code, other system"),
         (LOCAL, "a,b", "Comma code"), (None, "8480-6", "No system"), (LOINC, "29463-7", "Body weight")]
TEXTS = ["BP", "Blood pressure", "Pression artérielle", "Weight"]


def observation(oid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", **fields}


def coding(c: tuple[str | None, str, str]) -> dict[str, Any]:
    return {k: v for k, v in (("system", c[0]), ("code", c[1]), ("display", c[2])) if v is not None}


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(31)
    out = []
    for i in range(30):
        codings = [coding(c) for c in rng.sample(CODES, rng.randint(0, 2))]
        cc: dict[str, Any] = {"coding": codings} if codings else {}
        if rng.random() < 0.4 or not codings:
            cc["text"] = rng.choice(TEXTS)
        extra: dict[str, Any] = {}
        if rng.random() < 0.6:
            extra["category"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                              "code": rng.choice(["vital-signs", "laboratory"])}]}]
        out.append(observation(f"o{i}", code=cc, **extra,
                               status=rng.choice(["final", "amended", "preliminary"])))
    out += [
        {"resourceType": "Patient", "id": "nhs", "gender": "female", "active": True,
         "identifier": [{"system": NHS, "value": "9000000009"},
                        {"type": {"coding": [{"system": V2, "code": "MR"}], "text": "Médical record"},
                         "system": "urn:hospital", "value": "MRN-1"}]},
        {"resourceType": "Patient", "id": "mrn", "gender": "male", "active": False,
         "identifier": [{"type": {"coding": [{"system": V2, "code": "MR"}]}, "system": "urn:other",
                         "value": "9000000009"}]},
        {"resourceType": "Patient", "id": "pipe", "identifier": [{"system": "urn:a|b", "value": "x|y"}]},
        {"resourceType": "Patient", "id": "bare", "identifier": [{"value": "MRN-1"}]},
        {"resourceType": "Patient", "id": "none"},
    ]
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def test_code_system_and_both(db: Fhir, data: oracle.Oracle) -> None:
    any_system = check(db, data, "Observation", [("code", "8480-6")])
    loinc = check(db, data, "Observation", [("code", f"{LOINC}|8480-6")])
    no_system = check(db, data, "Observation", [("code", "|8480-6")])
    assert loinc and no_system and loinc | no_system <= any_system
    assert check(db, data, "Observation", [("code", f"{SNOMED}|")])


def test_identifiers(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("identifier", f"{NHS}|9000000009")]) == {"nhs"}
    assert check(db, data, "Patient", [("identifier", "9000000009")]) == {"nhs", "mrn"}
    assert check(db, data, "Patient", [("identifier", "|MRN-1")]) == {"bare"}
    assert check(db, data, "Patient", [("identifier", "urn:hospital|")]) == {"nhs"}


def test_codes_and_booleans(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("gender", "female")]) == {"nhs"}
    assert check(db, data, "Patient", [("gender", "female,male")]) == {"nhs", "mrn"}
    assert check(db, data, "Patient", [("active", "true")]) == {"nhs"}
    assert check(db, data, "Patient", [("active", "false")]) == {"mrn"}
    check(db, data, "Observation", [("status", "final,amended")])


def test_text_searches_display_text_and_identifier_type_text(db: Fhir, data: oracle.Oracle) -> None:
    systolic = check(db, data, "Observation", [("code:text", "systolic")])
    assert systolic == check(db, data, "Observation", [("code:text", "SYSTOLIC")])
    assert check(db, data, "Observation", [("code:text", "pression arterielle")])  # accents ignored
    assert check(db, data, "Observation", [("code:text", "bp")])
    assert check(db, data, "Patient", [("identifier:text", "medical")]) == {"nhs"}


def test_not_includes_resources_without_a_value(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("gender:not", "male")]) == {"nhs", "pipe", "bare", "none"}
    no_vitals = check(db, data, "Observation", [("category:not", "vital-signs")])
    assert no_vitals | check(db, data, "Observation", [("category", "vital-signs")]) == \
        {r["id"] for r in data.resources if r["resourceType"] == "Observation"}
    check(db, data, "Observation", [("code:not", f"{LOINC}|8480-6,{SNOMED}|271649006")])


def test_of_type(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("identifier:of-type", f"{V2}|MR|MRN-1")]) == {"nhs"}
    assert check(db, data, "Patient", [("identifier:of-type", f"{V2}|MR|9000000009")]) == {"mrn"}
    assert check(db, data, "Patient", [("identifier:of-type", f"{V2}|MR|nope")]) == set()
    assert "of-type" in db.error("Patient", {"identifier:of-type": "MR|MRN-1"})


def test_missing(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("identifier:missing", "true")]) == {"none"}
    assert check(db, data, "Patient", [("gender:missing", "false")]) == {"nhs", "mrn"}
    check(db, data, "Observation", [("category:missing", "true")])
    assert "true or false" in db.error("Patient", {"gender:missing": "yes"})


def test_escaped_pipe_and_comma(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("identifier", "urn:a\\|b|x\\|y")]) == {"pipe"}
    assert check(db, data, "Patient", [("identifier", "x\\|y")]) == {"pipe"}
    assert check(db, data, "Observation", [("code", "urn:oid:1.2.3\\|x|a\\,b")])


@pytest.mark.parametrize("value", ["a|b|c", "|", "sys|code|"])
def test_malformed_tokens_are_400(db: Fhir, value: str) -> None:
    assert "token" in db.error("Patient", {"identifier": value})


def test_an_unsupported_token_modifier_is_400_not_ignored(db: Fhir) -> None:
    assert "in" in db.error("Observation", {"code:in": "http://example.org/ValueSet/x"})


ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


@cache
def act_code_parents() -> dict[str, set[str]]:
    """Parents of each v3 ActCode, read from the official R4 definitions (nesting and the
    subsumedBy property), independently of the server's generated hierarchy."""
    bundle = json.loads(gzip.open(shared_data("fhir-r4-definitions", "v3-codesystems.json.gz")).read())
    system = next(e["resource"] for e in bundle["entry"] if e["resource"].get("url") == ACT)
    parents: dict[str, set[str]] = {}

    def walk(concepts: list[dict[str, Any]], parent: str | None) -> None:
        for c in concepts:
            mine = parents.setdefault(c["code"], set())
            if parent:
                mine.add(parent)
            mine |= {p["valueCode"] for p in c.get("property", []) if p["code"] == "subsumedBy"}
            walk(c.get("concept", []), c["code"])
    walk(system["concept"], None)
    return parents


def closure(code_: str, up: bool) -> set[str]:
    parents = act_code_parents()
    children: dict[str, set[str]] = {}
    for c, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(c)
    out, todo = {code_}, [code_]
    while todo:
        for nxt in (parents if up else children).get(todo.pop(), set()):
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return out


ACT_CODES = ["AMB", "EMER", "IMP", "ACUTE", "NONAC", "HH", "FLD", "VR", "SS", "PRENC", "OBSENC",
             "_ActEncounterCode", "_ActCareProvisionCode", "_ActAccountCode", "CASH", "PBILLACCT"]


@pytest.fixture(scope="module")
def encounters(db: Fhir, data: oracle.Oracle) -> dict[str, str]:
    """Encounter/e-<code> of class <code>, for each code of ACT_CODES the definitions know."""
    known = [c for c in ACT_CODES if c in act_code_parents()]
    db.load([{"resourceType": "Encounter", "id": f"e-{c.strip('_')}", "status": "finished",
              "class": {"system": ACT, "code": c}} for c in known])
    return {f"e-{c.strip('_')}": c for c in known}


@FEW
@given(st.sampled_from(ACT_CODES), st.sampled_from(["below", "above"]))
def test_token_below_and_above_follow_the_code_system_hierarchy(db: Fhir, encounters: dict[str, str],
                                                                code_: str, modifier: str) -> None:
    wanted = closure(code_, up=modifier == "above")
    expected = {eid for eid, c in encounters.items() if c in wanted}
    assert db.ids("Encounter", {f"class:{modifier}": f"{ACT}|{code_}"}) == expected


def test_token_below_on_an_unknown_hierarchy_is_400(db: Fhir) -> None:
    assert "snomed" in db.error("Condition", {"code:below": "http://snomed.info/sct|73211009"})


def test_token_below_uses_stored_code_systems(db: Fhir, data: oracle.Oracle) -> None:
    db.load([{"resourceType": "CodeSystem", "id": "cs", "url": "http://example.org/cs", "status": "active",
              "content": "complete", "hierarchyMeaning": "is-a",
              "concept": [{"code": "parent", "concept": [{"code": "child"}]}]},
             {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/nhs"},
              "code": {"coding": [{"system": "http://example.org/cs", "code": "child"}]}}])
    assert db.ids("Condition", {"code:below": "http://example.org/cs|parent"}) == {"c1"}


LOCAL_CS = "http://example.org/fhir/CodeSystem/needs"


def random_code_system(rng: random.Random) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """A CodeSystem of 24 codes and the parents each code has in it. Every code gets up to two
    parents among the codes before it, stated in one of three ways the server reads: nested
    under the parent, a declared ``parent`` property, or the parent's ``child`` property."""
    codes = [f"n{i}" for i in range(24)]
    parents: dict[str, set[str]] = {c: set() for c in codes}
    concepts: dict[str, dict[str, Any]] = {c: {"code": c} for c in codes}
    nested: dict[str, str] = {}  # child -> the parent it is nested under
    for i, c in enumerate(codes[1:], 1):
        for p in rng.sample(codes[:i], min(i, rng.choice([0, 1, 1, 2]))):
            parents[c].add(p)
            how = rng.choice(["nest", "up", "child"])
            if how == "nest" and c not in nested:
                nested[c] = p
            elif how == "child":
                concepts[p].setdefault("property", []).append({"code": "kids", "valueCode": c})
            else:
                concepts[c].setdefault("property", []).append({"code": "up", "valueCode": p})
    top = []
    for c in codes:  # concepts are shared dicts, so nesting order does not matter
        if c in nested:
            concepts[nested[c]].setdefault("concept", []).append(concepts[c])
        else:
            top.append(concepts[c])
    cs = {"resourceType": "CodeSystem", "id": "needs", "url": LOCAL_CS, "status": "active",
          "content": "complete", "hierarchyMeaning": "is-a", "concept": top,
          "property": [{"code": "up", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"},
                       {"code": "kids", "uri": "http://hl7.org/fhir/concept-properties#child", "type": "code"}]}
    return cs, parents


@pytest.fixture(scope="module")
def needs(db: Fhir, data: oracle.Oracle) -> tuple[dict[str, set[str]], dict[str, str]]:
    """The random CodeSystem stored on the server, and a Condition per code (id -> code)."""
    cs, parents = random_code_system(random.Random(5))
    conditions = {f"need-{c}": c for c in parents}
    db.load([cs, *({"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/nhs"},
                    "code": {"coding": [{"system": LOCAL_CS, "code": c}]}} for cid, c in conditions.items())])
    return parents, conditions


def reach(code_: str, edges: dict[str, set[str]]) -> set[str]:
    """``code_`` and every code reachable from it (a fixpoint, written independently of the server)."""
    out = {code_}
    while True:
        more = {n for c in out for n in edges.get(c, set())} - out
        if not more:
            return out
        out |= more


@FEW
@given(st.integers(0, 23), st.sampled_from(["below", "above"]))
def test_below_and_above_follow_a_stored_code_system(db: Fhir, needs: tuple[dict[str, set[str]], dict[str, str]],
                                                     n: int, modifier: str) -> None:
    parents, conditions = needs
    children: dict[str, set[str]] = {}
    for c, ps in parents.items():
        for p in ps:
            children.setdefault(p, set()).add(c)
    wanted = reach(f"n{n}", parents if modifier == "above" else children)
    expected = {cid for cid, c in conditions.items() if c in wanted}
    assert db.ids("Condition", {f"code:{modifier}": f"{LOCAL_CS}|n{n}"}) == expected


def test_a_stored_code_system_that_is_not_complete_is_400_saying_why(db: Fhir, data: oracle.Oracle) -> None:
    db.load([{"resourceType": "CodeSystem", "id": "partial", "url": "http://example.org/fhir/CodeSystem/partial",
              "status": "active", "content": "fragment", "hierarchyMeaning": "is-a",
              "concept": [{"code": "a", "concept": [{"code": "b"}]}]}])
    text = db.error("Condition", {"code:below": "http://example.org/fhir/CodeSystem/partial|a"})
    assert "CodeSystem/partial" in text and "fragment" in text


def token_values() -> st.SearchStrategy[str]:
    systems = st.sampled_from([LOINC, SNOMED, "urn:oid:1.2.3\\|x", "http://nowhere"])
    codes = st.sampled_from(["8480-6", "8462-4", "271649006", "a\\,b", "29463-7", "zzz"])
    return st.one_of(codes, st.builds(lambda s, c: f"{s}|{c}", systems, codes),
                     codes.map(lambda c: f"|{c}"), systems.map(lambda s: f"{s}|"))


@FEW
@given(st.sampled_from([None, None, "not", "text"]), st.lists(token_values(), min_size=1, max_size=3),
       st.sampled_from(TEXTS + ["systolic", "SAME", "body", "blood p", "nothing"]),
       st.sampled_from(["code", "category", "status"]))
def test_random_tokens_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, modifier: str | None,
                                             values: list[str], text: str, param_code: str) -> None:
    value = text if modifier == "text" else ",".join(values)
    if param_code == "status" and modifier != "text":
        value = ",".join(v.split("|")[-1].replace("8480-6", "final") for v in values)
    if modifier == "text" and param_code == "status":
        param_code = "code"
    check(db, data, "Observation", [(f"{param_code}:{modifier}" if modifier else param_code, value)])
