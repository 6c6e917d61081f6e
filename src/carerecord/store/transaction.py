"""Transaction and batch Bundles (http://hl7.org/fhir/R4/http.html#transaction).

A transaction is one unit: all entries commit or none do. Entries are processed in the order
the spec gives (DELETE, then POST, then PUT/PATCH, then GET), after ids are allocated for
every POST and conditional PUT, so that ``urn:uuid:`` full URLs and conditional references
(``Patient?identifier=...``) are rewritten to the resources they name before anything is
validated or written. POSTs and PUTs are written in multi-row statements: this is also the
bulk-load path.

A batch processes each entry on its own unit; one entry failing does not affect the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from carerecord.errors import FhirError, Invalid, Issue, PreconditionFailed
from carerecord.fhir import bundle as fb
from carerecord.fhir import model
from carerecord.fhir.indexing import IndexRows, extract, patient_compartments
from carerecord.fhir.outcome import outcome
from carerecord.fhir.references import local_reference, reference_objects
from carerecord.fhir.search_params import SearchParamRegistry
from carerecord.store.interactions import Interactions, Result, check_id, check_type
from carerecord.store.prepare import (
    Prepared,
    check,
    extra_rows,
    prepare,
    prepare_template,
    template,
)
from carerecord.store.records import Stored, iso_instant
from carerecord.store.repository import Current, Unit, new_id

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}

# A GET entry is answered by the API layer (it knows search bundles): (unit, url) -> (status, body)
GetHandler = Callable[[Unit, str], tuple[int, bytes]]


@dataclass(slots=True)
class Entry:
    index: int
    method: str
    url: str
    full_url: str | None
    resource: dict[str, Any] | None
    request: dict[str, Any]
    res_type: str = ""
    res_id: str | None = None
    query: str | None = None
    result: Result | None = None
    body: bytes | None = None
    refs: list[tuple[str, dict[str, Any]]] | None = None  # reference objects, found once
    staged: tuple[IndexRows, list[str]] | None = None  # validated; its index rows (see stage)
    template: bytes | None = None  # the staged resource serialised with placeholders


def _locate(expr: str, where: str) -> str:
    """An issue expression from inside an entry, made relative to the Bundle: "Patient.name"
    and "id" are in the entry's resource, "request.url" is in the entry itself."""
    head = expr.split(".", 1)[0].split("[", 1)[0]
    if expr.startswith("Bundle."):
        return expr
    if head == "request":
        return f"{where}.{expr}"
    if head[:1].isupper():  # starts with the resource type
        return f"{where}.resource{expr[len(head):]}"
    return f"{where}.resource.{expr}"


def _fail(err: FhirError, index: int) -> FhirError:
    """The same error, with every issue located inside entry ``index`` of the Bundle."""
    where = f"Bundle.entry[{index}]"
    issues = []
    for i in err.issues:
        exprs = tuple(_locate(e, where) for e in i.expression)
        text = i.diagnostics if i.diagnostics.startswith(where) else f"{where}: {i.diagnostics}"
        issues.append(Issue(i.severity, i.code, text, exprs or (where,)))
    return type(err).of(issues)


def parse_entries(doc: dict[str, Any], kind: str) -> list[Entry]:
    entries = doc.get("entry") or []
    if not isinstance(entries, list):
        raise Invalid("Bundle.entry must be an array", "Bundle.entry")
    out = []
    for i, e in enumerate(entries):
        where = f"Bundle.entry[{i}]"
        req = e.get("request") if isinstance(e, dict) else None
        if not isinstance(req, dict) or not isinstance(req.get("method"), str) \
                or not isinstance(req.get("url"), str):
            raise Invalid(f"{where} needs request.method and request.url in a {kind}", f"{where}.request")
        method = req["method"].upper()
        if method not in _ORDER:
            raise Invalid(f"{where}: unsupported method {method}", f"{where}.request.method")
        resource = e.get("resource")
        if method in ("POST", "PUT") and not isinstance(resource, dict):
            raise Invalid(f"{where}: {method} needs a resource", f"{where}.resource")
        entry = Entry(i, method, req["url"], e.get("fullUrl"), resource, req)
        path, _, query = req["url"].partition("?")
        parts = [p for p in urlsplit(path).path.split("/") if p]
        entry.res_type = parts[0] if parts else ""
        entry.res_id = parts[1] if len(parts) > 1 else None
        entry.query = query or None
        out.append(entry)
    return out


