"""Paging (http://hl7.org/fhir/R4/search.html#paging, http.html#paging): next, previous,
first and last links return every match exactly once, in the sort order, and stay correct
when resources are created or deleted between pages (no offset drift)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from tests.conftest import wipe
from tests.search.support import FEW, Fhir, included, link, matches

FAMILIES = ["adams", "baker", "clark", "davis", "evans"]


def patients(n: int, seed: int = 1, prefix: str = "p") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p: dict[str, Any] = {"resourceType": "Patient", "id": f"{prefix}{i:03d}", "gender": rng.choice(["male", "female"]),
                             "name": [{"family": rng.choice(FAMILIES)}]}
        if rng.random() < 0.8:
            p["birthDate"] = f"{rng.randint(1950, 1955)}-0{rng.randint(1, 3)}-1{rng.randint(0, 2)}"
        out.append(p)
    return out


def ids(resources: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in resources]


def walk(fhir: Fhir, start: str, params: Any = None, relation: str = "next") -> list[list[str]]:
    """The ids of each page from ``start`` following ``relation``."""
    return [ids(matches(body)) for body in fhir.pages(start, params, relation)]


def order_key(r: dict[str, Any], spec: str) -> tuple[Any, ...]:
    """The server's documented order for these keys: values ascending or descending, resources
    without the value last in both directions; ties in creation order (not checked here)."""
    out: list[Any] = []
    for k in spec.split(","):
        desc = k.startswith("-")
        code = k.lstrip("-")
        v = r["name"][0]["family"] if code == "family" else r.get("birthDate") if code == "birthdate" else \
            r["gender"] if code == "gender" else r["id"]
        if v is None:
            out.append((1, ""))
        elif desc:
            out.append((0, (*(-ord(c) for c in v), 1)))  # 1: a prefix sorts after
        else:
            out.append((0, tuple(ord(c) for c in v)))
    return tuple(out)


def assert_in_order(found: list[dict[str, Any]], spec: str) -> None:
    keys = [order_key(r, spec) for r in found]
    assert keys == sorted(keys), f"_sort={spec} out of order: {ids(found)}"


@pytest.mark.parametrize("count", [1, 2, 7, 25, 100])
@pytest.mark.parametrize("sort", [None, "family", "-birthdate,family", "gender,-family,birthdate", "-_id"])
def test_next_links_return_every_match_once_in_order(fhir: Fhir, count: int, sort: str | None) -> None:
    data = patients(25)
    fhir.load(data)
    params = {"_count": count, **({"_sort": sort} if sort else {})}
    pages = walk(fhir, "Patient", params)
    flat = [i for page in pages for i in page]
    assert sorted(flat) == sorted(ids(data)) and len(flat) == len(set(flat))
    assert all(len(p) == count for p in pages[:-1]) and 0 < len(pages[-1]) <= count
    if sort:
        assert_in_order([next(r for r in data if r["id"] == i) for i in flat], sort)


@pytest.mark.parametrize("sort", [None, "family,birthdate", "-birthdate"])
def test_previous_links_walk_back_over_the_same_pages(fhir: Fhir, sort: str | None) -> None:
    fhir.load(patients(23))
    params = {"_count": 5, **({"_sort": sort} if sort else {})}
    forward = walk(fhir, "Patient", params)
    last = link(fhir.bundle("Patient", params), "last")
    assert last is not None
    backward = walk(fhir, last, relation="previous")
    flat = [i for page in forward for i in page]
    assert [i for page in reversed(backward) for i in page] == flat
    assert backward[0] == flat[-len(backward[0]):] and len(backward[0]) in (3, 5)


def test_first_last_and_self_links(fhir: Fhir) -> None:
    fhir.load(patients(12))
    first = fhir.bundle("Patient", {"_count": 5, "_sort": "family"})
    assert link(first, "previous") is None
    second = fhir.bundle(link(first, "next"))  # type: ignore[arg-type]
    assert link(second, "previous") and link(second, "first")
    assert ids(matches(fhir.bundle(link(second, "first")))) == ids(matches(first))  # type: ignore[arg-type]
    assert ids(matches(fhir.bundle(link(second, "previous")))) == ids(matches(first))  # type: ignore[arg-type]
    last = fhir.bundle(link(second, "last"))  # type: ignore[arg-type]
    assert link(last, "next") is None and link(last, "previous")
    everything = ids(fhir.search("Patient", {"_count": 100, "_sort": "family"}))
    assert ids(matches(last)) == everything[-len(matches(last)):] and len(matches(last)) in (2, 5)
    assert fhir.bundle(link(second, "self"))["entry"] == second["entry"]  # type: ignore[arg-type]


def test_a_single_page_has_no_next_or_previous(fhir: Fhir) -> None:
    fhir.load(patients(3))
    body = fhir.bundle("Patient", {"_count": 10})
    assert link(body, "next") is None and link(body, "previous") is None and len(matches(body)) == 3


def test_no_matches_is_an_empty_page(fhir: Fhir) -> None:
    fhir.load(patients(3))
    body = fhir.bundle("Patient", {"family": "nobody", "_count": 2})
    assert matches(body) == [] and link(body, "next") is None
    last = link(body, "last")
    assert last is None or matches(fhir.bundle(last)) == []


@pytest.mark.parametrize("sort", [None, "family", "-family,birthdate"])
def test_creating_and_deleting_between_pages_does_not_shift_pages(fhir: Fhir, sort: str | None) -> None:
    data = patients(20)
    fhir.load(data)
    params = {"_count": 4, **({"_sort": sort} if sort else {})}
    page = fhir.bundle("Patient", params)
    seen = ids(matches(page))
    # Before reading on: delete two already-seen resources, create ones that sort first, last
    # and in between, and delete one not yet seen.
    fhir.delete(f"Patient/{seen[0]}")
    fhir.delete(f"Patient/{seen[1]}")
    unseen = [r["id"] for r in data if r["id"] not in seen]
    fhir.delete(f"Patient/{unseen[-1]}")
    fhir.load([{"resourceType": "Patient", "id": f"new{i}", "name": [{"family": fam}], "birthDate": "1952-02-11"}
               for i, fam in enumerate(["aaron", "baker", "zed"])])
    nxt = link(page, "next")
    while nxt:
        page = fhir.bundle(nxt)
        seen += ids(matches(page))
        nxt = link(page, "next")
    assert len(seen) == len(set(seen)), f"a resource came twice: {seen}"
    throughout = {r["id"] for r in data} - {unseen[-1]}
    assert throughout <= set(seen), f"missed {throughout - set(seen)}"
    assert unseen[-1] not in seen


def test_includes_come_with_each_page(fhir: Fhir) -> None:
    fhir.load([{"resourceType": "Organization", "id": f"org{i}", "name": f"Org {i}"} for i in range(3)] +
              [{"resourceType": "Patient", "id": f"p{i}", "managingOrganization": {"reference": f"Organization/org{i % 3}"}}
               for i in range(9)])
    for body in fhir.pages("Patient", {"_count": 2, "_include": "Patient:organization", "_total": "accurate"}):
        orgs = {r["managingOrganization"]["reference"] for r in matches(body)}
        assert {f"Organization/{r['id']}" for r in included(body)} == orgs
        assert body["total"] == 9


def test_a_cursor_from_another_search_is_refused_or_harmless(fhir: Fhir) -> None:
    fhir.load(patients(6))
    nxt = link(fhir.bundle("Patient", {"_count": 2, "_sort": "family,birthdate"}), "next")
    assert nxt is not None
    cursor = dict(p.split("=", 1) for p in nxt.split("?", 1)[1].split("&"))["_cursor"]
    r = fhir.get("Patient", {"_count": 2, "_sort": "gender", "_cursor": cursor})
    assert r.status_code in (200, 400)


@FEW
@given(seed=st.integers(0, 10_000), n=st.integers(0, 14), count=st.integers(1, 6),
       sort=st.sampled_from([None, "family", "-family", "birthdate", "-birthdate,family", "gender,-birthdate",
                             "_id", "-_id", "family,-_id"]),
       changes=st.lists(st.tuples(st.sampled_from(["create", "delete"]), st.integers(0, 99)), max_size=6))
def test_random_paging_with_writes_between_pages(fhir: Fhir, engine: Engine, seed: int, n: int, count: int,
                                                 sort: str | None, changes: list[tuple[str, int]]) -> None:
    wipe(engine)
    data = patients(n, seed)
    if data:
        fhir.load(data)
    params = {"_count": count, **({"_sort": sort} if sort else {})}
    page = fhir.bundle("Patient", params)
    found = list(matches(page))
    alive = {r["id"] for r in data}
    deleted: set[str] = set()
    extra = patients(len(changes), seed + 1, prefix="n")
    nxt = link(page, "next")
    step = 0
    while nxt:
        if step < len(changes):  # one write before each further page
            op, pick = changes[step]
            if op == "create":
                fhir.put(extra[step])
            elif alive - deleted:
                victim = sorted(alive - deleted)[pick % len(alive - deleted)]
                fhir.delete(f"Patient/{victim}")
                deleted.add(victim)
            step += 1
        page = fhir.bundle(nxt)
        found += matches(page)
        nxt = link(page, "next")
    got = ids(found)
    assert len(got) == len(set(got)), f"duplicates: {got}"
    assert alive - deleted <= set(got), f"missed {sorted(alive - deleted - set(got))}"
    assert set(got) <= alive | {r["id"] for r in extra}
    if sort:
        assert_in_order(found, sort)
