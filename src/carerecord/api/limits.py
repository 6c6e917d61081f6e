"""Limits that keep one caller from hurting others (issue 4, "Every path").

- **Request size**: a body over ``Settings.max_request_bytes`` is refused with 413 and an
  OperationOutcome, by its Content-Length before it is read, or as soon as a streamed body
  passes the limit.
- **Bundle size**: a transaction or batch of more than ``Settings.max_bundle_entries`` entries
  is a 413 (:func:`check_bundle_size`), before anything is staged.
- **``_count``** is capped at ``Settings.max_page_size`` with honest paging (``rest.run_search``);
  **``_include:iterate``** runs at most ``store.search.INCLUDE_ROUNDS`` rounds.
- **Rate**: a token bucket per client id (the token's ``client_id``): ``rate_per_second``
  refilled up to ``rate_burst``; an empty bucket is a 429 with Retry-After (seconds until a
  token is back). System clients (``system/`` scopes: trusted integrations, loaders, the
  benchmarks) are not limited, as they are trusted with everything. The workers of one
  ``carerecord serve`` share their buckets (:class:`SharedBuckets`, a small table in a file the
  command creates and maps into each worker), so N workers do not give a client N times its
  rate; an app built without that file (tests, one process) keeps them in memory
  (:class:`Buckets`). Servers on several machines each have their own: a region puts a shared
  limiter in front of them.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, Protocol

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


class TokenBuckets(Protocol):
    def take(self, key: str, now: float | None = None) -> float: ...


def _refill(tokens: float, last: float, now: float, rate: float, burst: int) -> float:
    return min(float(burst), tokens + max(0.0, now - last) * rate)


class Buckets:
    """Token buckets per client id in this process (thread-safe: PostgreSQL requests run in threads)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0 if there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = _refill(tokens, last, now, self.rate, self.burst)
            if tokens >= 1:
                self._state[key] = (tokens - 1, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1 - tokens) / self.rate if self.rate > 0 else 3600.0


class SharedBuckets:
    """Token buckets per client id shared by the processes that map the same file (the workers
    of one ``carerecord serve``).

    The file is a table of ``SLOTS`` slots: a 16-byte digest of the client id, its tokens and
    when they were counted (``time.monotonic``, one clock for every process of the machine). A
    client's slot is found by probing from its digest; a new client takes an empty slot, or one
    whose bucket has refilled to the brim (the same as no bucket), or else the fullest one (its
    client, starting again with a full bucket, gains least; a throttled client keeps its slot).
    Each take holds an exclusive ``lockf`` on the file (for the other processes) and a thread
    lock (``lockf`` does not exclude threads of one process): two system calls and a few
    microseconds. The map lives as long as the worker. Hand-written because no library shares a rate limit between processes
    without a server (Redis) to hold it."""

    SLOTS = 4096
    PROBES = 16
    _SLOT = struct.Struct("<16sdd")
    _EMPTY = bytes(16)

    def __init__(self, path: Path, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        size = self.SLOTS * self._SLOT.size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # zero-filled: every slot empty
        self._map = mmap.mmap(self._fd, size)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take a token for ``key``: 0 if there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
        if digest == self._EMPTY:
            digest = b"\x01" + digest[1:]
        with self._lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                offset, tokens, last = self._slot(digest, now)
                tokens = _refill(tokens, last, now, self.rate, self.burst)
                taken = tokens >= 1
                self._SLOT.pack_into(self._map, offset, digest, tokens - 1 if taken else tokens, now)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)
        if taken:
            return 0.0
        return (1 - tokens) / self.rate if self.rate > 0 else 3600.0

    def _slot(self, digest: bytes, now: float) -> tuple[int, float, float]:
        """The offset of ``digest``'s slot, with its tokens and time (a full bucket if new)."""
        first = int.from_bytes(digest[:4], "little")
        fullest: tuple[float, int] | None = None
        for probe in range(self.PROBES):
            offset = ((first + probe) % self.SLOTS) * self._SLOT.size
            key, tokens, last = self._SLOT.unpack_from(self._map, offset)
            if key == digest:
                return offset, tokens, last
            held = _refill(tokens, last, now, self.rate, self.burst)
            if key == self._EMPTY or held >= self.burst:
                return offset, float(self.burst), now
            if fullest is None or held > fullest[0]:
                fullest = (held, offset)
        assert fullest is not None  # every probed slot busy: the client nearest a full bucket
        return fullest[1], float(self.burst), now  # loses least by starting again full


def check_bundle_size(bundle: dict[str, Any], limit: int) -> None:
    """TooLarge (413) when a transaction or batch has more than ``limit`` entries."""
    entries = bundle.get("entry")
    if isinstance(entries, list) and len(entries) > limit:
        raise TooLarge(f"The Bundle has {len(entries)} entries; at most {limit} are taken in one request")


class Limits:
    """ASGI middleware (inside BearerAuth, so the Principal is known): size and rate limits."""

    def __init__(self, app: ASGIApp, max_bytes: int, rate: float, burst: int,
                 shared: Path | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.buckets: TokenBuckets = SharedBuckets(shared, rate, burst) if shared else Buckets(rate, burst)

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
