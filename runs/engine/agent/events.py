"""The event sink: an agent's stream, coalesced, persisted in batches, then pushed live.

Tokens are never written one by one: deltas of the same kind merge in memory and a batch is
written (one INSERT) and sent to the run's channel group at most every 40 ms per step. The
first event after a quiet spell goes out at once (a turn's first token, a tool call), later
ones wait for the window; an idle sink has no timer running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer
from django.db import Error as DatabaseError

from runs.engine.dbthread import db_async
from runs.engine.storable import is_outage, storable, write_refusal
from runs.models import AgentEvent, EventKind

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.04
_MERGEABLE = {EventKind.TEXT, EventKind.REASONING}


def run_group(run_id: UUID | str) -> str:
    return f"run.{run_id}"


class StorageRefused(Exception):
    """The database refused a batch of events for what it holds, not for being away: writing
    it again can only fail again, so the batch is dropped and the step must fail."""


@dataclass
class EventSink:
    run_id: UUID
    step_id: int
    session_id: int
    next_seq: int = 1
    _pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)  # set when an event is queued
    _failing: bool = False  # the last periodic flush could not reach the database
    # Why the database refused a batch (not an outage); the agent fails its step with it.
    refused: str = ""

    @property
    def count(self) -> int:
        """Events of this attempt so far, written or pending (merged deltas count once)."""
        return self.next_seq - 1 + len(self._pending)

    def emit(self, kind: str, **payload: Any) -> None:
        """Queue an event; consecutive text (or reasoning) deltas merge into one."""
        self._wake.set()
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
        # Shielded: a write that has started finishes and is counted even if the caller is
        # cancelled (a lost lease, a stopping sink); otherwise the rows could be in the
        # database while next_seq still pointed at them, and the next batch would collide.
        await asyncio.shield(self._write_pending())

    async def _write_pending(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending = self._pending, []
            rows = self._rows(batch)
            try:
                await db_async(AgentEvent.objects.bulk_create)(rows)
            except Exception as exc:
                if not is_outage(exc):
                    # Refused for what it holds: the same batch would fail for ever. Drop
                    # it (seq is not advanced, so the stream has no gap) and say why.
                    self.refused = self.refused or write_refusal(exc)
                    log.warning("events of step %s refused: %s", self.step_id, self.refused)
                    raise StorageRefused(self.refused) from exc
                # Not written (the database is away): keep the batch, in order, for the
                # next flush, so the stream has neither a hole nor a seq gap.
                self._pending = batch + self._pending
                raise
            except BaseException:
                self._pending = batch + self._pending
                raise
            self.next_seq += len(rows)
            # Announced under the lock: viewers drop ids at or below the last one they got,
            # so batches of one step must reach the group in the order they were written.
            await self.announce(rows)

    async def stop(self) -> None:
        """Stop the periodic flush and write what is pending; the sink may still seal."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    def seal(self, events: list[tuple[str, dict[str, Any]]]) -> list[AgentEvent]:
        """Unsaved rows for an attempt's last events, numbered after everything written.

        The caller saves them in the transaction that records the step's outcome, so a
        stream says "succeeded" only if the step really did (a crash in between leaves
        neither). Call `stop` first; `announce` them once committed.
        """
        rows = self._rows(events)
        self.next_seq += len(rows)
        return rows

    def _rows(self, events: list[tuple[str, dict[str, Any]]]) -> list[AgentEvent]:
        """Unsaved rows numbered from next_seq (the caller advances it once they count).

        The one place events become rows: every payload is made storable here.
        """
        return [
            AgentEvent(
                session_id=self.session_id,
                step_id=self.step_id,
                seq=self.next_seq + i,
                kind=kind,
                payload=storable(payload),
            )
            for i, (kind, payload) in enumerate(events)
        ]

    async def announce(self, rows: list[AgentEvent]) -> None:
        """Push saved rows to the run's live viewers."""
        await publish(
            self.run_id,
            {
                "type": "run.events",
                "step_id": self.step_id,
                "events": [row.as_message() for row in rows],
            },
        )

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            started = loop.time()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except StorageRefused:
                pass  # dropped and recorded in `refused`; the agent fails its step with it
            except DatabaseError as exc:  # away for now: the batch waits for the next tick
                if not self._failing:
                    log.warning("events of step %s wait for the database: %s", self.step_id, exc)
                self._failing = True
            except Exception:  # keep streaming; the final flush reports a persistent failure
                log.exception("event flush failed for step %s", self.step_id)
            else:
                self._failing = False
            # What arrives within the window from this flush's start goes out as one batch;
            # counted from the start, so a slow INSERT does not stretch the window.
            await asyncio.sleep(max(0.0, started + FLUSH_SECONDS - loop.time()))


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