def stage(doc: dict[str, Any], registry: SearchParamRegistry,
          base: str | None = None, *, templates: bool = False) -> tuple[str, list[Entry]]:
    """The part of processing a transaction or batch that needs no database, so it can run
    before the write lock is taken (the API) or in other processes (``carerecord load``).

    Allocates ids for plain POSTs, rewrites ``urn:uuid`` references to them (transactions
    only) and references to ``base`` to relative ones; then every POST or PUT whose references
    are all resolved is validated and its index rows extracted (``Entry.staged``). Anything
    needing the database (ifNoneExist, conditional URLs and references) or failing
    validation is left as it was: processing does that part, and reports failures with their
    location, as without staging. ``templates``: also serialise each staged resource (see
    ``prepare.template``), for a writer in another process."""
    kind = doc.get("type")
    if doc.get("resourceType") != "Bundle" or kind not in ("transaction", "batch"):
        raise Invalid("Only a Bundle of type transaction or batch can be posted to the base URL",
                      "Bundle.type")
    entries = parse_entries(doc, kind)
    mapping: dict[str, str] = {}
    types = model.resource_types()
    for e in entries:
        res = e.resource
        if not isinstance(res, dict) or res.get("resourceType") != e.res_type or e.res_type not in types:
            continue
        if e.method == "POST" and not e.request.get("ifNoneExist"):
            e.res_id = new_id()
        elif not (e.method == "PUT" and not e.query and e.res_id and res.get("id") in (None, e.res_id)):
            continue
        if e.full_url and kind == "transaction":
            mapping[e.full_url] = f"{e.res_type}/{e.res_id}"
    for e in entries:
        if e.res_id is None or e.method not in ("POST", "PUT") or not isinstance(e.resource, dict):
            continue
        resolved = True
        refs = reference_objects(e.resource, f"Bundle.entry[{e.index}].resource")
        for _, obj in refs:
            ref = mapping.get(obj["reference"], local_reference(obj["reference"], base))
            obj["reference"] = ref
            if ref.startswith("urn:") or ("?" in ref and not ref.startswith(("http:", "https:"))):
                resolved = False
        if not resolved:
            continue
        try:
            check(e.resource)
            final = {**e.resource, "id": e.res_id}
            e.staged = (extract(final, registry), patient_compartments(final))
            e.refs = [(path, {"reference": obj["reference"]}) for path, obj in refs]
            if templates:
                e.template = template(e.resource, e.res_id)
                if e.template is not None:  # written without prepare(), which adds these
                    e.staged = (extra_rows(e.staged[0], e.resource, registry), e.staged[1])
        except FhirError:
            continue  # processing reports it, located in the Bundle
    return str(kind), entries


def _if_match(entry: Entry) -> int | None:
    raw = entry.request.get("ifMatch")
    if not raw:
        return None
    text = raw.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise Invalid(f"Bad ifMatch {raw!r}", f"Bundle.entry[{entry.index}].request.ifMatch")
    return int(text)


