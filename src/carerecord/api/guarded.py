"""The API's way to the store: through the request's :class:`~carerecord.access.guard.Guard`.

Handlers take the guard, guarded interactions, searcher and transaction processor from here
(built once per request, from the Principal the BearerAuth middleware put on it), so no route
reaches patient data around the guard. Also the ``Cache-Control: no-store`` on every FHIR
answer (they carry patient data; a shared cache must never replay what a later request may no
longer see).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carerecord.access.guard import Guard
from carerecord.access.guarded import GuardedInteractions, GuardedSearcher
from carerecord.api.auth import principal
from carerecord.api.context import Context
from carerecord.errors import Gone
from carerecord.store.records import Stored
from carerecord.store.threads import off_loop
from carerecord.store.transaction import GetHandler, TransactionProcessor

T = TypeVar("T")


def guard(request: Request) -> Guard:
    """The request's guard (one per request: decisions are never shared between requests)."""
    state: dict[str, Any] = request.scope.setdefault("state", {})
    found: Guard | None = state.get("guard")
    if found is None:
        found = Guard(principal(request), state)
        state["guard"] = found
    return found


def _ctx(request: Request) -> Context:
    return request.app.state.ctx  # type: ignore[no-any-return]


def interactions(request: Request) -> GuardedInteractions:
    state = request.scope.setdefault("state", {})
    found: GuardedInteractions | None = state.get("guarded_interactions")
    if found is None:
        found = GuardedInteractions(_ctx(request).interactions, guard(request))
        state["guarded_interactions"] = found
    return found


def searcher(request: Request) -> GuardedSearcher:
    return interactions(request).searcher  # type: ignore[return-value]


def processor(request: Request, get: GetHandler) -> TransactionProcessor:
    """A transaction processor whose every entry passes the guard."""
    return TransactionProcessor(interactions(request), get)


async def on_store(request: Request, job: Callable[[], T]) -> T:
    """Run ``job`` in a thread on PostgreSQL (a network round trip), inline on SQLite."""
    if _ctx(request).repo.is_postgres:
        return await off_loop(job)
    return job()


def read(request: Request, res_type: str, res_id: str) -> Stored:
    """The current version as the caller may see it (404 as for an unknown one otherwise; a
    deletion is 410 only to those who could see what was deleted)."""
    c, g = _ctx(request), guard(request)
    if g.unrestricted():  # a trusted system: nothing of the record to check, so the raw read
        return g.shown(None, c.repo.read(res_type, res_id))  # (Gone is 410 for it, as before)
    with c.repo.reading() as conn:
        try:
            st = c.repo.read(res_type, res_id, conn=conn)
        except Gone:
            g.gone(conn, res_type, res_id)
            raise
        return g.shown(conn, st)


class NoStore:
    """ASGI middleware: ``Cache-Control: no-store`` on every /fhir answer but the
    CapabilityStatement."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/fhir") or path.endswith("/metadata"):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message["headers"] = [*headers, (b"cache-control", b"no-store")]
            await send(message)
        await self.app(scope, receive, sending)
