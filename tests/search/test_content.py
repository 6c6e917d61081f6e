"""``_content``: text search over the whole resource (http://hl7.org/fhir/R4/search.html#text),
case- and accent-insensitive, compared with the brute-force :func:`tests.search.oracle.resource_words`
over random resources that put words in every kind of place: names, codes, displays, notes,
extensions, the narrative, contained resources, and the places that are not text (ids, urls,
systems, references, meta, dates)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check

WORDS = ["Pénicilline", "ALLERGY", "wheelchair", "Zoë", "façade", "stairs", "falls", "insulin",
         "diabète", "hoist", "O'Brien", "night-sitter", "ß-blocker", "x", "care_plan", "2nd"]
TYPES = ("Patient", "Observation", "Condition")


def phrase(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, rng.randint(1, 3)))


def narrative(rng: random.Random) -> dict[str, str]:
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p class="{rng.choice(WORDS)}">'
                   f"{phrase(rng)} &amp; {phrase(rng)}</p></div>"}


def not_text(rng: random.Random) -> dict[str, Any]:
    """Words only where they are not text: they must never be found."""
    w = rng.choice(WORDS).lower().replace(" ", "")
    return {"meta": {"tag": [{"system": f"http://example.org/{w}", "code": w, "display": w}]},
            "extension": [{"url": f"http://example.org/fhir/{w}", "valueDateTime": "2024-03-05T10:00:00Z"}]}


def patient(rng: random.Random, i: int) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Patient", "id": f"pat{i}", **not_text(rng),
                         "name": [{"family": rng.choice(WORDS), "given": [rng.choice(WORDS)]}]}
    if rng.random() < 0.5:
        r["address"] = [{"line": [phrase(rng)], "city": rng.choice(WORDS)}]
    if rng.random() < 0.4:
        r["text"] = narrative(rng)
    if rng.random() < 0.3:
        r["contained"] = [{"resourceType": "RelatedPerson", "id": "carer", "patient": {"reference": f"Patient/pat{i}"},
                           "name": [{"text": phrase(rng)}]}]
        r["link"] = [{"other": {"reference": "#carer"}, "type": "seealso"}]
    return r


def observation(rng: random.Random, i: int) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": f"obs{i}", "status": "final", **not_text(rng),
                         "code": {"coding": [{"system": f"http://example.org/{rng.choice(WORDS)}",
                                              "code": rng.choice(WORDS), "display": phrase(rng)}]},
                         "effectiveDateTime": "2023-01-02T03:04:05+01:00",
                         "subject": {"reference": f"Patient/pat{rng.randrange(12)}", "display": rng.choice(WORDS)}}
    if rng.random() < 0.5:
        r["valueString"] = phrase(rng)
    if rng.random() < 0.5:
        r["note"] = [{"text": phrase(rng)}]
    return r


def condition(rng: random.Random, i: int) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"con{i}", **not_text(rng),
            "subject": {"reference": f"Patient/pat{rng.randrange(12)}"},
            "code": {"text": phrase(rng)}, "onsetString": phrase(rng),
            "identifier": [{"system": "http://example.org/ids", "value": rng.choice(WORDS)}]}


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(11)
    return ([patient(rng, i) for i in range(12)] + [observation(rng, i) for i in range(15)]
            + [condition(rng, i) for i in range(10)])


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def variants(word: str) -> st.SearchStrategy[str]:
    """A word as a client might type it: any case, accents dropped, or just its start."""
    plain = oracle.fold(word)
    return st.sampled_from([word, word.upper(), plain, plain[:3], word[:2], plain + "zz"])


def values() -> st.SearchStrategy[str]:
    one = st.sampled_from(WORDS).flatmap(variants)
    return st.lists(one, min_size=1, max_size=2).map(" ".join)


@FEW
@given(st.lists(values(), min_size=1, max_size=2), st.sampled_from(TYPES))
def test_random_content_searches_agree_with_the_oracle(db: Fhir, data: oracle.Oracle,
                                                       ors: list[str], res_type: str) -> None:
    check(db, data, res_type, [("_content", ",".join(v.replace(",", "\\,") for v in ors))])


@FEW
@given(values(), values(), st.sampled_from(WORDS))
def test_content_with_other_clauses_agrees_with_the_oracle(db: Fhir, data: oracle.Oracle,
                                                           a: str, b: str, family: str) -> None:
    """As the driver, as a probe beside a name, and two _content clauses ANDed."""
    check(db, data, "Patient", [("family", oracle.fold(family)[:3]), ("_content", a)])
    check(db, data, "Patient", [("_content", a), ("_content", b)])


def test_words_in_ids_urls_systems_references_meta_and_dates_are_not_found(db: Fhir, data: oracle.Oracle) -> None:
    assert db.ids("Observation", {"_content": "pat1"}) == set()  # only in subject.reference
    assert db.ids("Observation", {"_content": "example"}) == set()  # only in systems and urls
    assert db.ids("Patient", {"_content": "2024"}) == set()  # only in a dateTime
    assert check(db, data, "Patient", [("_content", "wheelchair")])  # but words elsewhere are


def test_the_narrative_and_contained_resources_count(db: Fhir, data: oracle.Oracle) -> None:
    with_text = [r for r in data.resources if r["resourceType"] == "Patient" and "text" in r]
    with_contained = [r for r in data.resources if r["resourceType"] == "Patient" and "contained" in r]
    assert with_text and with_contained
    for r in (with_text[0], with_contained[0]):
        own = oracle.resource_words(r) - oracle.resource_words({k: v for k, v in r.items()
                                                                 if k not in ("text", "contained")})
        for word in own:
            assert r["id"] in check(db, data, "Patient", [("_content", word)])


def test_system_level_content_search(db: Fhir, data: oracle.Oracle) -> None:
    for word in ("insulin", "hoist", "FALLS"):
        expected = {f"{t}/{i}" for t in TYPES for i in data.select(t, [("_content", word)])[0]}
        assert db.keys("", {"_content": word, "_type": ",".join(TYPES)}) == expected
        assert db.keys("", {"_content": word}) == expected  # every type


@pytest.mark.parametrize("params", [{"_content:exact": "falls"}, {"_content": "!!"}, {"_text:contains": "x"}])
def test_modifiers_and_values_without_words_are_400(db: Fhir, params: dict[str, str]) -> None:
    assert db.error("Patient", params)