class TransactionProcessor:
    """Processes transaction and batch Bundles with one :class:`Interactions`."""

    def __init__(self, interactions: Interactions, get: GetHandler | None = None) -> None:
        self.ix = interactions
        self.repo = interactions.repo
        self.get = get

    def process(self, doc: dict[str, Any], *, return_resources: bool = True,
                unit: Unit | None = None) -> bytes:
        """Process a transaction or batch Bundle, on ``unit`` or a unit of its own, and return
        the response Bundle."""
        kind, entries = stage(doc, self.repo.registry, self.ix.base)
        return self.process_staged(kind, entries, return_resources=return_resources, unit=unit)

    def process_staged(self, kind: str, entries: list[Entry], *, return_resources: bool = True,
                       unit: Unit | None = None) -> bytes:
        """Process entries from :func:`stage`, on ``unit`` or a unit of its own."""
        if unit is None:
            with self.repo.unit() as own:
                self._run(own, kind, entries)
        else:
            self._run(unit, kind, entries)
        return self.response(entries, "transaction-response" if kind == "transaction"
                             else "batch-response", return_resources)

    def _run(self, unit: Unit, kind: str, entries: list[Entry]) -> None:
        if kind == "transaction":
            self.transaction(unit, entries)
        else:
            self.batch(unit, entries)

    # -- transaction ------------------------------------------------------------------------------
    def transaction(self, unit: Unit, entries: list[Entry]) -> None:
        """All entries on ``unit``; raises (and so rolls back) on the first failure."""
        mapping: dict[str, str] = {}
        writes: list[Entry] = []
        for e in entries:
            try:
                self._allocate(unit, e, mapping)
            except FhirError as err:
                raise _fail(err, e.index) from None
        self._check_overlaps(entries)
        for e in entries:  # rewrite urn:uuid and conditional references everywhere
            if e.resource is not None and e.staged is None:  # (staging resolved the others)
                try:
                    self._rewrite(unit, e, mapping)
                except FhirError as err:
                    raise _fail(err, e.index) from None
        for e in sorted(entries, key=lambda x: _ORDER[x.method]):
            try:
                if e.method == "DELETE":
                    e.result = (self.ix.conditional_delete(unit, e.res_type, e.query) if e.query
                                else self.ix.delete(unit, e.res_type, e.res_id or "", _if_match(e)))
                elif e.method in ("POST", "PUT") and e.result is None:
                    writes.append(e)
                elif e.method == "PATCH":
                    self._flush(unit, writes)
                    writes = []
                    e.result = self.ix.patch(unit, e.res_type, e.res_id or "", _patch_kind(e.resource),
                                             _patch_body(e.resource), _if_match(e))
                elif e.method in ("GET", "HEAD"):
                    self._flush(unit, writes)
                    writes = []
                    self._get(unit, e)
            except FhirError as err:
                raise _fail(err, e.index) from None
        self._flush(unit, writes)

    @staticmethod
    def _check_overlaps(entries: list[Entry]) -> None:
        """Two entries may not write the same resource (http.html#trules: overlapping
        identities in a transaction are an error)."""
        seen: dict[tuple[str, str], int] = {}
        for e in entries:
            if e.method in ("GET", "HEAD") or e.res_id is None or (e.result and e.method == "POST"):
                continue
            key = (e.res_type, e.res_id)
            if key in seen:
                raise Invalid(f"Bundle.entry[{e.index}] writes {key[0]}/{key[1]}, which "
                              f"Bundle.entry[{seen[key]}] also writes", f"Bundle.entry[{e.index}].request")
            seen[key] = e.index

    def _allocate(self, unit: Unit, e: Entry, mapping: dict[str, str]) -> None:
        if e.method in ("DELETE", "PATCH") and e.res_id is None and not e.query:
            raise Invalid(f"{e.method} {e.url} names no resource: give an id or search criteria",
                          "request.url")
        if e.method not in ("POST", "PUT"):
            return
        assert e.resource is not None
        check_type(e.res_type)
        if e.resource.get("resourceType") != e.res_type:
            raise Invalid(f"The resource is a {e.resource.get('resourceType')} but the request url "
                          f"names {e.res_type}", "resourceType")
        if e.method == "POST":
            cond = e.request.get("ifNoneExist")
            hits = self.ix.find(unit.conn, e.res_type, cond) if cond else []
            if len(hits) > 1:
                raise PreconditionFailed(f"ifNoneExist matched {len(hits)} {e.res_type} resources")
            if hits:
                e.res_id = hits[0].res_id
                e.result = Result(200, unit.read(e.res_type, e.res_id))
            else:
                e.res_id = e.res_id or new_id()
        elif e.query:
            hits = self.ix.find(unit.conn, e.res_type, e.query)
            if len(hits) > 1:
                raise PreconditionFailed(f"Conditional update matched {len(hits)} {e.res_type} resources")
            e.res_id = hits[0].res_id if hits else (e.resource.get("id") or new_id())
        if not e.res_id:
            raise Invalid(f"PUT {e.url} names no id", "request.url")
        check_id(e.res_id, "request.url")
        if e.full_url:
            mapping[e.full_url] = f"{e.res_type}/{e.res_id}"

    def _rewrite(self, unit: Unit, e: Entry, mapping: dict[str, str]) -> None:
        assert e.resource is not None
        e.refs = reference_objects(e.resource, f"Bundle.entry[{e.index}].resource")
        for path, obj in e.refs:
            ref = obj["reference"] = local_reference(obj["reference"], self.ix.base)
            if ref in mapping:
                obj["reference"] = mapping[ref]
            elif "?" in ref and not ref.startswith(("http:", "https:")):
                rtype, _, query = ref.partition("?")
                hits = self.ix.find(unit.conn, rtype, query)
                if len(hits) != 1:
                    raise Invalid(f"Conditional reference {ref} matched {len(hits)} resources; it must "
                                  "match exactly one", path)
                obj["reference"] = f"{rtype}/{hits[0].res_id}"

    def _flush(self, unit: Unit, writes: list[Entry]) -> None:
        """Validate, check references and write POST/PUT entries in bulk."""
        if not writes:
            return
        puts = [(e.res_type, e.res_id or "") for e in writes if e.method == "PUT"]
        currents = unit.currents(puts) if puts else {}
        pending = frozenset((e.res_type, e.res_id or "") for e in writes)
        batch: list[tuple[Prepared, Current | None, str]] = []
        for e in writes:
            assert e.resource is not None and e.res_id is not None
            try:
                res = e.resource
                if e.method == "PUT" and res.get("id") not in (None, e.res_id):
                    raise Invalid(f"Resource id {res.get('id')!r} does not match {e.url}", "id")
                cur = currents.get((e.res_type, e.res_id)) if e.method == "PUT" else None
                chosen = e.method == "PUT" and (not e.query or bool(res.get("id")))
                if self.ix.before_write(unit, e.res_type, e.res_id, res, cur, chosen):
                    e.staged = e.template = None  # changed (the guard stamps it): index it anew
                if e.staged is None:
                    check(res)
                wanted = _if_match(e)
                if wanted is not None and (cur is None or cur.version != wanted):
                    raise PreconditionFailed(f"ifMatch version {wanted} is stale for {e.url}")
                version = cur.version + 1 if cur else 1
                if e.template is not None and e.staged is not None:
                    prepared = prepare_template(e.res_type, e.res_id, e.template, version, unit.now,
                                                e.staged)
                else:
                    prepared = prepare(res, e.res_id, version, unit.now, self.repo.registry,
                                       validated=True, indexed=e.staged)
                batch.append((prepared, cur, e.method))
                created = cur is None or cur.deleted
                e.result = Result(201 if created else 200)
            except FhirError as err:
                raise _fail(err, e.index) from None
        try:
            self.ix.check_reference_objects(unit, [ro for e in writes for ro in (
                e.refs if e.refs is not None else reference_objects(
                    e.resource, f"Bundle.entry[{e.index}].resource"))], pending)
        except FhirError as err:
            raise type(err).of(err.issues) from None
        unit.write(batch)
        for e, (p, _, m) in zip(writes, batch, strict=True):
            assert e.result is not None
            e.result.stored = Stored(p.res_type, p.res_id, p.version, p.last_updated, False, p.content, m)

    def _get(self, unit: Unit, e: Entry) -> None:
        if self.get is None:
            raise Invalid("GET entries are not supported here")
        status, body = self.get(unit, e.url)
        e.result = Result(status)
        e.body = body

    # -- batch -------------------------------------------------------------------------------------
    def batch(self, unit: Unit, entries: list[Entry]) -> None:
        """Each entry under its own savepoint: one failing leaves the others in place."""
        for e in sorted(entries, key=lambda x: _ORDER[x.method]):
            try:
                with unit.savepoint():
                    self.transaction(unit, [e])
            except FhirError as err:
                e.result = Result(err.status, None, err.issues)

    # -- response ----------------------------------------------------------------------------------
    def response(self, entries: list[Entry], kind: str, return_resources: bool) -> bytes:
        out = []
        base = self.ix.base
        for e in entries:
            r = e.result or Result(200)
            resp: dict[str, Any] = {"status": _STATUS_TEXT.get(r.status, str(r.status))}
            content = None
            if r.stored is not None:
                st = r.stored
                resp["location"] = st.location
                resp["etag"] = st.etag
                resp["lastModified"] = iso_instant(st.last_updated)
                content = st.content if return_resources else None
            if r.status >= 400:
                resp["outcome"] = outcome(r.issues)
            elif r.issues:
                resp["outcome"] = outcome(r.issues)
            if e.body is not None:
                content = e.body
            full = f"{base}/{r.stored.res_type}/{r.stored.res_id}" if r.stored and base else None
            out.append(fb.entry(full, content, response=resp))
        return fb.bundle(kind, out, timestamp=None)


def _patch_kind(resource: dict[str, Any] | None) -> str:
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        return "fhirpath"
    if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        return "json"
    raise Invalid("A PATCH entry needs a Parameters (FHIRPath Patch) or Binary (JSON Patch) resource")


def _patch_body(resource: dict[str, Any] | None) -> Any:
    assert resource is not None
    if resource["resourceType"] == "Parameters":
        return resource
    import base64

    try:
        return orjson.loads(base64.b64decode(resource.get("data", "")))
    except (ValueError, orjson.JSONDecodeError):
        raise Invalid("The Binary of a JSON Patch entry must hold base64 JSON Patch data") from None

