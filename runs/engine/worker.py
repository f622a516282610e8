"""The worker: a Channels background consumer that owns the scheduler and agent dispatch.

The database is the truth and a channel message only wakes the engine, which also sweeps on
start and every few seconds, so a lost message delays nothing for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from channels.consumer import AsyncConsumer
from channels.worker import Worker
from django.conf import settings
from django.db import Error as DatabaseError

from runs.engine.agent.attempt import execute_step
from runs.engine.agent.context import StepContext
from runs.engine.agent.events import publish
from runs.engine.agent.loop import BackendFactory, SlotWaiters
from runs.engine.dbthread import close_pool, db_async
from runs.engine.queue import scheduler
from runs.engine.report import reporting
from runs.models import FlowRun

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 0.5  # also how fast a cancelled agent notices: well under a second
DB_RETRY_SECONDS = 1.0

_engine: Engine | None = None


def current_engine() -> Engine | None:
    return _engine


class Engine:
    """Claims ready steps, runs their agents as tasks, heartbeats their leases."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        run_id: UUID | None = None,
        backend_factory: BackendFactory | None = None,
    ) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.concurrency = concurrency or settings.ORCHESTRATOR_WORKER_CONCURRENCY
        self.run_id = run_id  # when set, only this run's steps (launch_flow --wait)
        self.backends = backend_factory or BackendFactory()
        self.waiters = SlotWaiters()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._handed_on: set[int] = set()  # finishing steps whose place went to a dependant
        # Steps recording their outcome: the heartbeat leaves them be (their lease ends with
        # the outcome; cancelling them then would cut off the last events' live push).
        self._finishing: set[int] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._until_idle = False
        self._next_stranded_check = 0.0

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Run until stop(); with run_id, until that run has finished."""
        global _engine
        _engine = self
        log.info("engine %s started (concurrency %d)", self.worker_id, self.concurrency)
        beat = asyncio.create_task(self._heartbeat_forever())
        try:
            while not self._stopping:
                # Cleared before the sweep: a wake-up (a launch, a finished step) that lands
                # while it runs means sweep again, not wait for the next periodic sweep.
                self._wake.clear()
                try:
                    if await self._sweep_and_check_done():
                        break
                except DatabaseError as exc:
                    # The database is away (restarting, failing over): the agents keep
                    # streaming into memory and the engine tries again until it is back.
                    log.warning("database unavailable, retrying in %gs: %s", DB_RETRY_SECONDS, exc)
                    await asyncio.sleep(DB_RETRY_SECONDS)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), settings.ORCHESTRATOR_SWEEP_SECONDS)
        finally:
            beat.cancel()
            await self._drain()
            await self.backends.aclose()
            if _engine is self:
                _engine = None
            # Pool threads keep persistent connections; a stopped engine leaves none behind.
            await asyncio.to_thread(close_pool)
            log.info("engine %s stopped", self.worker_id)

    async def _sweep_and_check_done(self) -> bool:
        await self.sweep()
        if self.run_id is not None and not self.tasks and await self._run_finished():
            return True
        return self._until_idle and not self.tasks and not await self._work_left()

    async def run_until_idle(self) -> None:
        """Run until no run is left unfinished (benchmarks and tests)."""
        self._until_idle = True
        await self.run()

    async def sweep(self) -> int:
        """Claim what this engine has room for and start the agents; returns how many."""
        await self._finish_stranded_runs()
        free = self.concurrency - len(self.tasks)
        if free <= 0 or self._stopping:
            return 0
        claimed = await db_async(scheduler.claim_steps)(self.worker_id, free, run_id=self.run_id)
        for step_id in claimed:
            self._start(step_id)
        return len(claimed)

    async def _finish_stranded_runs(self) -> None:
        """Write the report of any run whose steps all finished but which has none: its last
        step's worker died between that step's commit and the report."""
        now = time.monotonic()
        if now < self._next_stranded_check:
            return
        self._next_stranded_check = now + settings.ORCHESTRATOR_SWEEP_SECONDS
        for run_id in await db_async(reporting.stranded_runs)(self.run_id):
            if await db_async(reporting.finalize_run)(run_id):
                log.info("run %s: report written by the sweep", run_id)
                await publish(run_id, {"type": "run.changed"})

    def room(self) -> int:
        """A finishing step's own place, plus the free ones, go to the dependants it readies."""
        return 0 if self._stopping else 1 + max(0, self.concurrency - len(self.tasks))

    def finishing(self, step_id: int) -> None:
        self._finishing.add(step_id)

    def adopt(self, claimed: Sequence[StepContext], *, finishing: int) -> None:
        """Start the agents of steps the `finishing` step leased to this engine."""
        if claimed:
            self._handed_on.add(finishing)
        for ctx in claimed:
            self._start(ctx.step_id, ctx)

    def _start(self, step_id: int, ctx: StepContext | None = None) -> None:
        task = asyncio.create_task(execute_step(step_id, self.worker_id, self, ctx))
        self.tasks[step_id] = task
        task.add_done_callback(functools.partial(self._step_done, step_id))

    def _step_done(self, step_id: int, task: asyncio.Task[None]) -> None:
        self.tasks.pop(step_id, None)
        self._finishing.discard(step_id)
        if step_id in self._handed_on:
            # Its place went to its dependants, so the engine's room is what it was: a sweep
            # now would find nothing, and would slow the dependants' first requests down.
            self._handed_on.discard(step_id)
        else:
            self._wake.set()  # room for another claim
        if not task.cancelled() and task.exception() is not None:
            log.error("step %s task failed", step_id, exc_info=task.exception())

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            held = list(self.tasks)
            if not held:
                continue
            try:
                alive = await db_async(scheduler.heartbeat)(self.worker_id, held)
            except Exception:  # the database is away: keep going, leases may lapse
                log.warning("heartbeat failed", exc_info=True)
                continue
            for step_id in set(held) - alive - self._finishing:
                task = self.tasks.get(step_id)
                if task is not None:
                    log.info("step %s cancelled or taken over; stopping its agent", step_id)
                    task.cancel()

    async def _work_left(self) -> bool:
        return await db_async(FlowRun.objects.filter(finished_at__isnull=True).exists)()

    async def _run_finished(self) -> bool:
        assert self.run_id is not None
        return await db_async(_run_is_finished)(self.run_id)

    async def _drain(self) -> None:
        """Stop the agents and hand their steps back so another worker resumes them."""
        tasks = dict(self.tasks)
        for task in tasks.values():
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        for step_id in tasks:
            with contextlib.suppress(Exception):
                await db_async(scheduler.release_step)(step_id, self.worker_id)


def _run_is_finished(run_id: UUID) -> bool:
    """The run has its report (a cancelled run gets its partial one just after the cancel)."""
    return not FlowRun.objects.filter(id=run_id, finished_at__isnull=True).exists()


class DispatchConsumer(AsyncConsumer):
    """Listens on `orchestrator.dispatch`: each message only nudges this process's engine."""

    async def engine_wake(self, message: dict[str, Any]) -> None:
        engine = current_engine()
        if engine is not None:
            engine.wake()


class EngineWorker(Worker):
    """Channels' runworker server, with the engine running beside the channel listeners."""

    # Inside daphne (`manage.py serve`) Twisted owns the signals and stops the engine itself.
    handle_signals = True

    async def handle(self) -> None:
        engine = Engine()
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, engine.stop)
        listeners = asyncio.gather(super().handle())
        try:
            await engine.run()
        finally:
            listeners.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listeners
