"""Where tools run: a few threads of the engine's own, never the event loop.

A slow disk or a long search then never holds up the event loop (other agents, heartbeats,
HTTP in `manage.py serve`), and tools never queue behind other users of asyncio's default
threads. Few threads: local reads are quick, and every busy tool thread competes with the
event loop for the GIL.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

TOOL_THREADS = 2
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


async def run_off_loop[**P, R](fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args, **kwargs)` on a tool thread."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=TOOL_THREADS, thread_name_prefix="tools")
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, lambda: fn(*args, **kwargs))
