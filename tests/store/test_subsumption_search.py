"""Token :below and :above over code system hierarchies the server knows."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from carerecord.errors import Invalid
from carerecord.fhir import terminology
from carerecord.fhir.search_query import parse
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def encounter(code: str) -> dict[str, object]:
    return {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT, "code": code}}


def find(repo: Repository, value: str, modifier: str) -> set[str]:
    q = parse(("Encounter",), [(f"class:{modifier}", value)], repo.registry)
    with repo.reading() as conn:
        return {h.res_id for h in Searcher(repo.registry).run(conn, q, 100).matches}


def test_below_finds_the_code_and_everything_it_subsumes(repo: Repository) -> None:
    amb = repo.create(encounter("AMB")).res_id
    emer = repo.create(encounter("EMER")).res_id
    other = repo.create(encounter("_ActAccountCode")).res_id  # an ActCode outside the subtree
    assert {"AMB", "EMER"} <= (terminology.below(ACT, "_ActEncounterCode") or set())
    assert find(repo, f"{ACT}|_ActEncounterCode", "below") == {amb, emer}
    assert other not in find(repo, f"{ACT}|_ActEncounterCode", "below")


def test_above_finds_the_code_and_its_ancestors(repo: Repository) -> None:
    parent = repo.create(encounter("_ActEncounterCode")).res_id
    amb = repo.create(encounter("AMB")).res_id
    repo.create(encounter("EMER"))
    assert find(repo, f"{ACT}|AMB", "above") == {parent, amb}


def test_subsumption_on_an_unknown_hierarchy_is_refused(repo: Repository) -> None:
    """Refused when the search runs (stored CodeSystems are looked up then), located at the
    parameter."""
    q = parse(("Condition",), [("code:below", "http://snomed.info/sct|73211009")], repo.registry)
    with pytest.raises(Invalid) as err, repo.reading() as conn:
        Searcher(repo.registry).run(conn, q, 10)
    assert "not known to this server" in err.value.message
    assert err.value.issues[0].expression == ("code:below",)


# -- CodeSystem resources stored on the server ----------------------------------------------------
LOCAL = "http://example.org/fhir/CodeSystem/care-needs"


def code_system(concepts: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "CodeSystem", "id": "needs", "url": LOCAL, "status": "active",
            "content": "complete", "hierarchyMeaning": "is-a", "concept": concepts, **extra}


def need(code: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": LOCAL, "code": code}]}}


def conditions(repo: Repository, modifier: str, code: str) -> set[str]:
    q = parse(("Condition",), [(f"code:{modifier}", f"{LOCAL}|{code}")], repo.registry)
    with repo.reading() as conn:
        return {h.res_id for h in Searcher(repo.registry).run(conn, q, 100).matches}


@pytest.fixture
def needs(repo: Repository) -> dict[str, str]:
    """A Condition per code of the care-needs system (the CodeSystem itself is up to the test)."""
    repo.update("Patient", "p", {"resourceType": "Patient", "id": "p"})
    return {code: repo.create(need(code)).res_id for code in ("mobility", "falls", "stairs", "diet")}


def test_a_stored_code_system_gives_below_and_above(repo: Repository, needs: dict[str, str]) -> None:
    repo.update("CodeSystem", "needs", code_system([
        {"code": "mobility", "concept": [{"code": "falls", "concept": [{"code": "stairs"}]}]},
        {"code": "diet"}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["falls"], needs["stairs"]}
    assert conditions(repo, "below", "falls") == {needs["falls"], needs["stairs"]}
    assert conditions(repo, "above", "stairs") == {needs["mobility"], needs["falls"], needs["stairs"]}
    assert conditions(repo, "below", "diet") == {needs["diet"]}


def test_parent_and_child_properties_are_edges_too(repo: Repository, needs: dict[str, str]) -> None:
    repo.update("CodeSystem", "needs", code_system(
        [{"code": "mobility", "property": [{"code": "child", "valueCode": "falls"}]},
         {"code": "falls"},
         {"code": "stairs", "property": [{"code": "up", "valueCode": "falls"}]},
         {"code": "diet"}],
        property=[{"code": "up", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"},
                  {"code": "child", "uri": "http://hl7.org/fhir/concept-properties#child", "type": "code"}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["falls"], needs["stairs"]}
    assert conditions(repo, "above", "stairs") == {needs["mobility"], needs["falls"], needs["stairs"]}


def test_an_update_of_the_code_system_takes_effect_at_once(repo: Repository, needs: dict[str, str]) -> None:
    repo.update("CodeSystem", "needs", code_system([{"code": "mobility", "concept": [{"code": "falls"}]}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["falls"]}  # now cached
    repo.update("CodeSystem", "needs", code_system([{"code": "mobility", "concept": [{"code": "diet"}]}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["diet"]}


def test_a_write_from_another_process_takes_effect(repo: Repository, needs: dict[str, str],
                                                   database_url: str) -> None:
    """Another worker process updates the CodeSystem: this process's cached tree is not used."""
    repo.update("CodeSystem", "needs", code_system([{"code": "mobility", "concept": [{"code": "falls"}]}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["falls"]}
    changed = code_system([{"code": "mobility", "concept": [{"code": "stairs"}]}])
    script = ("import sys, orjson; from carerecord.store.engine import make_engine; "
              "from carerecord.store.repository import Repository; "
              "Repository(make_engine(sys.argv[1])).update('CodeSystem', 'needs', orjson.loads(sys.argv[2]))")
    done = subprocess.run([sys.executable, "-c", script, database_url, json.dumps(changed)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["stairs"]}


def test_a_deleted_code_system_is_no_longer_known(repo: Repository, needs: dict[str, str]) -> None:
    repo.update("CodeSystem", "needs", code_system([{"code": "mobility", "concept": [{"code": "falls"}]}]))
    assert conditions(repo, "below", "mobility") == {needs["mobility"], needs["falls"]}
    repo.delete("CodeSystem", "needs")
    with pytest.raises(Invalid) as err:
        conditions(repo, "below", "mobility")
    assert f"The hierarchy of {LOCAL} is not known" in err.value.message


@pytest.mark.parametrize(("change", "why"), [
    ({"content": "fragment"}, "content is 'fragment'"),
    ({"hierarchyMeaning": "part-of"}, "hierarchyMeaning 'is-a'"),
])
def test_a_code_system_that_may_not_state_is_a_is_refused_with_why(
        repo: Repository, needs: dict[str, str], change: dict[str, str], why: str) -> None:
    repo.update("CodeSystem", "needs", code_system([{"code": "mobility", "concept": [{"code": "falls"}]}], **change))
    with pytest.raises(Invalid) as err:
        conditions(repo, "below", "mobility")
    assert "CodeSystem/needs" in err.value.message and why in err.value.message


def test_a_stored_code_system_takes_precedence_over_the_r4_definitions(repo: Repository) -> None:
    """A server's own copy of a code system (a later edition, a local extension) is what it was
    told, so it wins over the tree generated from the R4 definitions."""
    amb = repo.create(encounter("AMB")).res_id
    emer = repo.create(encounter("EMER")).res_id
    assert find(repo, f"{ACT}|_ActEncounterCode", "below") == {amb, emer}
    repo.update("CodeSystem", "act", {"resourceType": "CodeSystem", "id": "act", "url": ACT, "status": "active",
                                      "content": "complete", "hierarchyMeaning": "is-a",
                                      "concept": [{"code": "_ActEncounterCode", "concept": [{"code": "AMB"}]},
                                                  {"code": "EMER"}]})
    assert find(repo, f"{ACT}|_ActEncounterCode", "below") == {amb}
