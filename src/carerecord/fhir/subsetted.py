"""SUBSETTED copies of resources, which are never written back (hazard H054).

A resource tagged SUBSETTED (``meta.tag`` system
http://terminology.hl7.org/CodeSystem/v3-ObservationValue, code ``SUBSETTED``) is a copy with
parts left out: what a ``_summary`` or ``_elements`` search and a bulk export's ``_elements``
return (``api/bundles.py``, :mod:`carerecord.fhir.subset`), and what the access guard shows of
a restricted (S-flagged) patient's record to someone who reached it by a claim or break-glass
(``access/redaction.py``: address, telecom, GP, narrative, references to places and carers
removed). R4 says such a copy must not be used to update the resource
(http://hl7.org/fhir/R4/search.html#summary; the tag's meaning,
http://hl7.org/fhir/R4/resource.html#tag). Written back, it would replace the whole resource:
the patient's real address, an Encounter's home location, silently gone, and the record's own
organisation would never know. So every write refuses it (:func:`refuse`, called by
``store/prepare.check`` and ``prepare``, which every create, update, patch, transaction or
batch entry and ``carerecord load`` pass through).

Only the resource's own tags and those of its contained resources count: a copy inside
another resource (a stored searchset or document Bundle's entry, a Parameters value) is not a
write of that copy.
"""

from __future__ import annotations

from typing import Any

from carerecord.errors import Issue, Unprocessable

SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
CODE = "SUBSETTED"
MESSAGE = ("a subsetted (redacted or summary) copy cannot be written back: read the full resource "
           "and apply the change to it")
# A resource's bytes hold this wherever it holds the tag (used to skip parsing, see prepare).
MARK = b'"SUBSETTED"'


def _tagged(resource: dict[str, Any]) -> int | None:
    """The index in ``meta.tag`` of ``resource``'s SUBSETTED tag, if it has one."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    if not isinstance(tags, list):
        return None
    for n, tag in enumerate(tags):
        if isinstance(tag, dict) and tag.get("code") == CODE and tag.get("system") == SYSTEM:
            return n
    return None


def locations(resource: dict[str, Any]) -> list[str]:
    """The FHIRPath expression of every SUBSETTED tag of ``resource`` (``Patient.meta.tag[1]``)
    and of its contained resources (``Patient.contained[0].meta.tag[0]``); empty if none."""
    kind = resource.get("resourceType")
    root = kind if isinstance(kind, str) and kind else "Resource"
    out = []
    own = _tagged(resource)
    if own is not None:
        out.append(f"{root}.meta.tag[{own}]")
    contained = resource.get("contained")
    if isinstance(contained, list):
        for i, inner in enumerate(contained):
            n = _tagged(inner) if isinstance(inner, dict) else None
            if n is not None:
                out.append(f"{root}.contained[{i}].meta.tag[{n}]")
    return out


def issues(resource: dict[str, Any]) -> list[Issue]:
    """One error issue per SUBSETTED tag of ``resource`` (see :func:`locations`)."""
    return [Issue("error", "business-rule", MESSAGE, (where,)) for where in locations(resource)]


def refuse(resource: dict[str, Any]) -> None:
    """422 Unprocessable (issue ``business-rule`` at the tag) if ``resource`` or a resource it
    contains is tagged SUBSETTED."""
    found = issues(resource)
    if found:
        raise Unprocessable.of(found)
