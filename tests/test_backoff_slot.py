"""A failed try's backoff is spent without the model slot (runs.engine.agent.loop.turn_on_slot):
the slot goes to the next in line, and the agent asks again before its next try, which goes
to the endpoint of the slot it gets. The step still says "retrying" meanwhile, the retry
budget still counts from the first fault, and a cancel during the wait leaves no slot held.
Orders and counts, not timings: the slot mechanism decides who goes when."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from runs import timeline
from runs.demo.faults import fault_plan
from runs.demo.scripts import marker
from runs.demo.server import ScriptedModelServer
from runs.engine.agent.backends.base import TurnResult
from runs.engine.agent.context import StepContext, load_context
from runs.engine.agent.events import EventSink
from runs.engine.agent.loop import BackendFactory, ModelSlot, SlotWaiters, turn_on_slot
from runs.engine.agent.turn import TurnState, one_turn
from runs.engine.dbthread import close_pool, db_async
from runs.engine.queue import scheduler
from runs.labels import step_state
from runs.models import AgentEvent, FlowRun, FlowStep, RunStatus, StepPhase, StepStatus
from runs.services import cancel_run, launch_run

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "demo/scripted"


def claim(run: FlowRun, *keys: str) -> list[StepContext]:
    """Lease the run's specialists to worker "w" and open the named ones' attempts."""
    scheduler.claim_steps("w", 10, run_id=run.id)
    contexts = []
    for key in keys:
        ctx = load_context(FlowStep.objects.get(run=run, key=key).id, "w")
        assert ctx is not None
        contexts.append(ctx)
    return contexts


class Agent:
    """One step's turn as the agent loop runs it: its slot, its sink, its tally."""

    def __init__(self, ctx: StepContext, slot: ModelSlot, sink: EventSink) -> None:
        self.ctx, self.slot, self.sink = ctx, slot, sink
        self.state = TurnState.resume(ctx)

    @classmethod
    async def open(cls, ctx: StepContext, factory: BackendFactory, waiters: SlotWaiters) -> Agent:
        model = await factory.target(ctx.model_id, ctx.endpoint_url)
        sink = EventSink(ctx.run_id, ctx.step_id, ctx.session_id)
        return cls(ctx, ModelSlot(ctx, sink, model, waiters, factory), sink)

    async def turn(self) -> TurnResult:
        """One turn on the slot (asked for first unless held), the slot held on return."""
        run_turn = functools.partial(
            one_turn, self.ctx, self.sink, tools=None, max_tokens=64, reroute=self.slot
        )
        return await turn_on_slot(self.slot, run_turn, self.state)


def watch_slots(monkeypatch: pytest.MonkeyPatch, on_release: Callable[..., None] | None = None):
    """Every slot decision of the engine, each followed by a count of the slots held then."""
    held: list[int] = []
    acquire, release = scheduler.try_acquire_slot, scheduler.release_slot

    def count() -> None:
        held.append(FlowStep.objects.filter(holds_slot=True).count())

    def acquiring(*args: Any, **kwargs: Any) -> Any:
        answer = acquire(*args, **kwargs)
        count()
        return answer

    def releasing(step_id: int, *args: Any, **kwargs: Any) -> Any:
        handed = release(step_id, *args, **kwargs)
        count()
        if on_release is not None:
            on_release(step_id, handed)
        return handed

    monkeypatch.setattr(scheduler, "try_acquire_slot", acquiring)
    monkeypatch.setattr(scheduler, "release_slot", releasing)
    return held


def roles(server: ScriptedModelServer) -> list[str | None]:
    return [marker(body, "Agent role") for body in server.requests]


