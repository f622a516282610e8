"""Database calls from the engine's event loop, on a small pool of threads.

Channels' `database_sync_to_async` runs every call on one shared thread by default; with many
agents flushing events every 40 ms that one thread becomes the queue every hand-off waits in.
Engine calls are self-contained (each opens its own transaction), so they may run on any of a
few threads, each keeping its own persistent connection. `close_pool` closes those
connections, so a stopped engine leaves no session behind.

Health checks (engine calls here, and the pane's redraws through `shared_thread_db_async`):
with `CONN_HEALTH_CHECKS` Django sends `SELECT 1` before the first query of
every call (each call is a new "request" to it), a round trip that was about 40% of these
threads' time while agents stream. A connection that answered within the last
`HEALTH_CHECK_IDLE` seconds is not checked again; one idle longer, or one whose last call
failed, still is. A database restarted within that second fails one call per thread, as an
outage does (callers keep their batch and retry), and the next call reconnects.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import close_old_connections, connections

from runs.engine import crashpoints

POOL_SIZE = 4
HEALTH_CHECK_IDLE = 1.0  # seconds a connection may sit unused and still skip the check
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_answered = threading.local()  # per thread: alias -> (DB-API connection, when it last answered)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="engine-db")
        return _pool


class _TrustingSyncToAsync(SyncToAsync):
    """Channels' `DatabaseSyncToAsync` (old connections closed before and after each call),
    with the health check skipped for a connection that has just answered."""

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        _trust_recent_answers()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _note_answers()
            close_old_connections()


def _trust_recent_answers() -> None:
    answered: dict[str, tuple[Any, float]] = getattr(_answered, "by_alias", {})
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        last = answered.get(conn.alias)
        if last is None or conn.connection is not last[0] or now - last[1] > HEALTH_CHECK_IDLE:
            continue
        # Django's own flag: "this batch's check is done", as it sets after a check passes.
        conn.health_check_done = True  # type: ignore[attr-defined]  # not in django-stubs


def _note_answers() -> None:
    answered: dict[str, tuple[Any, float]] = _answered.__dict__.setdefault("by_alias", {})
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.errors_occurred:
            answered.pop(conn.alias, None)  # checked before its next use
        else:
            answered[conn.alias] = (conn.connection, now)


def db_async[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    return _TrustingSyncToAsync(
        crashpoints.around(fn), thread_sensitive=False, executor=_executor()
    )


def shared_thread_db_async[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`database_sync_to_async` (the one thread-sensitive thread the web side shares), with
    the same health checks as the engine's calls: the pane's frequent redraws use it."""
    return _TrustingSyncToAsync(fn, thread_sensitive=True)


def close_pool() -> None:
    """Close every pool thread's connection and retire the pool (blocking)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is None:
        return
    # One task per thread, held at a barrier, so each thread closes its own connection.
    barrier = threading.Barrier(POOL_SIZE, timeout=5)

    def close_mine() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait()
        connections.close_all()

    for future in [pool.submit(close_mine) for _ in range(POOL_SIZE)]:
        future.result()
    pool.shutdown(wait=True)
