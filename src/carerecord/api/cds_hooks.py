"""HTTP adapter of the CDS Hooks 2.0 medicines services (https://cds-hooks.hl7.org/2.0/):
``GET /cds-services`` (discovery), ``POST /cds-services/{id}`` (a hook call) and
``POST /cds-services/{id}/feedback``. The services themselves are in
``carerecord.services.medicines.cds``; this module only turns HTTP into calls and results or
``CdsError`` into JSON responses (CDS Hooks is not FHIR, so errors are ``{"error": ...}``,
not OperationOutcomes).

Data missing from a call's prefetch is read from this server's own store (never from the
request's ``fhirServer``), after checking that the caller's token allows the same read or
search on the FHIR API. With PostgreSQL that read waits in a thread, as FHIR reads do.
The routes sit behind the API's bearer-token middleware like every non-open path."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from carerecord.api import guarded
from carerecord.api.auth import principal
from carerecord.api.needs import needs
from carerecord.errors import Gone, NotFound
from carerecord.services.medicines.bundled import bundled
from carerecord.services.medicines.cds import CdsError, CdsService, Fetch
from carerecord.services.medicines.store_fetch import StoreFetcher
from carerecord.store.interactions import check_type

_lock = threading.Lock()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def service(request: Request) -> CdsService:
    """The app's CDS service, made on first use from the app's repository."""
    state = request.app.state
    found: CdsService | None = getattr(state, "cds", None)
    if found is None:
        with _lock:
            found = getattr(state, "cds", None)
            if found is None:
                ctx = state.ctx
                found = CdsService(bundled(), fetch=StoreFetcher(ctx.repo, ctx.base))
                state.cds = found
    return found


def _guarded_fetch(request: Request, svc: CdsService) -> Fetch | None:
    """The service's store fetch, refusing (403) any read the caller's scopes do not allow and
    held to the request's guard: a patient the caller may not reach reads as unknown (None) and
    searches see only permitted compartments."""
    if svc.fetch is None:
        return None
    ctx = request.app.state.ctx
    store = StoreFetcher(ctx.repo, ctx.base)
    store.searcher = guarded.searcher(request)
    access = request.app.state.access
    who = principal(request)
    g = guarded.guard(request)

    def fetch(url: str) -> Mapping[str, Any] | None:
        path, _, query = url.partition("?")
        params = parse_qsl(query)
        access.authorise(who, needs("GET", [s for s in path.split("/") if s], params), params)
        if not query and "/" in path:
            res_type, _, res_id = path.partition("/")
            check_type(res_type)
            g.check_type(res_type)
            try:
                return orjson.loads(guarded.read(request, res_type, res_id).content or b"null")  # type: ignore[no-any-return]
            except (NotFound, Gone):
                return None
        return store(url)
    return fetch


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as e:
        raise CdsError(400, f"The body is not JSON: {e}") from e


async def discovery(request: Request) -> Response:
    return _json(service(request).discovery())


async def call(request: Request) -> Response:
    svc = service(request)
    try:
        body = await _body(request)
        sid = request.path_params["id"]
        fetch = _guarded_fetch(request, svc)
        if svc.needs_fetch(body) and request.app.state.ctx.repo.is_postgres:
            result = await anyio.to_thread.run_sync(svc.call, sid, body, fetch)
        else:
            result = svc.call(sid, body, fetch)
    except CdsError as e:
        return _json({"error": str(e)}, e.status)
    return _json(result)


async def feedback(request: Request) -> Response:
    try:
        service(request).feedback(request.path_params["id"], await _body(request))
    except CdsError as e:
        return _json({"error": str(e)}, e.status)
    return _json({})


def routes() -> list[Route]:
    return [Route("/cds-services", discovery, methods=["GET"]),
            Route("/cds-services/{id}", call, methods=["POST"]),
            Route("/cds-services/{id}/feedback", feedback, methods=["POST"])]
