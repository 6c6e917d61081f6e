"""Handlers of the instance and type level interactions (http://hl7.org/fhir/R4/http.html):
read, vread, create, update, patch, delete, search, history, and the whole-system ones.

Each handler turns the request into a store call and the result into a response; FHIR
semantics live in ``carerecord.store.interactions``."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from carerecord.api import bundles, guarded
from carerecord.api.auth import check_bundle
from carerecord.api.context import Context
from carerecord.api.http import (
    etag_version,
    fhir_response,
    prefer,
    read_body,
    response_format,
)
from carerecord.api.limits import check_bundle_size
from carerecord.errors import (
    Forbidden,
    Gone,
    Invalid,
    Issue,
    NotFound,
    PreconditionFailed,
    UnsupportedMediaType,
)
from carerecord.fhir.dates import date_range
from carerecord.fhir.outcome import information
from carerecord.fhir.search_query import parse, parse_int
from carerecord.store.history import history
from carerecord.store.interactions import Interactions, Result, check_type
from carerecord.store.prepare import check
from carerecord.store.records import Stored
from carerecord.store.repository import Unit
from carerecord.store.search import SearchResult
from carerecord.store.threads import off_loop
from carerecord.store.transaction import GetHandler, stage


def ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def _headers(st: Stored, base: str, *, location: bool = False) -> dict[str, str]:
    h = {"ETag": st.etag, "Last-Modified": st.last_modified}
    if location:
        h["Location"] = f"{base}/{st.location}"
    return h


def _write_response(request: Request, c: Context, r: Result, media: str) -> Response:
    """Answer a write per Prefer: return=minimal | representation (default) | OperationOutcome."""
    if r.stored is None or r.stored.content is None:
        if r.issues:
            return fhir_response({"resourceType": "OperationOutcome",
                                  "issue": [i.to_json() for i in r.issues]}, 200, media=media)
        return Response(status_code=204)
    headers = _headers(r.stored, c.base, location=r.status == 201 or request.method == "PUT")
    mode = prefer(request, "return")
    if mode == "minimal":
        return Response(status_code=r.status, headers=headers)
    if mode == "operationoutcome":
        return fhir_response(information(f"{r.stored.res_type}/{r.stored.res_id} version "
                                         f"{r.stored.version} written"), r.status,
                             media=media, headers=headers)
    return fhir_response(r.stored.content, r.status, media=media, headers=headers)


def _not_modified(request: Request, st: Stored) -> bool:
    inm = request.headers.get("if-none-match")
    if inm:
        return any(tag.strip() in (st.etag, f'"{st.version}"', "*") for tag in inm.split(","))
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return st.last_updated // 1_000_000 <= since
    return False


# -- instance level ------------------------------------------------------------------------------
async def read(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t, i = request.path_params["type"], request.path_params["id"]
    check_type(t)
    guarded.guard(request).check_type(t)
    # The guard decides before any 304: a cached copy is never confirmed to one who may no
    # longer see it. On PostgreSQL the reads wait in a thread, not on the event loop.
    st = await guarded.on_store(request, lambda: guarded.read(request, t, i))
    if _not_modified(request, st):
        return Response(status_code=304, headers=_headers(st, c.base))
    assert st.content is not None
    if request.query_params.get("_summary") or request.query_params.get("_elements"):
        q = parse((t,), [(k, v) for k, v in request.query_params.multi_items()
                         if k in ("_summary", "_elements")], c.repo.registry)
        return fhir_response(bundles._subset(st.content, q), media=media, headers=_headers(st, c.base))
    return fhir_response(st.content, media=media, headers=_headers(st, c.base))


async def vread(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t, i, v = request.path_params["type"], request.path_params["id"], request.path_params["vid"]
    check_type(t)
    if not v.isdigit():
        raise NotFound(f"{t}/{i} has no version {v!r}")
    g = guarded.guard(request)
    g.check_type(t)
    with c.repo.reading() as conn:
        try:
            st = c.repo.vread(t, i, int(v))
        except Gone:
            g.gone(conn, t, i)
            raise
        except NotFound:
            raise NotFound(f"{t}/{i} has no version {v}") from None
        try:
            st = g.shown(conn, st)
        except NotFound:
            raise NotFound(f"{t}/{i} has no version {v}") from None
    assert st.content is not None
    return fhir_response(st.content, media=media, headers=_headers(st, c.base))


async def update(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t, i = request.path_params["type"], request.path_params["id"]
    check_type(t)
    body = await read_body(request)
    if_match = etag_version(request.headers.get("if-match"), "If-Match")
    check(body)  # validated here, overlapping the writer thread's database work
    ix = guarded.interactions(request)
    r = await c.writes.run(lambda unit: ix.update(unit, t, i, body, if_match, validated=True), small=True)
    return _write_response(request, c, r, media)


async def delete(request: Request) -> Response:
    c = ctx(request)
    t, i = request.path_params["type"], request.path_params["id"]
    check_type(t)
    if_match = etag_version(request.headers.get("if-match"), "If-Match")
    ix = guarded.interactions(request)
    r = await c.writes.run(lambda unit: ix.delete(unit, t, i, if_match), small=True)
    headers = {"ETag": f'W/"{r.stored.version}"'} if r.stored else None
    return Response(status_code=204, headers=headers)


async def patch(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t = request.path_params["type"]
    check_type(t)
    kind, body = await _patch_body(request)
    if_match = etag_version(request.headers.get("if-match"), "If-Match")
    rid = request.path_params.get("id")
    query = request.url.query
    ix = guarded.interactions(request)

    def job(unit: Unit) -> Result:
        i = rid or _single_match(ix, unit, t, query)
        return ix.patch(unit, t, i, kind, body, if_match)

    r = await c.writes.run(job)
    return _write_response(request, c, r, media)


async def _patch_body(request: Request) -> tuple[str, object]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype == "application/json-patch+json":
        try:
            return "json", orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Invalid(f"The JSON Patch body is not valid JSON: {exc}") from None
    if ctype in ("application/fhir+json", "application/json", "application/fhir+xml",
                 "application/xml"):
        doc = await read_body(request)
        if doc.get("resourceType") != "Parameters":
            raise Invalid("A FHIRPath Patch body must be a Parameters resource", "resourceType")
        return "fhirpath", doc
    raise UnsupportedMediaType(f"PATCH takes application/json-patch+json or a FHIRPath Patch "
                               f"Parameters resource, not {ctype!r}")


def _single_match(ix: Interactions, unit: Unit, t: str, query: str) -> str:
    hits = ix.find(unit.conn, t, query)
    if len(hits) != 1:
        if hits:
            raise PreconditionFailed(f"Conditional patch matched {len(hits)} {t} resources")
        raise NotFound(f"No {t} matches the conditional patch criteria")
    return hits[0].res_id


# -- type level ----------------------------------------------------------------------------------
async def create(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t = request.path_params["type"]
    check_type(t)
    body = await read_body(request)
    if_none_exist = request.headers.get("if-none-exist")
    if body.get("resourceType") == t:
        check(body)  # validated here, overlapping the writer thread's database work
    ix = guarded.interactions(request)
    r = await c.writes.run(lambda unit: ix.create(
        unit, body, t, if_none_exist, validated=body.get("resourceType") == t), small=not if_none_exist)
    return _write_response(request, c, r, media)


async def conditional_update(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    t = request.path_params["type"]
    check_type(t)
    body = await read_body(request)
    if_match = etag_version(request.headers.get("if-match"), "If-Match")
    query = request.url.query
    ix = guarded.interactions(request)
    r = await c.writes.run(lambda unit: ix.conditional_update(unit, t, query, body, if_match))
    return _write_response(request, c, r, media)


async def conditional_delete(request: Request) -> Response:
    c = ctx(request)
    t = request.path_params["type"]
    check_type(t)
    query = request.url.query
    ix = guarded.interactions(request)
    r = await c.writes.run(lambda unit: ix.conditional_delete(unit, t, query))
    return _write_response(request, c, r, response_format(request))


async def search_type(request: Request) -> Response:
    t = request.path_params["type"]
    check_type(t)
    params = await _search_params(request)
    return await run_search(request, (t,), params, f"{ctx(request).base}/{t}")


async def search_compartment(request: Request) -> Response:
    c = ctx(request)
    pid, t = request.path_params["id"], request.path_params["type"]
    if request.path_params["comp"] != "Patient":
        raise NotFound("Only Patient compartments can be searched")
    check_type(t)
    # 404/410 for an unknown patient, and 404 alike for one the caller may not reach
    await guarded.on_store(request, lambda: guarded.read(request, "Patient", pid))
    params = await _search_params(request)
    return await run_search(request, (t,), params, f"{c.base}/Patient/{pid}/{t}", compartment=pid)


async def search_system(request: Request) -> Response:
    params = await _search_params(request)
    types: tuple[str, ...] = ()
    kept = []
    for k, v in params:
        if k == "_type":
            types += tuple(x for x in v.split(",") if x)
        else:
            kept.append((k, v))
    for t in types:
        check_type(t)
    return await run_search(request, types, params, ctx(request).base, kept=kept)


async def _search_params(request: Request) -> list[tuple[str, str]]:
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded")
        form = await request.form()
        params += [(k, str(v)) for k, v in form.multi_items()]
    return params


async def run_search(request: Request, types: tuple[str, ...], params: list[tuple[str, str]], path: str,
               *, compartment: str | None = None, kept: list[tuple[str, str]] | None = None) -> Response:
    c = ctx(request)
    media = response_format(request)
    q = parse(types, kept if kept is not None else params, c.repo.registry, c.base,
              lenient=prefer(request, "handling") == "lenient")
    q.compartment = compartment
    g = guarded.guard(request)
    for t in types:
        g.check_type(t)
    searcher = guarded.searcher(request)
    warnings: list[Issue] = []
    if q.unknown:
        msg = f"Unknown or unsupported search parameter(s) ignored: {', '.join(q.unknown)}"
        if prefer(request, "handling") == "strict":
            raise Invalid(msg.replace(" ignored", ""), q.unknown[0])
        warnings.append(Issue("warning", "not-supported", msg, tuple(q.unknown)))
    count = min(q.count if q.count is not None else c.settings.default_page_size,
                c.settings.max_page_size)
    def execute() -> SearchResult:
        with c.repo.reading() as conn:
            return searcher.run(conn, q, count)

    # On PostgreSQL a search waits on the network: in a thread, so other requests go on.
    result = await off_loop(execute) if c.repo.is_postgres else execute()
    # Links carry only the parameters the search used, so the self link tells the client
    # which criteria were applied (search.html#conformance); ignored ones are in the outcome.
    used = [(k, v) for k, v in params if k not in q.unknown]
    body = bundles.searchset(c.base, path, used, q, result, warnings)
    return fhir_response(body, media=media)


# -- history ---------------------------------------------------------------------------------------
def _history_args(request: Request) -> dict[str, object]:
    qp = request.query_params
    out: dict[str, object] = {}
    count = parse_int(qp["_count"], "_count", 1) if "_count" in qp else ctx(request).settings.default_page_size
    out["count"] = min(count, ctx(request).settings.max_page_size)
    try:
        if "_since" in qp:
            out["since"] = date_range(qp["_since"])[0]
        if "_at" in qp:
            out["at"] = date_range(qp["_at"])
    except ValueError as exc:
        raise Invalid(f"Bad history date: {exc}", "_since" if "_since" in qp else "_at") from None
    if "_cursor" in qp:
        parts = qp["_cursor"].split(".")
        if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts):
            raise Invalid("Bad _cursor", "_cursor")
        out["cursor"] = tuple(int(p) for p in parts)
    return out


async def history_instance(request: Request) -> Response:
    c = ctx(request)
    t, i = request.path_params["type"], request.path_params["id"]
    check_type(t)
    g = guarded.guard(request)
    g.check_type(t)
    page = history(c.repo.engine, t, i, **_history_args(request))  # type: ignore[arg-type]
    if not g.unrestricted():  # each version as its own patients allow (a moved resource had others)
        with c.repo.reading() as conn:
            try:
                guarded.read(request, t, i)
            except Gone:
                pass  # gone() already refused what the caller could not see
            page.entries[:] = g.versions(conn, page.entries)  # and redacted as a read would be
    return _history_response(request, page, f"{c.base}/{t}/{i}/_history")


async def history_type(request: Request) -> Response:
    c = ctx(request)
    t = request.path_params["type"]
    check_type(t)
    _system_only(request)
    page = history(c.repo.engine, t, **_history_args(request))  # type: ignore[arg-type]
    return _history_response(request, page, f"{c.base}/{t}/_history")


async def history_system(request: Request) -> Response:
    c = ctx(request)
    _system_only(request)
    page = history(c.repo.engine, **_history_args(request))  # type: ignore[arg-type]
    return _history_response(request, page, f"{c.base}/_history")


def _system_only(request: Request) -> None:
    """Type and system history cross every patient, unfiltered: trusted system clients only, and
    not those registered for secondary use (held to the national data opt-out)."""
    g = guarded.guard(request)
    if not g.trusted:
        raise Forbidden("Type and system history are open to system clients only")
    if not g.unrestricted():
        raise Forbidden("Type and system history are not open to secondary use (the national data "
                        "opt-out would not be applied)")


def _history_response(request: Request, page: object, path: str) -> Response:
    c = ctx(request)
    body = bundles.history_bundle(c.base, path, list(request.query_params.multi_items()), page)  # type: ignore[arg-type]
    return fhir_response(body, media=response_format(request))


# -- whole system ------------------------------------------------------------------------------------
async def transaction(request: Request) -> Response:
    c = ctx(request)
    media = response_format(request)
    body = await read_body(request)
    check_bundle_size(body, c.settings.max_bundle_entries)
    check_bundle(request, body)  # the caller's scopes must cover every entry
    full = prefer(request, "return") != "minimal"
    # Validation and index extraction happen here, before the write lock is taken.
    kind, entries = stage(body, c.repo.registry, c.base)
    processor = guarded.processor(request, get_in_bundle(c, request))  # every entry passes the guard
    out = await c.writes.run(
        lambda unit: processor.process_staged(kind, entries, return_resources=full, unit=unit))
    return fhir_response(out, media=media)


def get_in_bundle(c: Context, request: Request | None = None) -> GetHandler:
    """Answer a GET entry of a transaction or batch: read, vread or search on the unit (held
    to the request's guard when there is one)."""
    g = guarded.guard(request) if request is not None else None
    searcher = guarded.searcher(request) if request is not None else c.searcher

    def handler(unit: Unit, url: str) -> tuple[int, bytes]:
        parts = urlsplit(url)
        segs = [p for p in parts.path.split("/") if p]
        if not segs:
            raise Invalid(f"Cannot GET {url!r} in a Bundle")
        check_type(segs[0])
        if g is not None:
            g.check_type(segs[0])
        if len(segs) == 2 and not parts.query:
            st = unit.read(segs[0], segs[1])
            st = g.shown(unit.conn, st) if g is not None else st
            assert st.content is not None
            return 200, st.content
        if len(segs) == 4 and segs[2] == "_history" and segs[3].isdigit():
            st = _vread_in(unit, segs[0], segs[1], int(segs[3]))
            st = g.shown(unit.conn, st) if g is not None else st
            assert st.content is not None
            return 200, st.content
        if len(segs) == 1:
            params = parse_qsl(parts.query, keep_blank_values=True)
            q = parse((segs[0],), params, c.repo.registry, c.base)
            count = min(q.count or c.settings.default_page_size, c.settings.max_page_size)
            result = searcher.run(unit.conn, q, count)
            return 200, bundles.searchset(c.base, f"{c.base}/{segs[0]}", params, q, result, [])
        raise Invalid(f"Cannot GET {url!r} in a Bundle")

    def _vread_in(unit: Unit, t: str, i: str, version: int) -> Stored:
        """A version as the unit sees it: the current one may have been written by this very
        transaction, which ``Repository.vread`` (on a connection of its own) cannot see yet."""
        try:
            current = unit.read(t, i)
        except (NotFound, Gone):
            current = None
        if current is not None and current.version == version:
            return current
        return c.repo.vread(t, i, version)

    return handler

