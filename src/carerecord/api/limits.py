"""Limits that keep one caller from hurting others (issue 4, "Every path").

- **Request size**: a body over ``Settings.max_request_bytes`` is refused with 413 and an
  OperationOutcome, by its Content-Length before it is read, or as soon as a streamed body
  passes the limit.
- **Bundle size**: a transaction or batch of more than ``Settings.max_bundle_entries`` entries
  is a 413 (:func:`check_bundle_size`), before anything is staged.
- **``_count``** is capped at ``Settings.max_page_size`` with honest paging (``rest.run_search``);
  **``_include:iterate``** runs at most ``store.search.INCLUDE_ROUNDS`` rounds.
- **Rate**: an in-process token bucket per client id (the token's ``client_id``) and worker:
  ``rate_per_second`` refilled up to ``rate_burst``; an empty bucket is a 429 with Retry-After
  (seconds until a token is back). System clients (``system/`` scopes: trusted integrations,
  loaders, the benchmarks) are not limited, as they are trusted with everything. Per worker, so with N workers a client may get N times the
  rate; a shared limiter (a proxy, or Redis) is the production answer for a region, and this
  one keeps a single caller from starving the others of one machine.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from carerecord.access.principal import Kind
from carerecord.api.http import error_response, response_format
from carerecord.errors import FhirError, NotAcceptable


class TooLarge(FhirError):
    status = 413
    code = "too-long"


class TooMany(FhirError):
    status = 429
    code = "throttled"


class Buckets:
    """Token buckets per client id (thread-safe: PostgreSQL requests run in threads)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0 if there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate > 0 else 3600.0


def check_bundle_size(bundle: dict[str, Any], limit: int) -> None:
    """TooLarge (413) when a transaction or batch has more than ``limit`` entries."""
    entries = bundle.get("entry")
    if isinstance(entries, list) and len(entries) > limit:
        raise TooLarge(f"The Bundle has {len(entries)} entries; at most {limit} are taken in one request")


class Limits:
    """ASGI middleware (inside BearerAuth, so the Principal is known): size and rate limits."""

    def __init__(self, app: ASGIApp, max_bytes: int, rate: float, burst: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.buckets = Buckets(rate, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = scope.get("state", {}).get("principal")
        if who is not None and who.kind is not Kind.SYSTEM:
            wait = self.buckets.take(who.client_id or who.subject)
            if wait > 0:
                err = TooMany("Too many requests from this client; retry later")
                await self._refuse(scope, receive, send, err, {"Retry-After": str(max(1, math.ceil(wait)))})
                return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, receive, send, self._too_large(), {})
            return
        seen = 0

        async def receiving() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()
            return message
        await self.app(scope, receiving, send)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"The request body is larger than {self.max_bytes} bytes")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, err: FhirError, headers: dict[str, str]) -> None:
        request = Request(scope)
        try:
            media = response_format(request)
        except NotAcceptable:
            media = "application/fhir+json"
        response = error_response(err, media)
        response.headers.update(headers)
        await response(scope, receive, send)
