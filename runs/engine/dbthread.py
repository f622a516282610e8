"""Database calls from the engine's event loop, on a small pool of threads.

Channels' `database_sync_to_async` runs every call on one shared thread by default; with many
agents flushing events every 40 ms that one thread becomes the queue every hand-off waits in.
Engine calls are self-contained (each opens its own transaction), so they may run on any of a
few threads, each keeping its own persistent connection. `close_pool` closes those
connections, so a stopped engine leaves no session behind.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.db import connections

from runs.engine import crashpoints

POOL_SIZE = 4
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="engine-db")
        return _pool


def db_async[**P, R](fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    return DatabaseSyncToAsync(crashpoints.around(fn), thread_sensitive=False, executor=_executor())


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
