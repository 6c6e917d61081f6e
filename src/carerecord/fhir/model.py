"""The FHIR R4 element model, loaded from ``generated/model.json``.

That file is made by ``scripts/generate_fhir.py`` from the official R4 StructureDefinitions
(http://hl7.org/fhir/R4/structuredefinition.html); nothing here is hand-copied. This module only
answers questions about it: which resource types exist, which child elements a type has under
which JSON keys, which primitive types exist and their regular expressions, and the expansions
of value sets that required bindings name.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

import orjson


class Element(NamedTuple):
    """One child element of a type, as declared in the base specification."""

    name: str  # declared name, e.g. "deceased[x]"
    min: int
    max: int  # -1 for "*"
    types: tuple[str, ...]  # type codes; a backbone element's type is its path, e.g. "Patient.contact"
    binding: str | None  # ValueSet canonical URL of a required binding
    targets: tuple[str, ...] | None  # allowed resource types of a Reference / canonical

    @property
    def repeats(self) -> bool:
        return self.max != 1


@cache
def _raw() -> dict[str, Any]:
    data = resources.files("carerecord.fhir").joinpath("generated/model.json").read_bytes()
    return orjson.loads(data)  # type: ignore[no-any-return]


@cache
def resource_types() -> frozenset[str]:
    """Names of all concrete R4 resource types (Patient, Observation, ...)."""
    return frozenset(_raw()["resourceTypes"])


@cache
def primitive_types() -> frozenset[str]:
    return frozenset(_raw()["primitives"])


def is_primitive(type_code: str) -> bool:
    return type_code in primitive_types()


@cache
def primitive_pattern(type_code: str) -> re.Pattern[str] | None:
    """The compiled full-match regex of a primitive type, or None if the spec gives none."""
    rx = _raw()["primitives"].get(type_code)
    return re.compile(rx) if rx else None


def _cap(type_code: str) -> str:
    return type_code[0].upper() + type_code[1:]


@cache
def children(type_name: str) -> dict[str, tuple[Element, str]] | None:
    """Child elements of a complex type, resource or backbone path, keyed by JSON property name.

    Choice elements are expanded: ``deceased[x]`` gives ``deceasedBoolean`` and
    ``deceasedDateTime``, each mapped to ``(element, concrete type)``. Elements with several
    types that are not choices (only Reference targets) map to their first type. Returns None
    for an unknown type name.
    """
    table = _raw()["elements"].get(type_name)
    if table is None:
        return None
    out: dict[str, tuple[Element, str]] = {}
    for name, (mn, mx, types, binding, targets) in table.items():
        el = Element(name, mn, mx, tuple(types), binding,
                     tuple(targets) if targets is not None else None)
        if name.endswith("[x]"):
            stem = name[:-3]
            for t in types:
                out[stem + _cap(t)] = (el, t)
        else:
            out[name] = (el, types[0] if types else "string")
    return out


@cache
def value_set(url: str) -> dict[str, frozenset[str]] | None:
    """Expansion {system: codes} of a value set named by a required binding; None if the
    definitions do not enumerate it (e.g. mime types, UCUM), in which case it is not checked."""
    vs = _raw()["valueSets"].get(url.split("|", 1)[0])
    if vs is None:
        return None
    return {system: frozenset(codes) for system, codes in vs.items()}


# Resource types the R4 CompartmentDefinition 'patient' leaves out that are nonetheless about
# one patient, with the parameters that name them: a Task for a patient (a pharmacy's dispensing
# work item, a repeat request), a device implanted in them, a decision support answer about
# them, their contract, a linkage of their records, a verification of their details. Kept in
# the patient's compartment here, because access control works by compartment: left out, they
# would be reference data that any signed-in caller could read.
COMPARTMENT_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "Task": ("patient", "requester", "owner"),
    "Device": ("patient",),
    "GuidanceResponse": ("patient",),
    "Contract": ("patient", "signer"),
    "Linkage": ("item", "source"),
    "VerificationResult": ("target",),
}


@cache
def patient_compartment() -> dict[str, tuple[str, ...]]:
    """Resource type -> search parameter codes that put it in a Patient's compartment: the R4
    CompartmentDefinition 'patient' and :data:`COMPARTMENT_EXTENSIONS`."""
    out = {k: tuple(v) for k, v in _raw()["patientCompartment"].items()}
    for rtype, codes in COMPARTMENT_EXTENSIONS.items():
        out[rtype] = tuple(dict.fromkeys([*out.get(rtype, ()), *codes]))
    return out


@cache
def search_parameter_definitions() -> list[dict[str, Any]]:
    """The official R4 SearchParameters, trimmed (see scripts/generate_fhir.py)."""
    data = resources.files("carerecord.fhir").joinpath("generated/search_parameters.json").read_bytes()
    return orjson.loads(data)["parameters"]  # type: ignore[no-any-return]


@cache
def element_order(type_name: str) -> tuple[str, ...]:
    """Element names of a type in the order its StructureDefinition declares them."""
    return tuple(_raw()["elementOrder"].get(type_name, ()))


@cache
def summary_keys(type_name: str) -> frozenset[str]:
    """JSON keys of the elements of ``type_name`` marked isSummary in the base specification
    (choices expanded, ``_x`` companions included), for ``_summary=true``."""
    names = set(_raw()["summaryElements"].get(type_name, ()))
    kids = children(type_name) or {}
    keys = {key for key, (el, _) in kids.items() if el.name in names}
    return frozenset(keys | {"_" + k for k in keys})
