"""The Starlette application: routes of the FHIR REST API under ``/fhir`` and the mapping of
every error to an OperationOutcome (http://hl7.org/fhir/R4/http.html).

``create_app(settings)`` builds it for a database that is already migrated (the CLI migrates
before serving, so several workers never race to do it)."""

from __future__ import annotations

import gc
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Match, Route, Router, get_route_path
from starlette.types import Receive, Scope, Send

from carerecord.api import access_ops, cds_hooks, everything, export, medicines, oauth, rest
from carerecord.api.access_log import access_log
from carerecord.api.audit import AuditTrail
from carerecord.api.auth import Access, BearerAuth
from carerecord.api.capability import capability_statement
from carerecord.api.context import Context
from carerecord.api.guarded import NoStore
from carerecord.api.http import JSON, error_response, fhir_response, internal_error, response_format
from carerecord.api.limits import Limits
from carerecord.api.validate import validate_operation
from carerecord.api.writes import WriteQueue
from carerecord.config import Settings
from carerecord.errors import FhirError, MethodNotAllowed, NotAcceptable, NotFound
from carerecord.services.export import Exports
from carerecord.store.engine import make_engine
from carerecord.store.interactions import Interactions
from carerecord.store.records import iso_instant, now_us
from carerecord.store.repository import Repository
from carerecord.store.search import Searcher
from carerecord.store.transaction import TransactionProcessor

log = logging.getLogger("carerecord.api")
EXPORT_OPERATIONS = export.capability_operations()
SYSTEM_OPERATIONS = export.system_operations()
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _media(request: Request) -> str:
    try:
        return response_format(request)
    except NotAcceptable:
        return JSON


