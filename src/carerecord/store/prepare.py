"""Turning a client's resource into what the store writes: validated, stamped with id and
meta, serialised once, and with its search index rows and Patient compartments extracted.

This is the only place a resource is serialised on the write path; reads serve these bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from carerecord.errors import Invalid, Issue, Unprocessable
from carerecord.fhir import profiles, subsetted
from carerecord.fhir.indexing import IndexRows, extract, patient_compartments
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.fhir.text import content_words, narrative_words
from carerecord.fhir.validation import validate
from carerecord.store.records import iso_instant
from carerecord.store.schema import CONTAINED_SLOTS

_SERVER_META = ("versionId", "lastUpdated")


@dataclass(slots=True)
class Prepared:
    """A resource ready to be written as version ``version`` at time ``last_updated``."""

    res_type: str
    res_id: str
    version: int
    last_updated: int
    resource: dict[str, Any] | None  # None when made from a template (never a SearchParameter)
    content: bytes
    rows: IndexRows
    compartments: list[str]


# Placeholders for the values only the writer knows, in a resource serialised ahead of time
# (see :func:`template`). Control characters: orjson writes them as \u escapes.
_VERSION_MARK = "\x01version\x01"
_UPDATED_MARK = "\x01lastUpdated\x01"
_VERSION_BYTES = orjson.dumps(_VERSION_MARK)
_UPDATED_BYTES = orjson.dumps(_UPDATED_MARK)


def template(resource: dict[str, Any], res_id: str) -> bytes | None:
    """The resource serialised as the store will hold it, but with placeholders for
    meta.versionId and meta.lastUpdated, so the writer need not parse or serialise it (see
    ``transaction.stage``). None if a placeholder would be ambiguous (the content itself holds
    one) or the resource is a SearchParameter (the writer needs it as an object). The caller
    has run :func:`check` on it (``stage`` does)."""
    if resource.get("resourceType") == "SearchParameter":
        return None
    out = orjson.dumps(stamp_marks(resource, res_id))
    if out.count(_VERSION_BYTES) != 1 or out.count(_UPDATED_BYTES) != 1:
        return None
    return out


def stamp_marks(resource: dict[str, Any], res_id: str) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id,
                           "meta": {"versionId": _VERSION_MARK, "lastUpdated": _UPDATED_MARK, **meta}}
    for k, v in resource.items():
        if k not in ("resourceType", "id", "meta"):
            out[k] = v
    return out


def prepare_template(res_type: str, res_id: str, content: bytes, version: int, last_updated: int,
                     indexed: tuple[IndexRows, list[str]]) -> Prepared:
    """:func:`prepare` for a resource staged as a :func:`template` (already validated and
    indexed, narrative words included): fill in the placeholders. A SUBSETTED copy is refused
    here too (staging's :func:`check` refused it already; the marker's bytes are looked for
    first so that nothing is parsed on the load path)."""
    if subsetted.marked(content):
        subsetted.refuse(orjson.loads(content))
    final = (content.replace(_VERSION_BYTES, b'"%d"' % version, 1)
             .replace(_UPDATED_BYTES, orjson.dumps(iso_instant(last_updated)), 1))
    return Prepared(res_type, res_id, version, last_updated, None, final, indexed[0], indexed[1])


def check(resource: dict[str, Any]) -> None:
    """Validate ``resource``; raise on any error-level issue.

    Structural faults (unknown elements, wrong JSON types: the resource is not well-formed
    FHIR) are 400 Invalid; a well-formed resource breaking a rule (cardinality, binding,
    profile, NHS number) is 422 Unprocessable, as http://hl7.org/fhir/R4/http.html#2.21.0.3
    distinguishes them.

    A SUBSETTED copy (a redacted or summary read, :mod:`carerecord.fhir.subsetted`) is 422
    before anything else: written back it would replace the full resource (hazard H054)."""
    subsetted.refuse(resource)
    issues = [i for i in validate(resource) if i.severity in ("error", "fatal")]
    if issues:
        if any(i.code == "structure" for i in issues):
            raise Invalid.of(issues)
        raise Unprocessable.of(issues)
    # Claimed UK Core profiles and the UK Core extensions used anywhere in the resource. A
    # resource whose JSON names none of the held URLs is skipped: one serialisation (about
    # 1.5 us) instead of a walk of the whole tree.
    if profiles.may_apply(orjson.dumps(resource)):
        broken = [i for i in profiles.validate(resource) if i.severity in ("error", "fatal")]
        if broken:
            raise Unprocessable.of(broken)
    if resource.get("resourceType") == "SearchParameter":
        from carerecord.store.reindex import check_search_parameter

        check_search_parameter(resource)


def stamp(resource: dict[str, Any], res_id: str, version: int, last_updated: int) -> dict[str, Any]:
    """A copy of ``resource`` with the server's id and meta.versionId/lastUpdated, keys in the
    conventional order (resourceType, id, meta first). Client meta (profile, tag, security,
    source) is kept."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": res_id,
                           "meta": {"versionId": str(version),
                                    "lastUpdated": iso_instant(last_updated), **meta}}
    for k, v in resource.items():
        if k not in ("resourceType", "id", "meta"):
            out[k] = v
    return out


