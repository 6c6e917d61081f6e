"""Which path a chain takes when contained resources could answer it (store/direct.py or
search.py's compiler), and that every path gives the hand-worked answer: the direct SQL text
for chains no local reference answers, the compiler for the rest, and the compiler with the
access guard's conditions for a caller the guard restricts (a patient)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from carerecord.access.consent import OPT_OUT
from carerecord.access.guard import Guard
from carerecord.access.guarded import GuardedSearcher
from carerecord.access.principal import Kind, Principal, Purpose
from carerecord.access.scopes import ScopeSet
from carerecord.fhir.search_query import parse
from carerecord.store import direct
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher
from tests.conftest import wipe

SCT = "http://snomed.info/sct"


def _prescription(n: int, pid: str, medication: dict[str, Any], contained: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"resourceType": "MedicationRequest", "id": f"mr{n}", "status": "active", "intent": "order",
           "subject": {"reference": f"Patient/{pid}"}, "medicationReference": medication}
    return {**out, "contained": contained} if contained else out


@pytest.fixture
def store(engine: Engine) -> Repository:
    """p1 and p2; Medication/m1 (code A) stored; mr1 (p1) names it, mr2 (p1) contains a
    Medication of code B, mr3 (p2) one of code A, both with the id ``med``."""
    wipe(engine)
    repo = Repository(engine)
    with repo.unit() as u:
        for pid in ("p1", "p2"):
            u.create({"resourceType": "Patient", "id": pid, "name": [{"family": pid}]}, pid)
        u.create({"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": SCT, "code": "A"}]}}, "m1")
        for r in (_prescription(1, "p1", {"reference": "Medication/m1"}, []),
                  _prescription(2, "p1", {"reference": "#med"}, [
                      {"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": SCT, "code": "B"}]}}]),
                  _prescription(3, "p2", {"reference": "#med"}, [
                      {"resourceType": "Medication", "id": "med", "code": {"coding": [{"system": SCT, "code": "A"}]}}])):
            u.create(r, r["id"])
    return repo


def _ids(repo: Repository, searcher: Searcher, params: list[tuple[str, str]], pages: list[str]) -> set[str]:
    real = direct.page

    def page(*args: Any, **kw: Any) -> Any:
        pages.append("direct")
        return real(*args, **kw)
    with repo.reading() as conn:
        direct.page = page  # type: ignore[assignment]
        try:
            return {h.res_id for h in searcher.run(conn, parse(("MedicationRequest",), params, repo.registry), 50).matches}
        finally:
            direct.page = real  # type: ignore[assignment]


def test_a_chain_answered_inside_a_container_leaves_the_direct_path(store: Repository) -> None:
    searcher, pages = Searcher(store.registry), []
    assert _ids(store, searcher, [("medication.code", f"{SCT}|A")], pages) == {"mr1", "mr3"}
    assert _ids(store, searcher, [("medication.code", f"{SCT}|B")], pages) == {"mr2"}
    assert _ids(store, searcher, [("medication.code", f"{SCT}|B"), ("subject", "Patient/p2")], pages) == set()
    assert pages == []  # local references under medication: the compiler answered


def test_a_chain_no_local_reference_answers_stays_direct(store: Repository) -> None:
    searcher, pages = Searcher(store.registry), []
    assert _ids(store, searcher, [("subject.name", "p1")], pages) == {"mr1", "mr2"}
    assert pages == ["direct"]


def test_a_restricted_callers_chain_into_contained_resources(store: Repository) -> None:
    """A caller the guard restricts (a secondary-use system, held to the national data opt-out)
    has its chains compiled with the guard's conditions on inner rows: through the contained
    medicine too, and never another prescription's medicine of the same id. Once p2 opts out,
    their prescription is not found through its contained medicine either."""
    who = Principal(Kind.SYSTEM, "research", "research", ScopeSet.parse("system/*.rs"), "iss", "jti", 0,
                    purpose=Purpose.SECONDARY_USE)
    searcher = GuardedSearcher(Searcher(store.registry), Guard(who))
    assert not searcher.guard.unrestricted()
    pages: list[str] = []
    assert _ids(store, searcher, [("medication.code", f"{SCT}|A")], pages) == {"mr1", "mr3"}
    assert _ids(store, searcher, [("medication.code", f"{SCT}|B")], pages) == {"mr2"}
    with store.unit() as u:
        u.create({"resourceType": "Consent", "id": "c2", "status": "active", "scope": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": OPT_OUT[0], "code": OPT_OUT[1]}]}],
            "patient": {"reference": "Patient/p2"}, "policyRule": {"text": "national data opt-out"}}, "c2")
    assert _ids(store, GuardedSearcher(Searcher(store.registry), Guard(who)),
                [("medication.code", f"{SCT}|A")], pages) == {"mr1"}
    assert pages == []
