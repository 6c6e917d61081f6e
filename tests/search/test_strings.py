"""String and uri search (http://hl7.org/fhir/R4/search.html#string, #uri): starts-with,
case- and accent-insensitive by default, :exact, :contains, :missing, escaping of \\, \\$ \\| \\\\,
and uri :above/:below, compared with the oracle."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.search import oracle
from tests.search.support import FEW, Fhir, check

SYLLABLES = ["jo", "jö", "JO", "se", "sé", "Sé", "ren", "Rén", "ñu", "nu", "ça", "CA", "Ål", "al", "mü",
             "MU", "o'", "-", "zé", "ze"]
ACCENTED = {"o": "ö", "e": "é", "u": "ü", "n": "ñ", "c": "ç", "a": "å", "O": "Ö", "E": "É"}


def family(rng: random.Random) -> str:
    words = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 2))]
    return " ".join(words)


def patient(pid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **fields}


def dataset() -> list[dict[str, Any]]:
    rng = random.Random(777)
    out = [patient(f"r{i}", name=[{"family": family(rng), "given": [family(rng)]}]) for i in range(40)]
    out += [
        patient("smith", name=[{"family": "Smith", "given": ["John", "Paul"], "prefix": ["Dr"]}],
                address=[{"city": "Leeds"}]),
        patient("smythe", name=[{"family": "Smythe", "given": ["Jane"]}], address=[{"city": "London"}]),
        patient("zoe", name=[{"family": "Zoë", "given": ["Renée"]}]),
        patient("ZOE", name=[{"family": "ZOE", "given": ["RENEE"]}]),
        patient("comma", name=[{"family": "Smith,Jones"}]),
        patient("pipe", name=[{"family": "Pipe|Line$Co"}]),
        patient("slash", name=[{"family": "Back\\Slash"}]),
        patient("percent", name=[{"family": "50%_off"}]),
        patient("plain5", name=[{"family": "50 xoff"}]),
        patient("noname"),
        patient("spaces", name=[{"family": "van  der   Berg"}]),
    ]
    out += [{"resourceType": "ValueSet", "id": vid, "status": "active", **({"url": url} if url else {})}
            for vid, url in [("a", "http://acme.org/fhir/ValueSet/a"), ("b", "http://acme.org/fhir/ValueSet/b"),
                             ("ab", "http://acme.org/fhir/ValueSet/ab"), ("other", "http://acme.org/other/x"),
                             ("root", "http://acme.org/fhir"), ("oid", "urn:oid:1.2.3.4"), ("nourl", None)]]
    return out


@pytest.fixture(scope="module")
def data(db: Fhir) -> oracle.Oracle:
    return oracle.Oracle(db.load(dataset()).values())


def test_default_is_case_and_accent_insensitive_starts_with(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family", "smi")]) == {"smith", "comma"}
    assert check(db, data, "Patient", [("family", "SM")]) >= {"smith", "smythe", "comma"}
    assert check(db, data, "Patient", [("family", "zoe")]) == {"zoe", "ZOE"}
    assert check(db, data, "Patient", [("family", "ZOË")]) == {"zoe", "ZOE"}
    assert check(db, data, "Patient", [("given", "renee")]) >= {"zoe", "ZOE"}
    assert "smith" not in check(db, data, "Patient", [("family", "mith")])  # not a substring match


def test_name_matches_any_part_of_a_human_name(db: Fhir, data: oracle.Oracle) -> None:
    for part in ("smith", "john", "paul", "dr"):
        assert "smith" in check(db, data, "Patient", [("name", part)])


def test_exact_is_case_and_accent_sensitive_whole_string(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family:exact", "Zoë")]) == {"zoe"}
    assert check(db, data, "Patient", [("family:exact", "zoë")]) == set()
    assert check(db, data, "Patient", [("family:exact", "Zoe")]) == set()
    assert check(db, data, "Patient", [("family:exact", "Smit")]) == set()
    assert check(db, data, "Patient", [("family:exact", "Smith,Smythe")]) == {"smith", "smythe"}


def test_contains_matches_anywhere(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family:contains", "mYt")]) == {"smythe"}
    assert check(db, data, "Patient", [("family:contains", "ones")]) == {"comma"}
    assert check(db, data, "Patient", [("address-city:contains", "on")]) == {"smythe"}


def test_sql_wildcards_are_literal(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family:contains", "%_")]) == {"percent"}
    assert check(db, data, "Patient", [("family", "50%")]) == {"percent"}
    assert check(db, data, "Patient", [("family:contains", "0_o")]) == set()


def test_escaped_comma_pipe_dollar_and_backslash_are_literal(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family", "smith\\,jones")]) == {"comma"}
    assert check(db, data, "Patient", [("family:exact", "Smith\\,Jones")]) == {"comma"}
    assert check(db, data, "Patient", [("family:exact", "Smith,Jones")]) == {"smith"}  # OR of two
    assert check(db, data, "Patient", [("family:exact", "Pipe\\|Line\\$Co")]) == {"pipe"}
    assert check(db, data, "Patient", [("family:exact", "Back\\\\Slash")]) == {"slash"}
    assert check(db, data, "Patient", [("family", "back\\\\")]) == {"slash"}


def test_whitespace_runs_are_one_space(db: Fhir, data: oracle.Oracle) -> None:
    assert "spaces" in check(db, data, "Patient", [("family", "van der b")])


def test_or_and_and(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family", "smith,zoe")]) == {"smith", "comma", "zoe", "ZOE"}
    assert check(db, data, "Patient", [("family", "sm"), ("given", "ja")]) == {"smythe"}


def test_missing(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "Patient", [("family:missing", "true")]) == {"noname"}
    assert "noname" not in check(db, data, "Patient", [("family:missing", "false")])
    assert check(db, data, "Patient", [("address-city:missing", "false")]) == {"smith", "smythe"}


def perturb(text: str, flips: list[bool]) -> str:
    """Change the case or accents of some letters (which must not change what matches)."""
    out = []
    for ch, flip in zip(text, flips + [False] * len(text), strict=False):
        if flip:
            ch = ACCENTED.get(ch, ch.swapcase())
        out.append(ch)
    return "".join(out)


@st.composite
def string_queries(draw: st.DrawFn, families: list[str]) -> str:
    if draw(st.booleans()):
        base = draw(st.sampled_from(families))
        start = draw(st.integers(0, max(0, len(base) - 1))) if draw(st.booleans()) else 0
        end = draw(st.integers(start + 1, len(base)))
        text = base[start:end]
    else:
        text = "".join(draw(st.lists(st.sampled_from(SYLLABLES), min_size=1, max_size=3)))
    text = perturb(text, draw(st.lists(st.booleans(), max_size=len(text))))
    return text.strip() or "x"


FAMILIES = [n["family"] for r in dataset() if r["resourceType"] == "Patient" for n in r.get("name", [])]


@FEW
@given(st.sampled_from([None, "contains", "exact"]), string_queries(FAMILIES))
def test_random_accented_strings_agree_with_the_oracle(db: Fhir, data: oracle.Oracle, modifier: str | None,
                                                      text: str) -> None:
    name = f"family:{modifier}" if modifier else "family"
    check(db, data, "Patient", [(name, text.replace("\\", "\\\\").replace(",", "\\,"))])


def test_uri_is_matched_exactly(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "ValueSet", [("url", "http://acme.org/fhir/ValueSet/a")]) == {"a"}
    assert check(db, data, "ValueSet", [("url", "http://acme.org/fhir/ValueSet")]) == set()
    assert check(db, data, "ValueSet", [("url", "HTTP://ACME.ORG/fhir/ValueSet/a")]) == set()
    assert check(db, data, "ValueSet", [("url", "urn:oid:1.2.3.4")]) == {"oid"}


def test_uri_below_and_above(db: Fhir, data: oracle.Oracle) -> None:
    assert check(db, data, "ValueSet", [("url:below", "http://acme.org/fhir/")]) == {"a", "b", "ab"}
    assert check(db, data, "ValueSet", [("url:below", "http://acme.org/")]) == {"a", "b", "ab", "other", "root"}
    assert check(db, data, "ValueSet", [("url:above", "http://acme.org/fhir/ValueSet/a/_history/2")]) \
        == {"a", "root"}
    assert check(db, data, "ValueSet", [("url:missing", "true")]) == {"nourl"}


def test_a_string_modifier_that_does_not_exist_is_400(db: Fhir) -> None:
    assert "below" in db.error("Patient", {"family:below": "x"})
