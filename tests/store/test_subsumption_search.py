"""Token :below and :above over code system hierarchies the server knows."""

from __future__ import annotations

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
    with pytest.raises(Invalid) as err:
        parse(("Condition",), [("code:below", "http://snomed.info/sct|73211009")], repo.registry)
    assert "not known to this server" in err.value.message
