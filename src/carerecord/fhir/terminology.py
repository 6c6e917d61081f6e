"""Code system hierarchies, for token ``:below`` and ``:above``
(http://hl7.org/fhir/R4/search.html#token).

Two sources, both pure here (the store chooses between them, see ``store/codesystems.py``):

- ``generated/hierarchies.json``: the is-a trees of the code systems in the FHIR R4
  definitions (HL7 v2/v3 and FHIR code systems), made by ``scripts/generate_fhir.py``.
- a CodeSystem resource (http://hl7.org/fhir/R4/codesystem.html) stored on the server, read by
  :func:`from_code_system`: nested ``concept`` and the ``parent``/``child`` concept properties
  (http://hl7.org/fhir/R4/codesystem-concept-properties.html) give the edges. It is used only
  when it says what they mean (``hierarchyMeaning`` is-a) and that it holds every concept
  (``content`` complete): subsumption over a fragment would silently miss codes.

SNOMED CT, LOINC and dm+d hierarchies are not held (they need a terminology server), so
subsumption searches on them are refused unless a complete CodeSystem for them is stored."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any

import orjson

PARENT_URI = "http://hl7.org/fhir/concept-properties#parent"
CHILD_URI = "http://hl7.org/fhir/concept-properties#child"
# Property codes read as edges when the CodeSystem does not declare them with a URI: the
# R4 concept properties' own codes, and subsumedBy (HL7 terminology's name for parent).
_PARENT_CODES = frozenset({"parent", "subsumedBy"})
_CHILD_CODES = frozenset({"child"})


class Hierarchy:
    """An is-a hierarchy: the parents of each code (and, derived once, the children)."""

    __slots__ = ("parents", "children")

    def __init__(self, parents: Mapping[str, Iterable[str]]) -> None:
        self.parents: dict[str, tuple[str, ...]] = {c: tuple(ps) for c, ps in parents.items()}
        self.children: dict[str, list[str]] = {}
        for code, ps in self.parents.items():
            for p in ps:
                self.children.setdefault(p, []).append(code)

    def below(self, code: str) -> frozenset[str]:
        """``code`` and every code it subsumes."""
        return _closure(code, self.children)

    def above(self, code: str) -> frozenset[str]:
        """``code`` and every code that subsumes it."""
        return _closure(code, self.parents)


def _closure(code: str, edges: dict[str, Any]) -> frozenset[str]:
    out, todo = {code}, [code]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return frozenset(out)


@cache
def _generated() -> dict[str, dict[str, list[str]]]:
    raw = resources.files("carerecord.fhir").joinpath("generated/hierarchies.json").read_bytes()
    return orjson.loads(raw)["hierarchies"]  # type: ignore[no-any-return]


@cache
def generated(system: str) -> Hierarchy | None:
    """The hierarchy of ``system`` from the R4 definitions, or None if they hold none."""
    parents = _generated().get(system)
    return Hierarchy(parents) if parents is not None else None


def knows(system: str) -> bool:
    """Whether the R4 definitions hold the hierarchy of ``system``."""
    return system in _generated()


def below(system: str, code: str) -> frozenset[str] | None:
    """``code`` and every code it subsumes in the R4 definitions; None when unknown there."""
    h = generated(system)
    return h.below(code) if h is not None else None


def above(system: str, code: str) -> frozenset[str] | None:
    """``code`` and every code that subsumes it in the R4 definitions; None when unknown there."""
    h = generated(system)
    return h.above(code) if h is not None else None


def from_code_system(cs: dict[str, Any]) -> Hierarchy | str:
    """The is-a hierarchy a CodeSystem resource states, or why it states none (a sentence
    ending the clause "it cannot be used because ...").

    Edges come from nested ``concept`` (the child is-a its parent) and from concept
    properties declared with the R4 ``parent``/``child`` property URIs (or, undeclared, coded
    ``parent``, ``subsumedBy`` or ``child``)."""
    content = cs.get("content")
    if content != "complete":
        return f"its content is {content!r}, not 'complete', so it may not hold every concept"
    if cs.get("hierarchyMeaning") != "is-a":
        return "it does not declare hierarchyMeaning 'is-a'"
    declared = {p.get("code"): p.get("uri") for p in _dicts(cs.get("property"))}
    parent_props = {c for c, u in declared.items() if u == PARENT_URI}
    child_props = {c for c, u in declared.items() if u == CHILD_URI}
    parent_props |= {c for c in _PARENT_CODES if c not in declared}
    child_props |= {c for c in _CHILD_CODES if c not in declared}
    parents: dict[str, list[str]] = {}

    def link(child: str, parent: str) -> None:
        got = parents.setdefault(child, [])
        if parent not in got:
            got.append(parent)

    todo: list[tuple[Any, str | None]] = [(cs.get("concept"), None)]
    while todo:
        concepts, parent = todo.pop()
        for c in _dicts(concepts):
            code = c.get("code")
            if not isinstance(code, str):
                continue
            parents.setdefault(code, [])
            if parent is not None:
                link(code, parent)
            for p in _dicts(c.get("property")):
                value = p.get("valueCode")
                if not isinstance(value, str):
                    continue
                if p.get("code") in parent_props:
                    link(code, value)
                elif p.get("code") in child_props:
                    link(value, code)
            todo.append((c.get("concept"), code))
    return Hierarchy(parents)


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
