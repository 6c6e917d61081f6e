"""SMART scopes in v1 and v2 syntax parse to the same permissions, and decide interactions
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carerecord.access.scopes import ScopeError, ScopeSet, Verdict, parse_scope, query_satisfies

contexts = st.sampled_from(["patient", "user", "system"])
types = st.sampled_from(["*", "Patient", "Observation", "MedicationRequest", "AllergyIntolerance"])
letters = st.sets(st.sampled_from("cruds"), min_size=1).map(lambda s: "".join(c for c in "cruds" if c in s))
FAST = settings(max_examples=200, deadline=None, derandomize=True, database=None)


@FAST
@given(contexts, types, letters)
def test_a_v2_scope_round_trips_through_its_canonical_text(context: str, rtype: str, perms: str) -> None:
    scope = parse_scope(f"{context}/{rtype}.{perms}")
    assert scope.text() == f"{context}/{rtype}.{perms}" and scope.version == 2
    assert parse_scope(scope.text()) == scope


@FAST
@given(contexts, types)
def test_v1_read_write_and_star_mean_rs_cud_and_cruds(context: str, rtype: str) -> None:
    for v1, v2 in (("read", "rs"), ("write", "cud"), ("*", "cruds")):
        assert parse_scope(f"{context}/{rtype}.{v1}").interactions == parse_scope(f"{context}/{rtype}.{v2}").interactions


@FAST
@given(contexts, types, st.permutations("cruds"), st.integers(2, 5))
def test_v2_letters_out_of_order_are_refused(context: str, rtype: str, order: list[str], n: int) -> None:
    perms = "".join(order[:n])
    in_order = "".join(c for c in "cruds" if c in perms)
    if perms != in_order:
        with pytest.raises(ScopeError):
            parse_scope(f"{context}/{rtype}.{perms}")


@pytest.mark.parametrize("bad", ["patient/Patient", "admin/*.read", "user/observation.read", "user/*.",
                                 "user/*.rx", "user/*.read?category=x", "patient/Observation.rs?", "system/*"])
def test_malformed_scopes_are_refused(bad: str) -> None:
    with pytest.raises(ScopeError):
        ScopeSet.parse(f"openid {bad}")


def test_each_interaction_is_allowed_only_by_a_scope_of_its_letter_type_and_context() -> None:
    scopes = ScopeSet.parse("patient/Observation.rs user/Patient.cu system/*.d")
    decided = {(c, t, i): scopes.decide(c, t, i).verdict is Verdict.ALLOWED
               for c, t, i in itertools.product(("patient", "user", "system"), ("Observation", "Patient"), "cruds")}
    assert {k for k, v in decided.items() if v} == {
        ("patient", "Observation", "r"), ("patient", "Observation", "s"), ("user", "Patient", "c"),
        ("user", "Patient", "u"), ("system", "Observation", "d"), ("system", "Patient", "d")}


def test_a_query_restricted_scope_allows_only_searches_that_carry_the_restriction() -> None:
    scopes = ScopeSet.parse("patient/Observation.rs?category=laboratory")
    decision = scopes.decide("patient", "Observation", "s")
    assert decision.verdict is Verdict.RESTRICTED and decision.queries == ((("category", "laboratory"),),)
    assert query_satisfies([("category", "laboratory"), ("code", "x")], decision.queries[0])
    assert not query_satisfies([("category", "laboratory,vital-signs")], decision.queries[0])
    assert not query_satisfies([], decision.queries[0])
    assert ScopeSet.parse("patient/Observation.rs?category=laboratory patient/Observation.rs").decide(
        "patient", "Observation", "s").verdict is Verdict.ALLOWED


def test_launch_openid_and_unknown_scopes_are_kept_apart_from_resource_scopes() -> None:
    scopes = ScopeSet.parse("openid fhirUser launch/patient offline_access something-else patient/*.rs")
    assert scopes.others == {"openid", "fhirUser", "launch/patient", "offline_access", "something-else"}
    assert [s.text() for s in scopes.resources] == ["patient/*.rs"]


def test_within_keeps_only_what_the_client_may_have() -> None:
    allowed = ScopeSet.parse("openid launch/patient patient/*.rs user/Observation.cruds patient/Condition.rs?category=x")
    asked = ScopeSet.parse("openid offline_access patient/Patient.read user/Observation.write user/Patient.rs "
                           "patient/Condition.rs patient/Condition.rs?category=x")
    assert asked.within(allowed).text() == (
        "openid patient/Patient.rs user/Observation.cud patient/Condition.rs patient/Condition.rs?category=x")
    narrow = ScopeSet.parse("user/Observation.rs?category=x user/Patient.rs")
    assert ScopeSet.parse("user/Observation.rs").within(narrow).text() == ""  # wider than the allowance
