"""The FHIR RESTful interactions on one unit of work, independent of HTTP
(http://hl7.org/fhir/R4/http.html).

The HTTP edge and the transaction/batch processor both call these, so a conditional create
in a transaction Bundle behaves exactly like one sent on its own. Each returns a
:class:`Result` (status and the version written); errors are raised as ``carerecord.errors``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import Connection

from carerecord.errors import Invalid, Issue, NotFound, PreconditionFailed
from carerecord.fhir import model
from carerecord.fhir.patch import apply_fhirpath_patch, apply_json_patch
from carerecord.fhir.references import local_reference, reference_objects, split_relative
from carerecord.fhir.search_query import parse
from carerecord.store.prepare import check
from carerecord.store.records import Stored
from carerecord.store.repository import Current, Repository, Unit
from carerecord.store.search import Hit, Searcher


@dataclass(slots=True)
class Result:
    """What an interaction did: HTTP-like status, the version concerned, advisory issues."""

    status: int
    stored: Stored | None = None
    issues: list[Issue] = field(default_factory=list)


def check_type(res_type: str) -> None:
    if res_type not in model.resource_types():
        raise NotFound(f"Unknown resource type {res_type!r}")


_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def check_id(res_id: str, where: str = "id") -> None:
    """A logical id must be 1-64 of A-Z a-z 0-9 - . (http://hl7.org/fhir/R4/datatypes.html#id)."""
    if not _ID.fullmatch(res_id):
        raise Invalid(f"{res_id!r} is not a valid resource id (1-64 letters, digits, '-' or '.')", where)


def query_pairs(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` (as in a conditional URL or If-None-Exist) to pairs; Invalid if empty."""
    pairs = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not pairs:
        raise Invalid("A conditional request needs search criteria")
    return pairs


class Interactions:
    """RESTful interactions over a repository; ``base`` is this server's FHIR base URL."""

    def __init__(self, repo: Repository, base: str | None = None) -> None:
        self.repo = repo
        self.searcher = Searcher(repo.registry)
        self.base = base

    # -- helpers --------------------------------------------------------------------------------
    def find(self, conn: Connection, res_type: str, query: str, limit: int = 2) -> list[Hit]:
        """Current resources of ``res_type`` matching a conditional query (at most ``limit``)."""
        q = parse((res_type,), query_pairs(query), self.repo.registry, self.base)
        if q.unknown:
            raise Invalid(f"Unknown search parameter(s) in conditional request: {', '.join(q.unknown)}")
        if q.contained != "false":  # a contained resource cannot be created, updated or deleted
            raise Invalid("A conditional request cannot search contained resources", "_contained")
        return self.searcher.run(conn, q, limit).matches

    def check_references(self, unit: Unit, resources: list[tuple[str, dict[str, Any]]],
                         pending: frozenset[tuple[str, str]] = frozenset()) -> None:
        """Every relative reference must name a resource that exists (or is being written in
        this unit); a broken one is a 400 naming the element. Absolute URLs to other servers
        are not checked."""
        self.check_reference_objects(
            unit, [ro for where, resource in resources for ro in reference_objects(resource, where)],
            pending)

    def check_reference_objects(self, unit: Unit, refs: list[tuple[str, dict[str, Any]]],
                                pending: frozenset[tuple[str, str]] = frozenset()) -> None:
        """:meth:`check_references` for reference objects already found (path, object)."""
        wanted: dict[tuple[str, str], str] = {}
        if refs:
            for path, obj in refs:
                ref = local_reference(obj["reference"], self.base)
                if ref != obj["reference"]:
                    obj["reference"] = ref
                if ref.startswith("urn:"):
                    raise Invalid(f"Reference {ref} does not resolve to an entry of this Bundle", path,
                                  [Issue("error", "not-found", f"Reference {ref} does not resolve "
                                         "to an entry of this Bundle", (path,))])
                pair = split_relative(ref)
                if pair and pair not in pending and pair not in unit.known:
                    wanted.setdefault(pair, path)
        if not wanted:
            return
        found = unit.currents(list(wanted), lock="share")
        for pair, path in wanted.items():
            cur = found.get(pair)
            if cur is None or cur.deleted:
                msg = f"Reference {pair[0]}/{pair[1]} does not resolve to an existing resource"
                raise Invalid(msg, path, [Issue("error", "not-found", msg, (path,))])
            unit.known.add(pair)

    def before_write(self, unit: Unit, res_type: str, res_id: str, resource: dict[str, Any],
                     current: Current | None, chosen_id: bool) -> bool:
        """Called for each POST or PUT entry of a transaction or batch before it is prepared
        (``current``: the row a PUT replaces, if any; ``chosen_id``: the client chose the id).
        A wrapper (the access guard) may refuse the write by raising, or change ``resource``
        and return True so that its index rows are extracted again. Here: nothing to do."""
        return False

    # -- interactions ---------------------------------------------------------------------------
    def create(self, unit: Unit, resource: dict[str, Any], res_type: str,
               if_none_exist: str | None = None, res_id: str | None = None, *,
               validated: bool = False) -> Result:
        """Create (conditionally with If-None-Exist). ``validated``: the caller has already run
        :func:`check` on ``resource`` (the API does, outside the write lock)."""
        check_type(res_type)
        if resource.get("resourceType") != res_type:
            raise Invalid(f"Body is a {resource.get('resourceType')}, not a {res_type}", "resourceType")
        if if_none_exist:
            hits = self.find(unit.conn, res_type, if_none_exist)
            if len(hits) > 1:
                raise PreconditionFailed(f"If-None-Exist matched {len(hits)} {res_type} resources")
            if hits:
                return Result(200, unit.read(res_type, hits[0].res_id))
        if not validated:
            check(resource)
        self.check_references(unit, [(res_type, resource)])
        return Result(201, unit.create(resource, res_id, validated=True))

    def update(self, unit: Unit, res_type: str, res_id: str, resource: dict[str, Any],
               if_match: int | None = None, *, validated: bool = False) -> Result:
        check_type(res_type)
        check_id(res_id)
        if not validated:
            check(resource)
        self.check_references(unit, [(res_type, resource)])
        stored, created = unit.update(res_type, res_id, resource, if_match=if_match, validated=True)
        return Result(201 if created else 200, stored)

    def conditional_update(self, unit: Unit, res_type: str, query: str, resource: dict[str, Any],
                           if_match: int | None = None) -> Result:
        """PUT Type?criteria: no match creates (with the body's id or a new one), one match
        updates it, several are a 412 (http.html#cond-update)."""
        check_type(res_type)
        hits = self.find(unit.conn, res_type, query)
        if len(hits) > 1:
            raise PreconditionFailed(f"Conditional update matched {len(hits)} {res_type} resources")
        if hits:
            if "id" in resource and resource["id"] != hits[0].res_id:
                raise Invalid("The body's id does not match the resource the criteria found", "id")
            return self.update(unit, res_type, hits[0].res_id, {**resource, "id": hits[0].res_id},
                               if_match)
        if "id" in resource:
            return self.update(unit, res_type, resource["id"], resource, if_match)
        return self.create(unit, resource, res_type)

    def patch(self, unit: Unit, res_type: str, res_id: str, kind: str, body: Any,
              if_match: int | None = None) -> Result:
        """Apply a JSON Patch (``kind`` "json") or FHIRPath Patch ("fhirpath") to the current
        version, then write the result as an update (validated like any write)."""
        check_type(res_type)
        current = unit.read(res_type, res_id)
        assert current.content is not None
        resource = orjson.loads(current.content)
        patched = apply_json_patch(resource, body) if kind == "json" else apply_fhirpath_patch(resource, body)
        if if_match is not None and if_match != current.version:
            raise PreconditionFailed(f"If-Match version {if_match} is stale: {res_type}/{res_id} is "
                                     f"at version {current.version}")
        return self.update(unit, res_type, res_id, patched, current.version)

    def delete(self, unit: Unit, res_type: str, res_id: str, if_match: int | None = None) -> Result:
        check_type(res_type)
        stored = unit.delete(res_type, res_id, if_match=if_match)
        return Result(204, stored)

    def conditional_delete(self, unit: Unit, res_type: str, query: str) -> Result:
        """DELETE Type?criteria deletes every match (conditionalDelete: multiple)."""
        check_type(res_type)
        hits = self.find(unit.conn, res_type, query, limit=1000)
        if len(hits) >= 1000:
            raise PreconditionFailed("Conditional delete matched 1000 or more resources; narrow it")
        targets = [(h.res_type, h.res_id, unit.current(h.res_type, h.res_id, lock=True)) for h in hits]
        unit.delete_rows([(t, i, c) for t, i, c in targets if isinstance(c, Current) and not c.deleted])
        return Result(204, None, [Issue("information", "informational",
                                        f"Deleted {len(targets)} {res_type} resource(s)")])
