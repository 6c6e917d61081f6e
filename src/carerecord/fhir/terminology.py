"""Code system hierarchies known to the server, for token ``:below`` and ``:above``
(http://hl7.org/fhir/R4/search.html#token).

From ``generated/hierarchies.json``: the is-a trees of the code systems in the FHIR R4
definitions (HL7 v2/v3 and FHIR code systems). SNOMED CT, LOINC and dm+d hierarchies are not
held (they need a terminology server), so subsumption searches on them are refused."""

from __future__ import annotations

from functools import cache
from importlib import resources

import orjson


@cache
def _parents() -> dict[str, dict[str, list[str]]]:
    raw = resources.files("carerecord.fhir").joinpath("generated/hierarchies.json").read_bytes()
    return orjson.loads(raw)["hierarchies"]  # type: ignore[no-any-return]


@cache
def _children(system: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for code, parents in _parents().get(system, {}).items():
        for p in parents:
            out.setdefault(p, []).append(code)
    return out


def knows(system: str) -> bool:
    return system in _parents()


def _closure(code: str, edges: dict[str, list[str]]) -> frozenset[str]:
    out, todo = {code}, [code]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in out:
                out.add(nxt)
                todo.append(nxt)
    return frozenset(out)


def below(system: str, code: str) -> frozenset[str] | None:
    """``code`` and every code it subsumes; None when the hierarchy of ``system`` is unknown."""
    return _closure(code, _children(system)) if knows(system) else None


def above(system: str, code: str) -> frozenset[str] | None:
    """``code`` and every code that subsumes it; None when the hierarchy is unknown."""
    return _closure(code, _parents()[system]) if knows(system) else None
