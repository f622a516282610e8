"""A user flooding their own run's socket, as the report described it: sockets that send
`resume` messages full of step ids the run does not have, as fast as the connection takes
them, and connect again whenever the server closes them.

Runs in a process of its own (`flood_main`), so its busy event loop does not delay the
measuring pane's timestamps in the bench's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from multiprocessing.queues import Queue
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def flood_messages() -> list[str]:
    """256 unknown ids (over the per-message cap) and 64 (within it), in turn."""
    first = 10**12
    return [
        json.dumps({"type": "resume", "have": {str(first + i): 0 for i in range(count)}})
        for count in (256, 64)
    ]


async def _one_socket(host: str, run_id: str, cookie: str, until: float, counts: dict[str, int]):
    messages = flood_messages()
    while time.monotonic() < until:
        try:
            ws = await connect(
                f"ws://{host}/ws/runs/{run_id}/",
                origin=f"http://{host}",  # type: ignore[arg-type]
                additional_headers={"Cookie": cookie},
                max_size=None,
                open_timeout=10,
            )
        except (InvalidStatus, OSError, TimeoutError):
            counts["refused"] += 1
            await asyncio.sleep(0.05)
            continue
        counts["connections"] += 1
        drain = asyncio.create_task(_drain(ws))
        try:
            sent = 0
            while time.monotonic() < until:
                await ws.send(messages[sent % 2])
                sent += 1
                counts["sent"] += 1
                if sent % 16 == 0:
                    await asyncio.sleep(0)  # let the reader run
        except ConnectionClosed:
            counts["closed_by_server"] += 1
        finally:
            drain.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await drain
            await ws.close()
        await asyncio.sleep(0.05)  # an attacker's reconnect loop


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


def flood_main(host: str, run_id: str, cookie: str, sockets: int, seconds: float, out: Queue):
    """Flood for `seconds` with `sockets` sockets; put the counts on `out`."""
    counts = {"connections": 0, "refused": 0, "sent": 0, "closed_by_server": 0}
    until = time.monotonic() + seconds

    async def main() -> None:
        await asyncio.gather(
            *(_one_socket(host, run_id, cookie, until, counts) for _ in range(sockets))
        )

    asyncio.run(main())
    out.put(counts)
