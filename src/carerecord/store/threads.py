"""Blocking database work off the event loop, for the hot paths on PostgreSQL.

``anyio.to_thread.run_sync`` costs several times a plain executor hop (a capacity limiter, run
variables and a cancel scope per call: 20% of the CPU of a read on PostgreSQL in py-spy,
where a read hops off the loop three times: the token's revocation, the read and the audit
append). :func:`off_loop` is ``loop.run_in_executor`` on one pool per process, carrying the
caller's context variables. Like ``run_sync`` by default, the work is never abandoned: a
cancelled caller stops waiting, and the thread finishes what it started.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="carerecord-db")


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread; its result or its exception."""
    loop = asyncio.get_running_loop()
    ctx = contextvars.copy_context()
    return await loop.run_in_executor(_POOL, lambda: ctx.run(fn, *args, **kwargs))
