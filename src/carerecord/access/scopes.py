"""SMART on FHIR scopes, v1 and v2 syntax
(https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

A scope says which resource types a token may touch, with which interactions, in which
context: ``patient/`` (the patient in the launch context, or the patient themselves),
``user/`` (whatever the signed-in user may reach) or ``system/`` (a backend service, no user).
Both syntaxes parse into one :class:`Scope`, whose ``interactions`` are the v2 letters:

    v1  patient/*.read          -> r, s        v2  patient/*.rs
    v1  user/Observation.write  -> c, u, d     v2  user/Observation.cud
    v1  system/*.*              -> c, r, u, d, s
    v2  patient/Observation.rs?category=laboratory   (a query restriction)

A scope only ever narrows what the principal could otherwise do: the relationship, consent and
role checks of the guarded repository (part 2 of issue 4) still apply to what a scope allows.
This module is pure: no I/O, so it can be tested exhaustively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
V2_ORDER = "cruds"
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(V2_ORDER)}
_RESOURCE = re.compile(r"^(\*|[A-Z][A-Za-z]+)$")
_V2 = re.compile(r"^c?r?u?d?s?$")

# Scopes that are not about resources: OpenID Connect and SMART launch requests.
NON_RESOURCE = frozenset({"openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
                          "offline_access", "online_access"})


class ScopeError(ValueError):
    """A scope string that is neither valid v1 nor v2 SMART syntax."""


class Verdict(Enum):
    """What a set of scopes says about one interaction on one resource type."""

    DENIED = "denied"
    ALLOWED = "allowed"  # by at least one scope without a query restriction
    RESTRICTED = "restricted"  # only by scopes with query restrictions (see ``Decision.queries``)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    queries: tuple[tuple[tuple[str, str], ...], ...] = ()  # one per permitting restricted scope

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.DENIED


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: context, resource type (``*`` for all), the v2 interaction letters it
    grants, and its query restriction as (name, value) pairs (empty when unrestricted)."""

    context: str
    resource_type: str
    interactions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()
    version: int = 2

    def permits(self, context: str, resource_type: str, interaction: str) -> bool:
        return (self.context == context and interaction in self.interactions
                and self.resource_type in ("*", resource_type))

    def text(self) -> str:
        """The scope in v2 syntax (the canonical form this server reports)."""
        letters = "".join(c for c in V2_ORDER if c in self.interactions)
        q = "&".join(f"{k}={v}" for k, v in self.query)
        return f"{self.context}/{self.resource_type}.{letters}" + (f"?{q}" if q else "")


def parse_scope(text: str) -> Scope:
    """Parse one resource scope in v1 or v2 syntax; ScopeError if it is neither.

    v1 allows ``read``, ``write`` or ``*`` after the dot; v2 allows a non-empty subsequence of
    ``cruds`` in that order and an optional ``?query`` (v1 scopes take no query)."""
    body, sep, query = text.partition("?")
    context, slash, rest = body.partition("/")
    if not slash or context not in CONTEXTS:
        raise ScopeError(f"{text!r}: a resource scope starts with patient/, user/ or system/")
    resource_type, dot, perms = rest.rpartition(".")
    if not dot or not _RESOURCE.match(resource_type):
        raise ScopeError(f"{text!r}: expected a resource type or * before the dot")
    if perms in _V1:
        if sep:
            raise ScopeError(f"{text!r}: v1 scopes (.read, .write, .*) take no query restriction")
        return Scope(context, resource_type, _V1[perms], (), 1)
    if not perms or not _V2.match(perms):
        raise ScopeError(f"{text!r}: permissions must be read, write, * or letters of cruds in order")
    pairs: tuple[tuple[str, str], ...] = ()
    if sep:
        pairs = tuple(parse_qsl(query, keep_blank_values=False, strict_parsing=False))
        if not pairs:
            raise ScopeError(f"{text!r}: an empty query restriction")
    return Scope(context, resource_type, frozenset(perms), pairs, 2)


@dataclass(frozen=True, slots=True)
class ScopeSet:
    """The scopes of one token: its resource scopes and every other scope string (openid,
    launch/patient, offline_access, ...) as given."""

    resources: tuple[Scope, ...]
    others: frozenset[str]

    @classmethod
    def parse(cls, text: str | None) -> ScopeSet:
        """A space-separated scope string. Unknown non-resource scopes are kept in ``others``
        (a server ignores scopes it does not understand); malformed resource scopes, that is
        anything with a ``/`` that is not a launch scope, raise ScopeError."""
        resources: list[Scope] = []
        others: set[str] = set()
        for item in (text or "").split():
            if item in NON_RESOURCE or "/" not in item or item.startswith("launch/"):
                others.add(item)
            else:
                resources.append(parse_scope(item))
        return cls(tuple(resources), frozenset(others))

    def decide(self, context: str, resource_type: str, interaction: str) -> Decision:
        """Whether ``interaction`` (one of c, r, u, d, s) on ``resource_type`` is allowed in
        ``context`` (patient, user or system). An unrestricted permitting scope wins over any
        number of restricted ones."""
        queries = []
        for scope in self.resources:
            if scope.permits(context, resource_type, interaction):
                if not scope.query:
                    return Decision(Verdict.ALLOWED)
                queries.append(scope.query)
        if queries:
            return Decision(Verdict.RESTRICTED, tuple(queries))
        return Decision(Verdict.DENIED)

    def decide_any(self, contexts: tuple[str, ...], resource_type: str, interaction: str) -> Decision:
        """The most permissive decision over several contexts (a patient's token may hold both
        patient/ and user/ scopes; both describe what the same person may do)."""
        best = Decision(Verdict.DENIED)
        for context in contexts:
            d = self.decide(context, resource_type, interaction)
            if d.verdict is Verdict.ALLOWED:
                return d
            if d.verdict is Verdict.RESTRICTED:
                best = Decision(Verdict.RESTRICTED, best.queries + d.queries)
        return best

    def has(self, scope: str) -> bool:
        return scope in self.others

    def text(self) -> str:
        """All scopes, space separated, resource scopes in canonical v2 form."""
        return " ".join([*sorted(self.others), *(s.text() for s in self.resources)])

    def within(self, allowed: ScopeSet) -> ScopeSet:
        """The part of these scopes that ``allowed`` covers: a requested resource scope is kept
        when one allowed scope of the same context grants all its interactions on its type
        without a stricter query; non-resource scopes are kept when allowed lists them."""
        kept = [s for s in self.resources if any(_covers(a, s) for a in allowed.resources)]
        return ScopeSet(tuple(kept), self.others & allowed.others)


def _covers(a: Scope, s: Scope) -> bool:
    return (a.context == s.context and a.resource_type in ("*", s.resource_type)
            and s.interactions <= a.interactions and set(a.query) <= set(s.query))


def query_satisfies(request_params: list[tuple[str, str]], restriction: tuple[tuple[str, str], ...]) -> bool:
    """Whether a search's parameters are at least as narrow as a scope's query restriction:
    every restricted (name, value) pair is present exactly (an OR list such as
    ``category=laboratory,vital-signs`` would widen it and does not count)."""
    present = set(request_params)
    return all(pair in present for pair in restriction)