def prepare(resource: dict[str, Any], res_id: str, version: int, last_updated: int,
            registry: SearchParamRegistry, *, validated: bool = False,
            indexed: tuple[IndexRows, list[str]] | None = None) -> Prepared:
    """Validate (unless already done), stamp, serialise and index one resource. ``indexed``:
    index rows and compartments already extracted from this content (see
    ``transaction.stage``); stamping changes nothing they depend on. A SUBSETTED copy is
    refused even when ``validated``: this is the one step every write of a resource object
    takes, so no route can skip the rule (hazard H054)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise Invalid("A resource must be a JSON object with a resourceType",
                      issues=[Issue("error", "structure", "A resource must be a JSON object with a "
                                    "resourceType", ("resourceType",))])
    if not validated:
        check(resource)
    else:
        subsetted.refuse(resource)
    final = stamp(resource, res_id, version, last_updated)
    rows, compartments = indexed if indexed is not None else (
        extract(final, registry), patient_compartments(final))
    rows = extra_rows(rows, final, registry)
    return Prepared(final["resourceType"], res_id, version, last_updated, final,
                    orjson.dumps(final), rows, compartments)


def extra_rows(rows: IndexRows, resource: dict[str, Any], registry: SearchParamRegistry) -> IndexRows:
    """``rows`` with the rows :func:`~carerecord.fhir.indexing.extract` does not make: the
    narrative words of ``_text`` (added to ``rows.string``), the words of ``_content``
    (``fhir/text.py``), and the rows of each contained resource (searched with ``_contained``,
    ``store/contained.py``). Every write path calls this once per resource: the API, staging of
    templates, and ``carerecord reindex``."""
    rows.string.extend(narrative_words(resource))
    inner = resource.get("contained")
    contained: tuple[tuple[str, str, IndexRows], ...] = ()
    if isinstance(inner, list) and inner:
        if len(inner) >= CONTAINED_SLOTS:
            raise Unprocessable(f"More than {CONTAINED_SLOTS - 1} contained resources cannot be indexed",
                                "contained")
        contained = tuple((c["resourceType"], str(c.get("id") or ""), _contained_rows(c, resource, registry))
                          for c in inner if isinstance(c, dict) and isinstance(c.get("resourceType"), str))
    return rows._replace(content=content_words(resource), contained=contained)


def _contained_rows(resource: dict[str, Any], container: dict[str, Any],
                    registry: SearchParamRegistry) -> IndexRows:
    rows = extract(resource, registry, container)  # its #id references name its siblings
    rows.string.extend(narrative_words(resource))
    return rows._replace(content=content_words(resource))