def test_a_waiting_agent_takes_the_slot_and_finishes_its_turn_while_the_holder_backs_off(
    settings: Any,
    scripted_model: ScriptedModelServer,
    alice: Any,
    target_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """One slot. Security holds it and meets a 503 (Retry-After 1 s) while Correctness waits
    in line: the slot goes to Correctness, whose whole turn ends before Security's next try
    starts; then Security's turn succeeds. Meanwhile Security's row says "server unavailable"
    and holds nothing; never more than one slot held, nor one request open on the server."""
    settings.ORCHESTRATOR_SLOTS = 1
    scripted_model.faults = fault_plan("http_503:role=security:times=1:seconds=1")
    scripted_model.open_requests.reset(cap=1)
    order: list[str] = []
    scripted_model.responder = lambda body: order.append(f"{marker(body, 'Agent role')} asks")
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    holder, waiter = claim(run, "security", "correctness")
    at_hand_over: list[tuple[bool, str, str]] = []

    def on_release(step_id: int, handed: list[int]) -> None:
        if step_id == holder.step_id and waiter.step_id in handed:
            row = FlowStep.objects.get(id=holder.step_id)
            at_hand_over.append((row.holds_slot, row.phase, step_state(row).label))

    held = watch_slots(monkeypatch, on_release)

    async def go() -> TurnResult:
        factory, waiters = BackendFactory(), SlotWaiters()
        try:
            first = await Agent.open(holder, factory, waiters)
            second = await Agent.open(waiter, factory, waiters)
            await first.slot.acquire()  # Security holds the only slot

            async def waiting_turn() -> None:
                await second.turn()
                order.append("correctness done")
                await second.slot.release()

            waiting = asyncio.create_task(waiting_turn())
            while not await db_async(_waits)(waiter.step_id):
                await asyncio.sleep(0.02)
            result = await first.turn()
            order.append("security done")
            await first.slot.release()
            await waiting
            for agent in (first, second):
                await agent.sink.flush()
            return result
        finally:
            await factory.aclose()
            await asyncio.to_thread(close_pool)

    result = asyncio.run(go())
    print(f"requests by role: {roles(scripted_model)}; order: {order}; held: {held}")
    assert roles(scripted_model) == ["security", "correctness", "security"]
    assert order == ["correctness asks", "correctness done", "security asks", "security done"]
    assert result.content or result.tool_calls, "the retried turn has its answer"
    assert at_hand_over == [(False, StepPhase.UNAVAILABLE, "server unavailable")]
    assert max(held) == 1 and held[-1] == 0
    assert scripted_model.open_requests.over_cap == []
    said = AgentEvent.objects.filter(step_id=holder.step_id, kind="status")
    [unavailable] = said.filter(payload__state="unavailable")
    assert (unavailable.payload["attempt"], unavailable.payload["delay"]) == (1, 1.0)


def test_the_timeline_draws_a_slot_wait_after_a_backoff_as_a_slot_wait(
    settings: Any, scripted_model: ScriptedModelServer, alice: Any, target_dir: Path
):
    """One slot. Security generates a turn; its next turn meets a 503 (Retry-After 1 s), and
    the slot goes to Correctness, which keeps it until Security has come back and joined
    the line. Security's lane reads: generating, retrying (the backoff), waiting for a model
    slot, waiting for the first byte (from the grant on), generating; never the slot wait as
    a wait for the first byte."""
    settings.ORCHESTRATOR_SLOTS = 1
    # The first text comes a little after each grant, so the two are never one batch.
    scripted_model.first_byte_delay = 0.2
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    holder, waiter = claim(run, "security", "correctness")

    async def go() -> None:
        factory, waiters = BackendFactory(), SlotWaiters()
        try:
            first = await Agent.open(holder, factory, waiters)
            second = await Agent.open(waiter, factory, waiters)
            for agent in (first, second):
                agent.sink.start()  # written as they go, as the engine does: the marks' times
            await first.turn()  # generates, and keeps its slot
            scripted_model.faults = fault_plan("http_503:role=security:times=1:seconds=1")

            async def waiting_turn() -> None:
                await second.turn()
                # Held until Security, back from its backoff, waits for it.
                while not await db_async(_waits)(holder.step_id):
                    await asyncio.sleep(0.02)
                await second.slot.release()

            waiting = asyncio.create_task(waiting_turn())
            while not await db_async(_waits)(waiter.step_id):
                await asyncio.sleep(0.02)
            await first.turn()
            await first.slot.release()
            await waiting
            for agent in (first, second):
                await agent.sink.close()
        finally:
            await factory.aclose()
            await asyncio.to_thread(close_pool)

    asyncio.run(go())
    said = [e.payload.get("state") for e in AgentEvent.objects.filter(step_id=holder.step_id)]
    lane = next(lane for lane in timeline.build(run).lanes if lane.step.key == "security")
    drawn = [segment.kind for segment in lane.segments]
    print(f"security said {said}; its lane: {drawn}")
    assert drawn[drawn.index("model") :] == ["model", "retrying", "queued", "first-byte", "model"]


def _waits(step_id: int) -> bool:
    return FlowStep.objects.filter(id=step_id, wants_slot=True, holds_slot=False).exists()


def _holds(step_id: int) -> bool:
    return FlowStep.objects.filter(id=step_id, holds_slot=True).exists()


def test_the_next_try_goes_to_the_endpoint_of_the_slot_it_gets(
    settings: Any, alice: Any, target_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two servers, a slot each. Security's turn meets a 503 on the first; while it backs off,
    another agent of its run takes that slot (its run's prompts are there). Its next try goes
    where its new slot is, the second server, through that server's own client."""
    with (
        ScriptedModelServer(total_slots=1) as first_server,
        ScriptedModelServer(total_slots=1) as second_server,
    ):
        settings.ORCHESTRATOR_MODEL = MODEL
        settings.ORCHESTRATOR_BASE_URL = f"{first_server.url},{second_server.url}"
        settings.ORCHESTRATOR_SLOTS = 1
        first_server.faults = fault_plan("http_503:role=security:times=1")
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        mover, other = claim(run, "security", "correctness")
        caps = {first_server.url: 1, second_server.url: 1}
        taken: list[scheduler.SlotAnswer] = []

        def on_release(step_id: int, handed: list[int]) -> None:
            if step_id == mover.step_id and not taken:
                taken.append(scheduler.try_acquire_slot(other.step_id, "w", MODEL, caps))

        held = watch_slots(monkeypatch, on_release)

        async def go() -> TurnResult:
            factory = BackendFactory()
            try:
                agent = await Agent.open(mover, factory, SlotWaiters())
                result = await agent.turn()
                await agent.slot.release()
                return result
            finally:
                await factory.aclose()
                await asyncio.to_thread(close_pool)

        result = asyncio.run(go())
    assert [(a.granted, a.endpoint) for a in taken] == [(True, first_server.url)]
    assert roles(first_server) == ["security"], "only the try that met the 503"
    assert roles(second_server) == ["security"], "the next try, on the slot it got"
    assert result.content or result.tool_calls
    assert FlowStep.objects.get(id=mover.step_id).endpoint == second_server.url
    assert max(held) == 2, "one slot on each server at most"


def test_cancelling_a_run_while_an_agent_backs_off_leaves_no_slot_held(
    run_to_end, settings: Any, scripted_model: ScriptedModelServer, target_dir: Path
):
    """Every request of Security meets a 503 asking for 30 s. Once it waits without its slot,
    the run is cancelled: the engine stops at once, every step is settled, no slot is held,
    and the server never had more open requests than the one slot."""
    settings.ORCHESTRATOR_SLOTS = 1
    scripted_model.faults = fault_plan("http_503:role=security:seconds=30")
    scripted_model.open_requests.reset(cap=1)
    run = launch_run(flow="code-review", target=str(target_dir))
    seen: dict[str, Any] = {}

    def cancel_during_the_backoff() -> None:
        deadline = time.monotonic() + 60
        security = FlowStep.objects.filter(run=run, key="security")
        while time.monotonic() < deadline:
            row = security.first()
            if row and row.phase == StepPhase.UNAVAILABLE and not row.holds_slot:
                seen["label"] = step_state(row).label
                break
            time.sleep(0.02)
        seen["at"] = time.monotonic()
        cancel_run(run.id)
        connection.close()

    canceller = threading.Thread(target=cancel_during_the_backoff)
    canceller.start()
    run = run_to_end(run, timeout=60)
    canceller.join()
    print(f"engine stopped {time.monotonic() - seen['at']:.2f}s after the cancel")
    assert seen.get("label") == "server unavailable", "cancelled during the backoff"
    assert run.status == RunStatus.CANCELLED
    assert not FlowStep.objects.filter(holds_slot=True).exists()
    assert not run.steps.filter(status__in=["queued", "running", "ready"]).exists()
    assert run.steps.get(key="security").status == StepStatus.CANCELLED
    assert scripted_model.open_requests.over_cap == []


def test_a_grant_that_lands_as_the_ask_is_cancelled_goes_back(
    settings: Any,
    scripted_model: ScriptedModelServer,
    target_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """The database grants the slot while the agent asking is cancelled (a cancel during its
    wait for the slot again, after a backoff): the slot does not stay held."""
    settings.ORCHESTRATOR_SLOTS = 1
    run = launch_run(flow="code-review", target=str(target_dir))
    [ctx] = claim(run, "security")
    granted, go_on = threading.Event(), threading.Event()
    acquire = scheduler.try_acquire_slot

    def granting_slowly(*args: Any) -> Any:
        answer = acquire(*args)
        granted.set()
        go_on.wait(10)
        return answer

    monkeypatch.setattr(scheduler, "try_acquire_slot", granting_slowly)

    async def go() -> None:
        factory = BackendFactory()
        try:
            agent = await Agent.open(ctx, factory, SlotWaiters())
            asking = asyncio.create_task(agent.slot.acquire())
            await asyncio.to_thread(granted.wait, 10)
            assert await db_async(_holds)(ctx.step_id), "granted, the answer on its way"
            asking.cancel()
            go_on.set()
            with pytest.raises(asyncio.CancelledError):
                await asking
            assert not agent.slot.held
        finally:
            go_on.set()
            await factory.aclose()
            await asyncio.to_thread(close_pool)

    asyncio.run(go())
    assert not FlowStep.objects.filter(holds_slot=True).exists()
