"""``_contained`` and ``_containedType`` (http://hl7.org/fhir/R4/search.html#contained),
compared with the brute-force oracle run over the contained resources themselves: a contained
resource matches by its own search parameters, is returned alone with the fullUrl
``<container>#<id>`` or as its container, and ordinary searches never see it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check, matches

FAMILIES = ["Able", "Baker", "Cole", "Dunn", "Élan"]
LOINC = "http://loinc.org"
CODES = ["8867-4", "8480-6", "29463-7"]


def person(rng: random.Random, pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": rng.choice(FAMILIES)}],
            "gender": rng.choice(["male", "female"]), "birthDate": f"19{rng.randint(40, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}


def obs(rng: random.Random, oid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": rng.choice(["final", "amended"]),
            "code": {"coding": [{"system": LOINC, "code": rng.choice(CODES)}]}}


def dataset() -> list[dict[str, Any]]:
    """Top-level Patients and Observations, and containers holding more of both: Lists (any
    number, referenced from their entries) and DiagnosticReports (a contained subject). The
    same contained ids recur in different containers."""
    rng = random.Random(23)
    out: list[dict[str, Any]] = [person(rng, f"p{i}") for i in range(8)] + [obs(rng, f"o{i}") for i in range(8)]
    for i in range(7):
        inner = [person(rng, f"cp{j}") for j in range(rng.randint(0, 3))] + \
                [obs(rng, f"co{j}") for j in range(rng.randint(0, 2))]
        out.append({"resourceType": "List", "id": f"l{i}", "status": "current", "mode": "working",
                    **({"contained": inner} if inner else {}),
                    "entry": [{"item": {"reference": f"#{c['id']}"}} for c in inner]
                    or [{"item": {"reference": "Patient/p0"}}]})
    for i in range(5):
        out.append({"resourceType": "DiagnosticReport", "id": f"dr{i}", "status": "final", "code": {"text": "x"},
                    "contained": [person(rng, "subj")], "subject": {"reference": "#subj"}})
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def expected(data: oracle.Oracle, res_type: str, query: list[tuple[str, str]], contained: str,
             kind: str) -> tuple[set[str], set[str]]:
    """(must, may) as entry URLs relative to the base: ``Type/id`` for resources and
    containers, ``Type/id#inner`` for contained resources returned alone."""
    must: set[str] = set()
    may: set[str] = set()
    for r in data.resources:
        for c in r.get("contained", []):
            if c["resourceType"] != res_type:
                continue
            got = data.matches(c, query)
            url = f"{r['resourceType']}/{r['id']}" + (f"#{c['id']}" if kind == "contained" else "")
            (must if got is True else may if got is None else set()).add(url)
    if contained == "both":
        top_must, top_may = data.select(res_type, query)
        must |= {f"{res_type}/{i}" for i in top_must}
        may |= {f"{res_type}/{i}" for i in top_may}
    return must, may - must


