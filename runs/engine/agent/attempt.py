"""One step attempt, from its claim to its outcome: it owns its context, event sink, model
slot, backend, tools and the tally of its counters.

An attempt starts as the context says (runs.engine.agent.context.Start): *resume* continues
the same attempt's checkpoint after a crash or a lost lease; *fresh* begins a new transcript
from the current upstream outputs, as the first attempt after a retry does. Whatever ends it
(an answer, a fault, a cancel, an outage), it writes down what it spent and gives back its
slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import Error as DatabaseError

from runs.engine.agent.backends.base import BackendError
from runs.engine.agent.caps import CapExceeded
from runs.engine.agent.context import StepContext, load_context, record_counters
from runs.engine.agent.events import EventSink, StorageRefused, publish_step_changed
from runs.engine.agent.loop import ModelSlot, StepHost, StepLost, converse, open_toolbox
from runs.engine.agent.turn import StepFailed, TurnState
from runs.engine.dbthread import db_async
from runs.engine.queue import scheduler
from runs.engine.report import reporting
from runs.engine.storable import is_outage, storable, write_refusal
from runs.engine.target import readonly_proof
from runs.engine.target.confinement import TargetChanged
from runs.engine.target.tools import ReadOnlyTools
from runs.engine.target.toolthreads import run_off_loop
from runs.models import EventKind

log = logging.getLogger(__name__)


class Attempt:
    """A claimed step's attempt; `run` takes it to its end. Cancellation (lost lease,
    cancelled run) propagates."""

    def __init__(self, ctx: StepContext, host: StepHost) -> None:
        self.ctx = ctx
        self.host = host
        self.sink = EventSink(ctx.run_id, ctx.step_id, ctx.session_id, next_seq=1)
        self.state = TurnState.resume(ctx)  # the tally: transcript and counters as opened
        # Set as the attempt starts: its place in the model's queue, its client, its tools.
        self.slot: ModelSlot | None = None
        self.toolbox: ReadOnlyTools | None = None

    async def run(self) -> None:
        ctx, host, sink = self.ctx, self.host, self.sink
        sink.start()
        try:
            if ctx.exhausted:
                raise StepFailed(ctx.exhausted)
            try:
                model = await host.backends.target(ctx.model_id, ctx.endpoint_url)
            except ImproperlyConfigured as exc:  # the model's settings, or the run's endpoints
                raise StepFailed(f"the model cannot be used: {exc}") from None
            await host.backends.servers.note_run(ctx.run_id, model)
            self.slot = ModelSlot(ctx, sink, model, host.waiters, host.backends)
            self.toolbox = toolbox = await run_off_loop(open_toolbox, ctx)
            if await db_async(readonly_proof.needs_before)(ctx.run_id):
                before = await run_off_loop(readonly_proof.take_fingerprint, toolbox.root)
                await db_async(readonly_proof.save_before)(ctx.run_id, before)
            output = await converse(ctx, sink, toolbox, self.slot, self.state)
        except asyncio.CancelledError:
            sink.emit(EventKind.STATUS, state="stopped", detail="cancelled or lease lost")
            await asyncio.shield(self._stop())
            raise
        except StepLost:
            sink.emit(EventKind.STATUS, state="stopped", detail="cancelled or lease lost")
        except DatabaseError as exc:
            if not is_outage(exc):  # refused for what it holds: trying again cannot help
                await self._fail(f"the step could not be stored: {write_refusal(exc)}")
            else:
                # Not the step's fault: leave it unfinished; once its lease lapses an engine
                # resumes it from the last turn that was committed.
                log.warning(
                    "step %s (%s) paused, database unavailable: %s", ctx.key, ctx.step_id, exc
                )
        except StorageRefused as exc:
            await self._fail(f"the agent's events could not be stored: {exc}")
        except (BackendError, StepFailed, TargetChanged, CapExceeded) as exc:
            await self._fail(str(exc))
        except Exception as exc:  # a bug must fail this step, not wedge the worker
            log.exception("step %s (%s) crashed", ctx.key, ctx.step_id)
            await self._fail(f"internal error: {exc!r}")
        else:
            await self._finish(succeeded=True, output=output, truncated=self.state.truncated)
        finally:
            await asyncio.shield(self._close())

    async def _stop(self) -> None:
        """A cancelled attempt: give back a slot it holds with no request open (one granted
        with its claim, before its first turn began), and count what it spent."""
        ctx = self.ctx
        try:
            if self.slot is not None:
                await self.slot.release()  # a no-op unless held: a turn gives it back itself
            elif ctx.holds_slot:
                slots = self.host.backends.slots(ctx.model_id, ctx.endpoint_url)
                await db_async(scheduler.release_slot)(ctx.step_id, ctx.worker, ctx.model_id, slots)
        except DatabaseError as exc:  # its lease lapses instead
            log.warning("slot of step %s not given back: %s", ctx.step_id, exc)
        await self._count_what_was_spent()

    async def _count_what_was_spent(self) -> None:
        """A cancelled or failing attempt still spent tokens: write them down (best effort)."""
        self.state.drop_inflight()
        try:
            await db_async(record_counters)(self.ctx, self.state.counters())
        except DatabaseError as exc:
            log.warning("tokens spent by step %s not saved: %s", self.ctx.step_id, exc)

    async def _fail(self, error: str) -> None:
        await self._count_what_was_spent()
        await self._finish(succeeded=False, error=error)

    async def _close(self) -> None:
        try:
            await self.sink.close()
        except StorageRefused:
            pass  # recorded in sink.refused, and logged
        except DatabaseError as exc:  # uncommitted events of an attempt that will be resumed
            log.warning("last events of step %s not saved: %s", self.sink.step_id, exc)

    async def _finish(
        self, *, succeeded: bool, output: str = "", error: str = "", truncated: bool = False
    ) -> None:
        ctx, host, sink = self.ctx, self.host, self.sink
        host.finishing(ctx.step_id)
        with contextlib.suppress(StorageRefused):  # its reason is in sink.refused
            await sink.stop()
        if sink.refused and succeeded:
            succeeded, output = False, ""
            error = f"the agent's events could not be stored: {sink.refused}"
        last: list[tuple[str, dict[str, Any]]] = []
        if error:
            last.append((EventKind.ERROR, {"message": error}))
        last.append((EventKind.STATUS, {"state": "succeeded" if succeeded else "failed"}))
        final_events = sink.seal(last)
        finish = functools.partial(
            db_async(scheduler.finish_step),
            ctx.step_id,
            ctx.worker,
            succeeded=succeeded,
            output=storable(output),
            error=storable(error),
            claim=host.room(),
            slots=host.backends.slots(ctx.model_id, ctx.endpoint_url),
            truncated=truncated,
        )
        try:
            recorded = await finish(final_events=final_events)
        except DatabaseError as exc:
            if is_outage(exc):
                raise
            # The outcome must not wait on events the database refuses: record it without them.
            log.warning("last events of step %s refused: %s", ctx.step_id, exc)
            final_events = []
            recorded = await finish(final_events=final_events)
        # The dependants start before this step's clean-up: it is their hand-off.
        host.adopt(recorded.claimed, finishing=ctx.step_id)
        if recorded:
            await sink.announce(final_events)
        if recorded.run_done:
            await db_async(reporting.finalize_run)(ctx.run_id)
        await publish_step_changed(ctx.run_id, ctx.step_id)


async def execute_step(
    step_id: int, worker: str, host: StepHost, ctx: StepContext | None = None
) -> None:
    """Run one claimed step's attempt to its end (`ctx`: its context, when opened with the
    claim)."""
    if ctx is None:
        ctx = await db_async(load_context)(step_id, worker)
    if ctx is None:
        return
    await Attempt(ctx, host).run()
