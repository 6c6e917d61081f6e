"""store/direct.py writes the pages of common searches as SQL text; search.py builds them with
SQLAlchemy. On generated searches over the same store (SQLite and PostgreSQL) both must give
the same pages, page after page, forwards and backwards. The search suite's oracle tests also
run through the direct path for every search of its shape (they search as a system client)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, exists

from carerecord.demo.identifiers import nhs_number
from carerecord.fhir.search_query import parse
from carerecord.store import direct, schema
from carerecord.store.paging import NEXT, Cursor
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher, rank
from tests.conftest import wipe
from tests.search.support import FEW

NHS = "https://fhir.nhs.uk/Id/nhs-number"
LOINC = "http://loinc.org"
FAMILIES = ["Smith", "Smithson", "Jones", "Brown", "Ng", "Smyth"]
CODES = ["8480-6", "8462-4", "29463-7"]
NUMBERS = [nhs_number(n, 7) for n in range(33)]  # valid NHS numbers; 30-32 belong to nobody
GMC = "https://fhir.hl7.org.uk/Id/gmc-number"
DOCTORS = ["Jones", "Patel", "Okafor", "Jonas"]


def _people() -> list[dict[str, Any]]:
    # GPs (some Practitioners, one an Organization) and their PractitionerRoles, for chains
    out: list[dict[str, Any]] = [
        {"resourceType": "Practitioner", "id": f"dr{n}", "name": [{"family": name}],
         "identifier": [{"system": GMC, "value": f"70000{n}"}]} for n, name in enumerate(DOCTORS)]
    out.append({"resourceType": "Organization", "id": "surgery", "name": "Jones Lane Surgery"})
    out += [{"resourceType": "PractitionerRole", "id": f"role{n}", "practitioner": {"reference": f"Practitioner/dr{n % 4}"},
             "organization": {"reference": "Organization/surgery"}} for n in range(6)]
    for n in range(30):
        pid = f"p{n}"
        gp = ({"reference": "Organization/surgery"} if n % 7 == 6 else
              {"reference": f"PractitionerRole/role{n % 6}"} if n % 5 == 4 else {"reference": f"Practitioner/dr{n % 4}"})
        out.append({"resourceType": "Patient", "id": pid, "gender": ["male", "female", "other"][n % 3],
                    "birthDate": f"19{50 + n % 7}-0{1 + n % 3}-1{n % 9}",
                    "identifier": [{"system": NHS, "value": NUMBERS[n]}],
                    "name": [{"family": FAMILIES[n % len(FAMILIES)], "given": ["Ann" if n % 2 else "Bo"]}],
                    "active": n % 4 != 0, "generalPractitioner": [gp]})
        for k in range(3):
            out.append({"resourceType": "Observation", "id": f"o{n}-{k}", "status": ["final", "amended"][k % 2],
                        "code": {"coding": [{"system": LOINC, "code": CODES[(n + k) % 3]}]},
                        "subject": {"reference": f"Patient/{pid}"},
                        "effectiveDateTime": f"20{10 + (n + k) % 12}-0{1 + k}-15T10:00:00Z",
                        "performer": [{"reference": f"PractitionerRole/role{(n + k) % 6}"}],
                        "valueQuantity": {"value": 60 + (n * 7 + k * 13) % 90, "unit": "mm[Hg]",
                                          "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    return out


@pytest.fixture(scope="module")
def store(engine: Engine) -> Repository:
    wipe(engine)
    repo = Repository(engine)
    with repo.unit() as u:
        for r in _people():
            u.create(r, r["id"])
    return repo


PATIENT_PARAMS = st.one_of(
    st.builds(lambda v: ("identifier", f"{NHS}|{NUMBERS[v]}"), st.integers(0, 32)),
    st.builds(lambda v: ("identifier", NUMBERS[v]), st.integers(0, 32)),
    st.builds(lambda f, m: (f"family{m}", f), st.sampled_from(["smi", "Smith", "jon", "ng", "x"]),
              st.sampled_from(["", ":exact"])),
    st.builds(lambda p, d: ("birthdate", f"{p}{d}"), st.sampled_from(["", "ge", "le", "gt", "lt", "ne", "sa", "eb"]),
              st.sampled_from(["1952", "1953-02", "1954-03-13", "1956"])),
    st.builds(lambda g: ("gender", g), st.sampled_from(["male", "female", "male,other", "unknown"])),
    st.builds(lambda a: ("active", a), st.sampled_from(["true", "false"])),
)
# Chains, one and two levels, typed and untyped, over plain inner clauses
CHAIN_PARAMS = st.one_of(
    st.builds(lambda v: ("subject:Patient.identifier", f"{NHS}|{NUMBERS[v]}"), st.integers(0, 32)),
    st.builds(lambda f: ("patient.family", f), st.sampled_from(["smi", "Jones", "ng", "x"])),
    st.builds(lambda p, d: ("subject.birthdate", f"{p}{d}"), st.sampled_from(["", "ge", "lt"]),
              st.sampled_from(["1952", "1954-03-13"])),
    st.builds(lambda n: ("performer:PractitionerRole.practitioner", f"Practitioner/dr{n}"), st.integers(0, 4)),
    st.builds(lambda n: ("performer:PractitionerRole.practitioner.identifier", f"{GMC}|70000{n}"),
              st.integers(0, 4)),
    st.builds(lambda f: ("performer.practitioner.name", f), st.sampled_from(["jon", "Patel", "ok"])),
    st.builds(lambda f: ("subject:Patient.general-practitioner.name", f), st.sampled_from(["jon", "okafor", "surg"])),
    st.builds(lambda n: ("subject:Patient.general-practitioner:PractitionerRole.practitioner.identifier",
                         f"{GMC}|70000{n}"), st.integers(0, 4)),
)
OBS_PARAMS = st.one_of(
    st.builds(lambda n: ("patient", f"p{n}"), st.integers(0, 31)),
    st.builds(lambda n: ("subject", f"Patient/p{n}"), st.integers(0, 31)),
    st.builds(lambda c: ("code", c), st.sampled_from([f"{LOINC}|8480-6", "8462-4", f"{LOINC}|29463-7,8480-6",
                                                       f"{LOINC}|"])),
    st.builds(lambda p, d: ("date", f"{p}{d}"), st.sampled_from(["", "ge", "le", "gt", "lt"]),
              st.sampled_from(["2012", "2015-02", "2019-03-15", "2021"])),
    st.builds(lambda s: ("status", s), st.sampled_from(["final", "amended,final"])),
    st.builds(lambda p, v: ("value-quantity", f"{p}{v}"), st.sampled_from(["", "gt", "le", "ap"]),
              st.sampled_from(["100", "90|http://unitsofmeasure.org|mm[Hg]", "75||mm[Hg]"])),
)


def _pages(searcher: Searcher, repo: Repository, res_type: str, params: list[tuple[str, str]],
           count: int) -> list[list[str]]:
    """Every page forwards, then the last page and every page backwards, as ids."""
    out: list[list[str]] = []
    with repo.reading() as conn:
        q = parse((res_type,), params, repo.registry)
        cursor = None
        for _ in range(40):
            q.cursor = cursor
            res = searcher.run(conn, q, count)
            out.append([h.res_id for h in res.matches])
            if res.next_cursor is None:
                break
            cursor = res.next_cursor
        q.cursor = "last"
        for _ in range(40):
            res = searcher.run(conn, q, count)
            out.append([h.res_id for h in res.matches])
            if res.prev_cursor is None:
                break
            q.cursor = res.prev_cursor
    return out


def _both(repo: Repository, res_type: str, params: list[tuple[str, str]], count: int) -> None:
    fast, slow = Searcher(repo.registry), Searcher(repo.registry)
    slow.direct = False
    q = parse((res_type,), params, repo.registry)
    assert direct.eligible(q, repo.registry.get), params  # the generated searches are all of its shape
    assert _pages(fast, repo, res_type, params, count) == _pages(slow, repo, res_type, params, count)


@FEW
@given(st.lists(PATIENT_PARAMS, min_size=1, max_size=3), st.integers(1, 7))
def test_patient_pages_are_the_same_both_ways(store: Repository, params: list[tuple[str, str]], count: int) -> None:
    _both(store, "Patient", params, count)


@FEW
@given(st.lists(OBS_PARAMS, min_size=1, max_size=3), st.integers(1, 7))
def test_observation_pages_are_the_same_both_ways(store: Repository, params: list[tuple[str, str]],
                                                  count: int) -> None:
    _both(store, "Observation", params, count)


@FEW
@given(st.lists(st.one_of(CHAIN_PARAMS, OBS_PARAMS), min_size=1, max_size=3).filter(
           lambda ps: any("." in name for name, _ in ps)), st.integers(1, 7))
def test_chained_pages_are_the_same_both_ways(store: Repository, params: list[tuple[str, str]],
                                              count: int) -> None:
    _both(store, "Observation", params, count)


def test_chains_find_what_they_should(store: Repository) -> None:
    """Not only the same both ways, but right: checked against the fixture by hand."""
    searcher = Searcher(store.registry)

    def ids(params: list[tuple[str, str]]) -> set[str]:
        with store.reading() as conn:
            q = parse(("Observation",), params, store.registry)
            assert searcher.direct_ok(q)
            return {h.res_id for h in searcher.run(conn, q, 500).matches}
    # dr1 (Patel) is the practitioner of role1 and role5: performers of o{n}-{k} with (n + k) % 6 in (1, 5)
    expected = {f"o{n}-{k}" for n in range(30) for k in range(3) if (n + k) % 6 in (1, 5)}
    assert ids([("performer:PractitionerRole.practitioner.identifier", f"{GMC}|700001")]) == expected
    assert ids([("performer.practitioner.name", "patel")]) == expected
    # the patients whose GP is Okafor (dr2) directly: n % 4 == 2, unless their GP is a role or the surgery
    okafor = {n for n in range(30) if n % 7 != 6 and n % 5 != 4 and n % 4 == 2}
    assert ids([("subject:Patient.general-practitioner.name", "okafor")]) == {
        f"o{n}-{k}" for n in okafor for k in range(3)}
    # through a role: patients with n % 5 == 4 (not the surgery's) whose role{n % 6} is dr2's (role2)
    via_role = {n for n in range(30) if n % 7 != 6 and n % 5 == 4 and (n % 6) % 4 == 2}
    assert ids([("subject:Patient.general-practitioner:PractitionerRole.practitioner.identifier",
                 f"{GMC}|700002")]) == {f"o{n}-{k}" for n in via_role for k in range(3)}


def test_a_chain_to_one_target_is_read_as_a_reference_to_it(store: Repository) -> None:
    """Okafor (dr2) has one role (role2): the chain is narrowed to performer=PractitionerRole/role2
    and gives what that reference gives; Patel (dr1, two roles) is left a chain."""
    searcher = Searcher(store.registry)

    def ids(params: list[tuple[str, str]]) -> list[str]:
        with store.reading() as conn:
            return [h.res_id for h in searcher.run(conn, parse(("Observation",), params, store.registry), 500).matches]
    one = ids([("performer:PractitionerRole.practitioner.identifier", f"{GMC}|700002")])
    assert one == ids([("performer", "PractitionerRole/role2")])
    assert one == [f"o{n}-{k}" for n in range(30) for k in range(3) if (n + k) % 6 == 2]
    assert ids([("performer:PractitionerRole.practitioner.identifier", f"{GMC}|700009")]) == []


def test_restricted_callers_chains_are_left_to_the_expression_compiler(store: Repository) -> None:
    q = parse(("Observation",), [("patient.family", "smith")], store.registry)
    assert direct.eligible(q, store.registry.get)
    assert not direct.eligible(q, store.registry.get, chains=False)


@pytest.mark.parametrize("params", [
    [("name:contains", "mit")], [("family:missing", "true")], [("gender:not", "male")],
    [("_id", "p1")], [("_sort", "family"), ("family", "s")], [("general-practitioner.name:contains", "x")],
    [("_has:Observation:subject:code", "8480-6")], [("gender:text", "mal")], [("identifier:of-type", "http://x|MR|1")],
    [("general-practitioner._id", "dr1")], [("general-practitioner._has:Patient:general-practitioner:gender", "male")],
])
def test_other_shapes_are_left_to_the_expression_compiler(store: Repository, params: list[tuple[str, str]]) -> None:
    q = parse(("Patient",), params, store.registry)
    assert not direct.eligible(q, store.registry.get)


def test_the_direct_page_binds_every_value(store: Repository) -> None:
    q = parse(("Patient",), [("family", "o'brien; DROP TABLE resources"), ("birthdate", "ge1950")],
              store.registry)
    text, params = direct.page(q, 10, rank, Searcher(store.registry).compiler.in_rid_order, False)
    assert "brien" not in text and "DROP" not in text and "o'brien; drop table resources" in params


def test_a_cursor_with_sort_values_is_refused(store: Repository) -> None:
    q = parse(("Patient",), [("family", "smith")], store.registry)
    q.cursor = Cursor(NEXT, ("Smith",), 3).encode()
    with pytest.raises(Exception, match="does not belong"):
        direct.page(q, 10, rank, Searcher(store.registry).compiler.in_rid_order, False)


class _Held(Searcher):
    """A searcher whose every plan keeps to some patients' compartments, as the access guard's
    restriction does (GuardedSearcher), for the expression and the direct page alike."""

    def __init__(self, repo: Repository, patients: list[str], direct_pages: bool) -> None:
        super().__init__(repo.registry)
        c, r = schema.compartments, schema.resources
        self.extra = [~exists().where(c.c.rid == r.c.rid, c.c.patient_id.not_in(patients)),
                      r.c.res_type.not_in(["Condition"])]
        self.direct = direct_pages

    def plan(self, q: Any) -> Any:
        p = super().plan(q)
        p.conds.extend(self.extra)
        return p

    def direct_conditions(self, q: Any, postgres: bool) -> tuple[str, list[Any]] | None:
        return direct.conditions_sql(self.extra, postgres)


@FEW
@given(st.lists(OBS_PARAMS, min_size=1, max_size=2), st.integers(1, 5),
       st.lists(st.integers(0, 31), min_size=0, max_size=6))
def test_restricted_pages_are_the_same_both_ways(store: Repository, params: list[tuple[str, str]], count: int,
                                                 allowed: list[int]) -> None:
    patients = [f"p{n}" for n in allowed] or ["nobody"]
    fast, slow = _Held(store, patients, True), _Held(store, patients, False)
    assert fast.direct_ok(parse(("Observation",), params, store.registry))
    got = _pages(fast, store, "Observation", params, count)
    assert got == _pages(slow, store, "Observation", params, count)
    assert {"p" + i[1:].split("-")[0] for page in got for i in page} <= set(patients)  # o{n}-{k} is p{n}'s


INCLUDES = st.sampled_from([
    ("Observation", "_include", "Observation:subject"), ("Observation", "_include", "Observation:performer"),
    ("Observation", "_include", "Observation:subject:Patient"), ("Observation", "_include", "Observation:*"),
    ("Observation", "_include:iterate", "PractitionerRole:practitioner"),
    ("Observation", "_include:iterate", "Patient:general-practitioner"),
    ("Patient", "_revinclude", "Observation:subject"), ("Patient", "_revinclude", "Observation:patient"),
    ("Patient", "_include", "Patient:general-practitioner"), ("Patient", "_revinclude:iterate", "Observation:performer"),
    ("Patient", "_include:iterate", "PractitionerRole:organization"),
])


def _with_includes(searcher: Searcher, repo: Repository, res_type: str, params: list[tuple[str, str]],
                   count: int) -> list[tuple[list[str], list[str]]]:
    out = []
    with repo.reading() as conn:
        q = parse((res_type,), params, repo.registry)
        for _ in range(40):
            res = searcher.run(conn, q, count)
            out.append(([h.res_id for h in res.matches], sorted(f"{h.res_type}/{h.res_id}" for h in res.included)))
            if res.next_cursor is None:
                break
            q.cursor = res.next_cursor
    return out


@FEW
@given(st.data(), st.integers(1, 9))
def test_include_pages_are_the_same_both_ways(store: Repository, data: st.DataObject, count: int) -> None:
    res_type = data.draw(st.sampled_from(["Observation", "Patient"]))
    clauses = data.draw(st.lists(OBS_PARAMS if res_type == "Observation" else PATIENT_PARAMS, max_size=2))
    includes = data.draw(st.lists(INCLUDES.filter(lambda i: i[0] == res_type), min_size=1, max_size=3))
    params = clauses + [(name, value) for _, name, value in includes]
    fast, slow = Searcher(store.registry), Searcher(store.registry)
    slow.direct = False
    got = _with_includes(fast, store, res_type, params, count)
    assert got == _with_includes(slow, store, res_type, params, count)


def test_includes_find_what_they_should(store: Repository) -> None:
    """Observation o1-0's performer is role1 (dr1's), its subject p1 (GP dr1); iterating
    reaches the practitioner through the role, and the revinclude finds p1's three."""
    params = [("_id", "o1-0"), ("_include", "Observation:performer"), ("_include", "Observation:subject"),
              ("_include:iterate", "PractitionerRole:practitioner")]
    pages = _with_includes(Searcher(store.registry), store, "Observation", params, 10)
    assert pages == [(["o1-0"], ["Patient/p1", "Practitioner/dr1", "PractitionerRole/role1"])]
    params = [("_id", "p1"), ("_revinclude", "Observation:subject")]
    assert _with_includes(Searcher(store.registry), store, "Patient", params, 10) == [
        (["p1"], ["Observation/o1-0", "Observation/o1-1", "Observation/o1-2"])]
