"""SUBSETTED and REDACTED copies of resources, which are never written back (hazard H054).

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

The guard's redaction is marked differently from a requested subset, as the code system
says (http://terminology.hl7.org/CodeSystem/v3-ObservationValue): SUBSETTED, in ``meta.tag``,
is for parts left out by the request's own options, "not suitable to be used when information
is removed for security reasons"; REDACTED, a security label (``meta.security``), is for parts
filtered out as not authorised for the receiver. Both are refused the same way.

Only the resource's own marks and those of its contained resources count: a copy inside
another resource (a stored searchset or document Bundle's entry, a Parameters value) is not a
write of that copy.
"""

from __future__ import annotations

from typing import Any

from carerecord.errors import Issue, Unprocessable

SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
CODE = "SUBSETTED"
REDACTED = "REDACTED"
TAG = {"system": SYSTEM, "code": CODE, "display": "subsetted"}  # meta.tag: a requested subset
LABEL = {"system": SYSTEM, "code": REDACTED, "display": "redacted"}  # meta.security: the guard's
MESSAGE = ("a subsetted (redacted or summary) copy cannot be written back: read the full resource "
           "and apply the change to it")
# A resource's bytes hold one of these wherever it holds a mark (used to skip parsing, see prepare).
MARKS = (b'"SUBSETTED"', b'"REDACTED"')


def marked(content: bytes) -> bool:
    """Whether ``content`` (a resource's JSON) may hold a mark: only then is it parsed."""
    return any(m in content for m in MARKS)


def _marks(resource: dict[str, Any]) -> list[str]:
    """Where in ``resource`` its marks are: ``meta.tag[n]`` (SUBSETTED), ``meta.security[n]``
    (REDACTED)."""
    meta = resource.get("meta")
    if not isinstance(meta, dict):
        return []
    out = []
    for field, code in (("tag", CODE), ("security", REDACTED)):
        codings = meta.get(field)
        if isinstance(codings, list):
            out += [f"meta.{field}[{n}]" for n, c in enumerate(codings)
                    if isinstance(c, dict) and c.get("code") == code and c.get("system") == SYSTEM]
    return out


def locations(resource: dict[str, Any]) -> list[str]:
    """The FHIRPath expression of every mark of ``resource`` (``Patient.meta.tag[1]``,
    ``Patient.meta.security[0]``) and of its contained resources
    (``Patient.contained[0].meta.tag[0]``); empty if none."""
    kind = resource.get("resourceType")
    root = kind if isinstance(kind, str) and kind else "Resource"
    out = [f"{root}.{where}" for where in _marks(resource)]
    contained = resource.get("contained")
    if isinstance(contained, list):
        for i, inner in enumerate(contained):
            if isinstance(inner, dict):
                out += [f"{root}.contained[{i}].{where}" for where in _marks(inner)]
    return out


def mark(doc: dict[str, Any], *, redacted: bool = False) -> dict[str, Any]:
    """``doc`` marked as a copy with parts left out: SUBSETTED in ``meta.tag`` (a requested
    subset), or REDACTED in ``meta.security`` (the guard's); once (a copy already marked is not
    marked again)."""
    field, coding = ("security", LABEL) if redacted else ("tag", TAG)
    meta = dict(doc.get("meta") or {})
    codings = list(meta.get(field) or [])
    if not any(isinstance(c, dict) and c.get("system") == SYSTEM and c.get("code") == coding["code"]
               for c in codings):
        codings.append(dict(coding))
    meta[field] = codings
    doc["meta"] = meta
    return doc


def issues(resource: dict[str, Any]) -> list[Issue]:
    """One error issue per mark of ``resource`` (see :func:`locations`)."""
    return [Issue("error", "business-rule", MESSAGE, (where,)) for where in locations(resource)]


def refuse(resource: dict[str, Any]) -> None:
    """422 Unprocessable (issue ``business-rule`` at the mark) if ``resource`` or a resource it
    contains is marked SUBSETTED or REDACTED."""
    found = issues(resource)
    if found:
        raise Unprocessable.of(found)
