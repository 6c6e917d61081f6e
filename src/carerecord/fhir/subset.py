"""``_elements``: a resource cut down to some of its root elements, marked SUBSETTED
(http://hl7.org/fhir/R4/search.html#elements; Bulk Data export's ``_elements``,
http://hl7.org/fhir/uv/bulkdata/STU2/export.html#query-parameters).

One implementation for the search results (``api/bundles.py``) and the bulk export
(``services/export``): ``resourceType``, ``id`` and ``meta`` are always kept, and so are the
mandatory elements (minimum cardinality above 0), which servers SHOULD always return; of the
others, only those listed. An element is named by its name (``birthDate``; ``value`` or
``value[x]`` for every ``valueQuantity``, ``valueString``...) or by its JSON key
(``valueQuantity``); a primitive's ``_name`` companion (its id and extensions) goes with it.

Pure: the element definitions come from :mod:`carerecord.fhir.model`.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from carerecord.fhir import model, subsetted

ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _by_name(res_type: str) -> dict[str, frozenset[str]]:
    """Element name (``value``, ``value[x]``, ``birthDate``) and JSON key (``valueQuantity``)
    -> the JSON keys it stands for, ``_`` companions included."""
    out: dict[str, set[str]] = {}
    for key, (el, _) in (model.children(res_type) or {}).items():
        names = {key, el.name}
        if el.name.endswith("[x]"):
            names.add(el.name[:-3])
        for name in names:
            out.setdefault(name, set()).update((key, "_" + key))
    return {name: frozenset(keys) for name, keys in out.items()}


def element_keys(res_type: str, name: str) -> frozenset[str] | None:
    """The JSON keys of root element ``name`` of ``res_type``; None if it has no such element."""
    return _by_name(res_type).get(name)


@cache
def mandatory_keys(res_type: str) -> frozenset[str]:
    """The JSON keys (``_`` companions included) of the root elements of ``res_type`` with a
    minimum cardinality above 0, and those always kept."""
    kids = model.children(res_type) or {}
    keys = {k for k, (el, _) in kids.items() if el.min > 0}
    return frozenset(ALWAYS | keys | {"_" + k for k in keys})


def kept_keys(res_type: str, names: Iterable[str]) -> frozenset[str]:
    """What :func:`keep_elements` keeps of a ``res_type``: the mandatory keys and those of
    ``names`` (a name that is no element of the type stands for itself, as a JSON key)."""
    keys = set(mandatory_keys(res_type))
    for name in names:
        keys |= element_keys(res_type, name) or {name, "_" + name}
    return frozenset(keys)


def keep_elements(doc: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A copy of resource ``doc`` with its mandatory elements and the elements ``names`` only
    (not marked: see :func:`mark_subsetted`)."""
    keep = kept_keys(str(doc.get("resourceType", "")), names)
    return {k: v for k, v in doc.items() if k in keep}


def mark_subsetted(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the SUBSETTED tag in ``meta.tag``, once (:func:`subsetted.mark`)."""
    return subsetted.mark(doc)