def found(db: Fhir, res_type: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every match entry over all pages."""
    return [e for body in db.pages(res_type, params) for e in body.get("entry", [])
            if e.get("search", {}).get("mode") == "match"]


def relative(db: Fhir, entry: dict[str, Any]) -> str:
    url: str = entry["fullUrl"]
    assert url.startswith(db.base + "/"), url
    return url[len(db.base) + 1:]


def clauses(res_type: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    if res_type == "Patient":
        one = st.one_of(st.sampled_from(FAMILIES).map(lambda f: ("family", f[:2])),
                        st.sampled_from(["male", "female"]).map(lambda g: ("gender", g)),
                        st.sampled_from(["ge1970", "lt1960-05", "1955"]).map(lambda d: ("birthdate", d)),
                        st.sampled_from(["cp0", "cp1,subj", "p1"]).map(lambda i: ("_id", i)))
    else:
        one = st.one_of(st.sampled_from(CODES).map(lambda c: ("code", f"{LOINC}|{c}")),
                        st.sampled_from(["final", "amended"]).map(lambda s: ("status", s)))
    return st.lists(one, min_size=0, max_size=2)


@FEW
@given(st.sampled_from(["Patient", "Observation"]).flatmap(lambda t: st.tuples(st.just(t), clauses(t))),
       st.sampled_from(["true", "both"]), st.sampled_from([None, "contained", "container"]), st.sampled_from([None, "3"]))
def test_random_contained_searches_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, search: tuple[str, list[tuple[str, str]]],
                                                         contained: str, kind: str | None, count: str | None) -> None:
    res_type, query = search
    params = [*query, ("_contained", contained)] + ([("_containedType", kind)] if kind else []) \
        + ([("_count", count)] if count else [])
    entries = found(db, res_type, params)
    urls = [relative(db, e) for e in entries]
    assert len(urls) == len(set(urls)), f"an entry twice across pages: {urls}"
    must, may = expected(data, res_type, query, contained, kind or "contained")
    got = set(urls)
    assert must <= got <= must | may, f"{params}: missing {sorted(must - got)}, unexpected {sorted(got - must - may)}"
    for e in entries:  # a contained match is the contained resource itself, as it is in its container
        url = relative(db, e)
        if "#" in url:
            container, inner = url.split("#")
            [c] = [c for c in data.by_key[tuple(container.split("/"))]["contained"] if c["id"] == inner]
            assert e["resource"] == c
        else:
            assert e["resource"] == data.by_key[tuple(url.split("/"))]


@pytest.mark.parametrize("res_type", ["Patient", "Observation"])
def test_ordinary_searches_never_see_contained_resources(db: Fhir, data: oracle.Oracle, res_type: str) -> None:
    """_contained=false (the default) is the search as it always was."""
    own = [("family", "a")] if res_type == "Patient" else [("status", "final")]
    for query in ([], [("_id", "cp0,subj,co0")], own):
        got = check(db, data, res_type, query)
        assert got == db.ids(res_type, [*query, ("_contained", "false")])
        assert not got & {"cp0", "cp1", "subj", "co0", "co1"}


def test_pages_of_both_go_forwards_and_back_across_contained_and_resources(db: Fhir, data: oracle.Oracle) -> None:
    params = [("_contained", "both"), ("_count", "2")]
    forwards = [relative(db, e) for body in db.pages("Patient", params) for e in matches_with_url(body)]
    last = db.bundle("Patient", [*params, ("_cursor", "last")])
    backwards = [relative(db, e) for body in db.pages(last_url(last), relation="previous")
                 for e in reversed(matches_with_url(body))]
    assert forwards == list(reversed(backwards))
    must, _ = expected(data, "Patient", [], "both", "contained")
    assert set(forwards) == must


def matches_with_url(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match"]


def last_url(body: dict[str, Any]) -> str:
    return [x["url"] for x in body["link"] if x["relation"] == "self"][0]


@pytest.mark.parametrize("kind", ["contained", "container"])
def test_total_counts_what_the_pages_hold(db: Fhir, data: oracle.Oracle, kind: str) -> None:
    for contained in ("true", "both"):
        params = [("family", "b"), ("_contained", contained), ("_containedType", kind), ("_total", "accurate")]
        body = db.bundle("Patient", params)
        assert body["total"] == len(found(db, "Patient", params))
        count = db.bundle("Patient", [*params[:-1], ("_summary", "count")])
        assert count["total"] == body["total"] and not count.get("entry")


def test_a_contained_match_is_returned_alone_with_its_containers_url(db: Fhir, data: oracle.Oracle) -> None:
    body = db.bundle("Patient", {"_id": "subj", "_contained": "true", "_count": "50"})
    assert {relative(db, e) for e in body["entry"]} == {f"DiagnosticReport/dr{i}#subj" for i in range(5)}
    assert all(r["resourceType"] == "Patient" and r["id"] == "subj" for r in matches(body))
    containers = db.bundle("Patient", {"_id": "subj", "_contained": "true", "_containedType": "container"})
    assert {r["id"] for r in matches(containers)} == {f"dr{i}" for i in range(5)}


@pytest.mark.parametrize(("params", "where"), [
    ({"_contained": "maybe"}, "_contained"),
    ({"_contained": "true", "_containedType": "both"}, "_containedType"),
    ({"_contained": "true", "_sort": "family"}, "_sort"),
    ({"_contained": "both", "_lastUpdated": "gt2000"}, "_lastUpdated"),
])
def test_what_a_contained_search_cannot_do_is_400_with_where(db: Fhir, params: dict[str, str], where: str) -> None:
    r = db.get("Patient", params)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["expression"] == [where] and issue["diagnostics"]