def _allowed(request: Request) -> str:
    """The methods the routes of this path answer (for the Allow header of a 405), in route
    order up to the first catch-all that turns every other method away."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.path_regex.match(request.url.path):
            if route.endpoint is _not_allowed:
                break
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def _fhir_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    response = error_response(exc, _media(request))
    if isinstance(exc, MethodNotAllowed):
        response.headers["Allow"] = _allowed(request)
    return response


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return await _fhir_error(request, MethodNotAllowed(
            f"{request.method} is not allowed on {request.url.path}"))
    if exc.status_code == 404:
        err: FhirError = NotFound(f"There is nothing at {request.url.path}")
    else:
        err = FhirError(exc.detail or "HTTP error")
        err.status = exc.status_code  # type: ignore[misc]
    return error_response(err, _media(request))


async def _not_allowed(request: Request) -> Response:
    raise MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")


def _only(path: str, endpoint: object, methods: list[str]) -> list[Route]:
    """``path`` answered by ``endpoint`` for ``methods`` and with a 405 for any other method,
    so that e.g. PUT /fhir/metadata is not taken for a conditional update of a type
    "metadata", nor DELETE /fhir/Patient/_history for a delete of Patient/_history."""
    others = [m for m in _METHODS if m not in methods and not (m == "HEAD" and "GET" in methods)]
    return [Route(path, endpoint, methods=methods),  # type: ignore[arg-type]
            Route(path, _not_allowed, methods=others)]


async def _unexpected(request: Request, exc: Exception) -> Response:
    return internal_error(request, exc)


async def metadata(request: Request) -> Response:
    return fhir_response(request.app.state.capability, media=response_format(request))


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def root(request: Request) -> Response:
    return RedirectResponse("/fhir/metadata")


def _operations() -> dict[str, list[dict[str, Any]]]:
    """The operations per resource type for the CapabilityStatement, every module's listed
    (merged per type: a dict union would keep only the last module's operations of a type)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for ops in (medicines.capability_operations(), everything.capability_operations(), EXPORT_OPERATIONS):
        for t, listed in ops.items():
            out[t] = [*out.get(t, []), *listed]
    return out


def routes() -> list[Route]:
    r = rest
    t, i = "{type}", "{id}"
    # FHIR routes first: every request walks the list until a route matches, and FHIR
    # requests are nearly all of them. The .well-known documents under /fhir go before
    # /fhir/{type}/{id} would take them.
    sign_in = oauth.routes()
    return [
        *[x for x in sign_in if x.path.startswith("/fhir/")],
        *_only("/fhir/metadata", metadata, ["GET"]),
        *access_ops.routes(),  # the guard's operations, before /fhir/{type} takes $access-queue
        # Bulk export, before /fhir/{type}, /fhir/{type}/{id} and the compartment search take them
        *_only("/fhir/$export", export.export_system, ["GET", "POST"]),
        *_only("/fhir/Patient/$export", export.export_patients, ["GET", "POST"]),
        *_only("/fhir/Group/{id}/$export", export.export_group, ["GET", "POST"]),
        *_only("/fhir/$export-status/{job}", export.status, ["GET", "DELETE"]),
        *_only("/fhir/$export-file/{job}/{name}", export.output_file, ["GET"]),
        *_only("/fhir/_history", r.history_system, ["GET"]),
        *_only("/fhir/_search", r.search_system, ["POST"]),
        Route("/fhir", r.search_system, methods=["GET"]),
        Route("/fhir", r.transaction, methods=["POST"]),
        Route("/fhir/", r.transaction, methods=["POST"]),
        *_only(f"/fhir/{t}/_history", r.history_type, ["GET"]),
        *_only(f"/fhir/{t}/_search", r.search_type, ["POST"]),
        *_only(f"/fhir/{t}/$validate", validate_operation, ["POST"]),
        # Reads and searches, the bulk of requests, before the longer paths (which have 3 or more
        # segments, so none of them can be taken by these 1- and 2-segment patterns).
        Route(f"/fhir/{t}/{i}", r.read, methods=["GET", "HEAD"]),
        Route(f"/fhir/{t}/{i}", r.update, methods=["PUT"]),
        Route(f"/fhir/{t}/{i}", r.delete, methods=["DELETE"]),
        Route(f"/fhir/{t}/{i}", r.patch, methods=["PATCH"]),
        Route(f"/fhir/{t}", r.search_type, methods=["GET"]),
        Route(f"/fhir/{t}", r.create, methods=["POST"]),
        Route(f"/fhir/{t}", r.conditional_update, methods=["PUT"]),
        Route(f"/fhir/{t}", r.conditional_delete, methods=["DELETE"]),
        Route(f"/fhir/{t}", r.patch, methods=["PATCH"]),
        *_only(f"/fhir/{t}/{i}/_history", r.history_instance, ["GET"]),
        Route(f"/fhir/{t}/{i}/_history/{{vid}}", r.vread, methods=["GET"]),
        *_only(f"/fhir/{t}/{i}/$validate", validate_operation, ["POST"]),
        *_only("/fhir/Patient/{id}/$access-log", access_log, ["GET"]),
        *_only("/fhir/Patient/{id}/$everything", everything.everything, ["GET", "POST"]),
        *medicines.routes(),  # the medicines operations, before the compartment search takes the GETs
        Route("/fhir/{comp}/{id}/{type}", r.search_compartment, methods=["GET"]),
        Route("/", root),
        Route("/healthz", health),
        *[x for x in sign_in if not x.path.startswith("/fhir/")],
        *cds_hooks.routes(),
    ]


class FastRouter(Router):
    """Starlette's router, but trying only the routes that could match in full.

    Starlette walks every route in order and takes the first that matches in full; with about
    thirty routes that walk cost about a tenth of a read's CPU (py-spy, 2026-11-23). A route
    can only match in full a path with as many segments as its own (its parameters match one
    segment each) and a method it answers, so routes are grouped by (segments, method) once,
    in their order, and only that group is tried. Anything else (a 405, a redirect to the
    other slash form, a 404) goes to Starlette's own walk, so behaviour is unchanged."""

    def __init__(self, routes: list[Route]) -> None:
        super().__init__(routes=routes)
        self._groups: dict[tuple[int, str], list[Route]] = {}
        fixed = [r for r in self.routes if isinstance(r, Route) and ":path}" not in r.path]
        if len(fixed) != len(self.routes):  # a route of any length: keep to the plain walk
            return
        for n in {r.path.count("/") for r in fixed}:
            for method in _METHODS:
                self._groups[(n, method)] = [r for r in fixed if r.path.count("/") == n
                                             and (r.methods is None or method in r.methods)]

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            group = self._groups.get((get_route_path(scope).count("/"), scope["method"]))
            for route in group or ():
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.setdefault("router", self)
                    scope["route"] = route
                    scope.update(child_scope)
                    await route.handle(scope, receive, send)
                    return
        await super().app(scope, receive, send)


def create_app(settings: Settings | None = None, repo: Repository | None = None) -> Starlette:
    """The ASGI application for ``settings`` (or an existing repository, in tests)."""
    settings = settings or Settings()
    if repo is None:
        repo = Repository(make_engine(settings.database_url()))
    base = settings.fhir_base()
    interactions = Interactions(repo, base)
    ctx = Context(settings, repo, interactions, Searcher(repo.registry), None, base,  # type: ignore[arg-type]
                  WriteQueue(repo))
    ctx.processor = TransactionProcessor(interactions, rest.get_in_bundle(ctx))  # type: ignore[arg-type]
    app = Starlette(routes=routes(), middleware=[Middleware(NoStore), Middleware(AuditTrail), Middleware(BearerAuth),
                                                 Middleware(Limits, max_bytes=settings.max_request_bytes,
                                                            rate=settings.rate_per_second, burst=settings.rate_burst,
                                                            shared=settings.rate_file)], exception_handlers={
        FhirError: _fhir_error, HTTPException: _http_error, Exception: _unexpected})
    app.router = FastRouter(app.routes)  # type: ignore[arg-type]
    app.state.ctx = ctx
    app.state.access = Access.build(settings, repo)  # sign-in and tokens; every /fhir route needs one
    app.state.exports = Exports(repo, ctx.searcher, base, settings.data_dir / "exports", audit=settings.audit,
                                max_file_bytes=settings.export_file_bytes,
                                retention_seconds=settings.export_retention_seconds,
                                workers=settings.export_workers)
    app.state.capability = capability_statement(repo.registry, base, date=iso_instant(now_us()),
                                                operations=_operations(),
                                                system_operations=SYSTEM_OPERATIONS)
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` (used with several workers): settings from the
    environment, which the CLI sets.

    What the server holds for its whole life (the search parameters, the validator's tables
    from the R4 and UK Core definitions, the routes) is moved out of the garbage collector's
    sight once built (``gc.freeze``): a full collection walked it all every few seconds under
    load and stopped the event loop for 70-84 ms each time, every request in flight waiting
    (p99 of creates 97 ms at a median of 7 ms; a full collection of a fresh server took 72 ms
    before the freeze and 0.004 ms after, 2026-11-23). Garbage made later is collected as
    before; only what exists at the freeze is never examined again."""
    app = create_app(Settings())
    gc.collect()
    gc.freeze()
    return app
