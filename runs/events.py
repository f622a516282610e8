"""The event sink: an agent's stream, coalesced, persisted in batches, then pushed live.

Tokens are never written one by one: deltas of the same kind merge in memory and a batch is
written (one INSERT) and sent to the run's channel group about every 50 ms per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer

from runs.dbthread import db_async
from runs.models import AgentEvent, EventKind

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.05
_MERGEABLE = {EventKind.TEXT, EventKind.REASONING}


def run_group(run_id: UUID | str) -> str:
    return f"run.{run_id}"


@dataclass
class EventSink:
    run_id: UUID
    step_id: int
    session_id: int
    next_seq: int = 1
    _pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _task: asyncio.Task[None] | None = None

    def emit(self, kind: str, **payload: Any) -> None:
        """Queue an event; consecutive text (or reasoning) deltas merge into one."""
        if kind in _MERGEABLE and self._pending and self._pending[-1][0] == kind:
            self._pending[-1][1]["text"] += payload["text"]
            return
        self._pending.append((kind, dict(payload)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            rows = [
                AgentEvent(
                    session_id=self.session_id,
                    step_id=self.step_id,
                    seq=self.next_seq + i,
                    kind=kind,
                    payload=payload,
                )
                for i, (kind, payload) in enumerate(batch)
            ]
            await db_async(AgentEvent.objects.bulk_create)(rows)
            self.next_seq += len(rows)
        await publish(
            self.run_id,
            {
                "type": "run.events",
                "step_id": self.step_id,
                "events": [
                    {"id": row.pk, "seq": row.seq, "kind": row.kind, "payload": row.payload}
                    for row in rows
                ],
            },
        )

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep streaming; the final flush reports a persistent failure
                log.exception("event flush failed for step %s", self.step_id)


async def publish(run_id: UUID | str, message: dict[str, Any]) -> None:
    """Send to the run's group; live viewers are a nicety, the database already has it."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(run_group(run_id), message)
    except Exception:
        log.warning("could not publish to run %s", run_id, exc_info=True)


async def publish_step_changed(run_id: UUID | str, step_id: int) -> None:
    await publish(run_id, {"type": "run.step", "step_id": step_id})
