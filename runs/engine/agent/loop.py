"""The agent loop: one step attempt, from model slot to final answer, checkpointed per turn."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from django.conf import settings

from flows import structured
from runs.engine.agent.backends.base import (
    AgentBackend,
    BackendError,
    GaveUp,
    StructuredOutputRejected,
    ToolCall,
    Tries,
    TurnResult,
)
from runs.engine.agent.context import Start, StepContext, checkpoint
from runs.engine.agent.events import EventSink, publish_step_changed
from runs.engine.agent.modelconfig import ModelTarget
from runs.engine.agent.servers import ServerDirectory, down_endpoints, gone_endpoints
from runs.engine.agent.turn import (
    Backoff,
    EndpointLost,
    TurnState,
    answer_of_turn,
    assistant_message,
    call_names,
    check_storage,
    count_turn,
    one_turn,
    refuse_cut_calls,
)
from runs.engine.dbthread import db_async
from runs.engine.queue import scheduler
from runs.engine.storable import storable
from runs.engine.target.confinement import open_target
from runs.engine.target.tools import ReadOnlyTools, ToolResult
from runs.engine.target.toolthreads import run_off_loop
from runs.engine.web.tools import web_toolbox
from runs.models import EventKind
from runs.server_slots import host_port

log = logging.getLogger(__name__)
SLOT_POLL_SECONDS = 0.25
UI_RESULT_CHARS = 4000
UI_ARGUMENT_CHARS = 2000  # a tool call's arguments as stored for the pane
REPEAT_LIMIT = 3  # the same tool call this many times means the model is looping
BUDGET_SPENT = "Your tool budget is spent. Write your final answer now from what you have read."


class StepLost(Exception):
    """This worker no longer owns the step (cancelled, or taken over after a stall)."""


class BackendFactory:
    """The backends an engine's steps talk to, one per model, shared by all its steps.

    Building a client (its connection pool and TLS context) costs tens of milliseconds, which a
    dependant would otherwise spend between its dependency finishing and its first request.
    Tests and benchmarks may pass their own factory to the engine.
    """

    def __init__(self) -> None:
        self.servers = ServerDirectory()
        self._backends: dict[tuple[str, str], AgentBackend] = {}

    async def target(self, model_id: str, endpoint_url: str = "") -> ModelTarget:
        """The model at the endpoint its run recorded (else this worker's configuration),
        with its slot count (the server's own when ORCHESTRATOR_SLOTS is not set)."""
        return await self.servers.target(model_id, endpoint_url)

    def slots(self, model_id: str, endpoint_url: str = "") -> dict[str, int]:
        """Each endpoint's slot cap, once `target` has resolved the model (else none)."""
        return self.servers.slots(model_id, endpoint_url)

    def backend(self, model: ModelTarget) -> AgentBackend:
        key = (model.model_id, model.endpoint.base_url)
        if key not in self._backends:
            self._backends[key] = self.build(model)
        return self._backends[key]

    def build(self, model: ModelTarget) -> AgentBackend:
        from runs.engine.agent.backends.openai import OpenAICompatibleBackend

        return OpenAICompatibleBackend(model.endpoint)

    async def aclose(self) -> None:
        await self.servers.aclose()
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.aclose()


class SlotWaiters:
    """An engine's steps waiting in their model's queue, by step id.

    When one of its steps gives a slot back to a step of the same engine, the new holder
    starts its turn at once instead of at its next poll. The database stays the judge: a
    waiter also polls, which is how it learns of slots freed by other workers.
    """

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[str]] = {}

    def expect(self, step_id: int) -> asyncio.Future[str]:
        """Resolves to the endpoint of the slot handed to the step."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[step_id] = future
        return future

    def forget(self, step_id: int) -> None:
        self._waiting.pop(step_id, None)

    def granted(self, step_ids: Iterable[int]) -> None:
        endpoints: dict[int, str] = getattr(step_ids, "endpoints", {})
        for step_id in step_ids:
            future = self._waiting.get(step_id)
            if future is not None and not future.done():
                future.set_result(endpoints.get(step_id, ""))


class StepHost(Protocol):
    """What a step's agent needs from the engine running it."""

    backends: BackendFactory
    waiters: SlotWaiters

    def room(self) -> int:
        """How many dependants the engine can start when one of its steps finishes."""
        ...

    def finishing(self, step_id: int) -> None:
        """The step's agent is recording its outcome and telling the viewers, then stops by
        itself: its lease ends with the outcome, and that must not get it cancelled."""
        ...

    def adopt(self, claimed: Sequence[StepContext], *, finishing: int) -> None:
        """Start the agents of steps the `finishing` step leased to this engine."""
        ...


class ModelSlot:
    """A step attempt's place in its model's queue. It holds a slot for one model turn at a
    time: the slot goes back (to the next in line) while the step's tools run, unless they
    are quick and no other user waits, and while a failed try waits for its next one
    (turn_on_slot); the step asks again, ahead of every step claimed after it, for its next
    turn or try. The slot is on one of the model's endpoints (`endpoint`), which placement
    chose; `backend` talks to it."""

    def __init__(
        self,
        ctx: StepContext,
        sink: EventSink,
        model: ModelTarget,
        waiters: SlotWaiters,
        backends: BackendFactory,
    ) -> None:
        self.ctx = ctx
        self.sink = sink
        self.model = model
        self.waiters = waiters
        self.backends = backends
        self.caps = backends.slots(ctx.model_id, ctx.endpoint_url) or model.caps()
        self.held = ctx.holds_slot  # granted with the claim: the first turn needs not ask
        self.endpoint = ctx.slot_endpoint if ctx.holds_slot else ""
        self.turns = 0

    @property
    def backend(self) -> AgentBackend:
        """The client of the endpoint the slot is on."""
        return self.backends.backend(self.model.at(self.endpoint))

    async def acquire(self) -> None:
        waited = False
        if not self.held:
            # Held from the ask on: a grant may land as the ask is cut short (a cancel while
            # the database grants it, or hands it over), and then it still goes back.
            self.held = True
            try:
                waited = await self._wait()
            except BaseException:
                await asyncio.shield(self.release())
                raise
        self.turns += 1
        if self.turns == 1 or waited:
            self.sink.emit(EventKind.STATUS, state="waiting_first_byte")
        # Every turn: the row now says "waiting for the server's first byte" (the grant).
        await publish_step_changed(self.ctx.run_id, self.ctx.step_id)

    async def release(self, *, tools: str | None = None, failed: bool = False) -> None:
        """Give the slot back; call only once the turn's request is closed. `tools` names
        the calls the step runs next; `failed`: the try on this grant failed (its holding is
        not what a turn costs: scheduler.release_slot)."""
        if not self.held:
            return
        self.held = False
        handed_to = await db_async(scheduler.release_slot)(
            self.ctx.step_id,
            self.ctx.worker,
            self.model.model_id,
            self.caps,
            tools=tools,
            counted=not failed,
        )
        self.waiters.granted(handed_to)
        if tools is not None:
            await publish_step_changed(self.ctx.run_id, self.ctx.step_id)

    async def may_keep(self) -> bool:
        """Whether the step may keep its slot through quick tools: no other owner waits."""
        waiting = await db_async(scheduler.others_waiting)(self.ctx.step_id, self.model.model_id)
        return not waiting

    async def may_reroute(self) -> bool:
        """Another of the model's endpoints is up: a lost endpoint is routed around."""
        others = [url for url in self.caps if url != self.endpoint]
        if not others:
            return False
        down = await db_async(down_endpoints)(others)
        return len(down) < len(others)

    async def gave_up(self, exc: GaveUp, tries: Tries) -> BackendError:
        """Why the turn failed: see none_answered."""
        urls = list(self.caps)
        if len(urls) < 2 or not exc.lost:
            return exc
        return none_answered(exc, urls, tries.unanswered | await db_async(gone_endpoints)(urls))

    async def lost(self, reason: str) -> None:
        """The slot's endpoint went away: marked down first (so the slot given back is not
        handed to anyone there), then the slot goes back."""
        await self.backends.servers.endpoint_lost(self.model, self.endpoint, reason)
        await self.release(failed=True)

    async def _wait(self) -> bool:
        """Returns once the slot is ours; True when we had to queue for it."""
        ctx, position = self.ctx, None
        while True:
            # Expected before asking, so a hand-over that lands while we ask is not missed.
            handed = self.waiters.expect(ctx.step_id)
            try:
                answer = await db_async(scheduler.try_acquire_slot)(
                    ctx.step_id, ctx.worker, self.model.model_id, self.caps
                )
                if answer.granted:
                    self.endpoint = answer.endpoint
                    return position is not None
                if handed.done():
                    self.endpoint = handed.result()
                    return position is not None
                if answer.position < 0:
                    raise StepLost
                if answer.position != position:
                    position = answer.position
                    self.sink.emit(EventKind.STATUS, state="queued", position=position)
                    await publish_step_changed(ctx.run_id, ctx.step_id)
                with contextlib.suppress(TimeoutError):
                    self.endpoint = await asyncio.wait_for(handed, SLOT_POLL_SECONDS)
                    return True
            finally:
                self.waiters.forget(ctx.step_id)


def none_answered(exc: GaveUp, urls: Sequence[str], gone: set[str]) -> BackendError:
    """When none of the model's several servers answered (this turn's tries found them gone,
    or they went away and were not seen back), that is the reason, naming them all: not only
    the last one tried."""
    if not exc.lost or len(urls) < 2 or not gone.issuperset(urls):
        return exc
    names = ", ".join(host_port(url) or url for url in urls)
    return BackendError(
        f"none of the {len(urls)} model servers answered ({names}): {exc.tries}, "
        f"the last one: {exc.reason}"
    )


async def turn_on_slot(
    slot: ModelSlot, run_turn: Callable[..., Awaitable[TurnResult]], state: TurnState
) -> TurnResult:
    """Acquire the slot and run one turn on its endpoint, the slot still held on return. When
    the endpoint goes away and another is up, the same turn starts again on another: no step
    fails because one server died while another serves the model. A failed try's backoff is
    spent without the slot: it goes to the next in line, and the turn asks again (at the end
    of the line, as any turn) before its next try, which then goes to the endpoint of the
    slot it got. Its tries travel along, so the retry budget counts from the turn's first
    fault, its waits for the slot included."""
    tries = Tries()
    while True:
        await slot.acquire()
        try:
            return await run_turn(backend=slot.backend, state=state, tries=tries)
        except EndpointLost as exc:
            await asyncio.shield(slot.lost(str(exc)))
        except Backoff as exc:
            # The request is closed and the row says "retrying" (until when): only the slot
            # changes hands. A cancel during the wait finds it given back already.
            await asyncio.shield(slot.release(failed=True))
            await asyncio.sleep(exc.delay)
        except BaseException as exc:
            # The request is closed by now (the stream was closed on the way out): only then
            # may the slot go to the next in line. A turn cut short is no measure of a turn.
            await asyncio.shield(slot.release(failed=True))
            if isinstance(exc, GaveUp):
                raise await slot.gave_up(exc, tries) from None
            raise


async def converse(
    ctx: StepContext,
    sink: EventSink,
    toolbox: ReadOnlyTools,
    slot: ModelSlot,
    state: TurnState,
) -> str:
    """The attempt's turns until its final answer. A resumed attempt continues its transcript
    (and returns its answer at once if the checkpoint already ends with one: only a resume
    may, never a fresh start after a retry)."""
    if ctx.start is Start.RESUME:
        sink.emit(EventKind.STATUS, state="resumed", turn=ctx.counters.turns)
        if answer := _final_answer(state.messages):
            return answer  # the last attempt died after its answer was checkpointed
    depth = ctx.depth
    while True:
        check_storage(sink)
        final_turn = state.turns + 1 >= depth.max_turns or state.tool_calls >= depth.max_tool_calls
        tools, choice = _offer(toolbox, state, answer_only=final_turn)
        if final_turn:
            _say_budget_spent(state.messages)
        result = await turn_on_slot(
            slot,
            functools.partial(
                one_turn,
                ctx,
                sink,
                tools=tools,
                max_tokens=depth.max_output_tokens,
                tool_choice=choice,
                reroute=slot,
            ),
            state,
        )
        runs_tools = bool(result.tool_calls) and not final_turn
        cut = result.finish_reason == "length"
        if not runs_tools or cut:
            await slot.release()
        state.turns += 1
        count_turn(sink, state, result)
        state.limits.check_events(sink.count)
        # Storable and sendable: a NUL or a lone surrogate from the model goes no further.
        state.messages.append(storable(assistant_message(result)))
        if runs_tools:
            if cut:  # a call cut off mid-arguments is never run; the model may try again
                refuse_cut_calls(sink, state, result.tool_calls, depth.max_output_tokens)
            else:
                state.cut_calls = 0
                await _tools_on_slot(
                    slot,
                    _run_tools(sink, toolbox, state, result.tool_calls, depth.max_tool_calls),
                    call_names(result.tool_calls),
                )
            await db_async(checkpoint)(ctx, state.messages, state.counters())
            continue
        await db_async(checkpoint)(ctx, state.messages, state.counters())
        check_storage(sink)
        answer = answer_of_turn(sink, state, result, depth.max_output_tokens)
        shape = structured.shape_for(ctx.kind, ctx.flow_kind)
        if shape is None or not slot.model.structured_output:
            return answer
        if not getattr(slot.backend, "accepts_response_format", True):
            return answer  # this server refused response_format before: prose it is
        return await _restate(ctx, sink, state, slot, shape, answer, toolbox)


async def _restate(
    ctx: StepContext,
    sink: EventSink,
    state: TurnState,
    slot: ModelSlot,
    shape: structured.Shape,
    prose: str,
    toolbox: ReadOnlyTools,
) -> str:
    """One more turn, without tools, in which the server enforces the step kind's schema; its
    answer is rendered to the Markdown the checker reads. The prose answer stands when the
    server refuses response_format or the structured answer is unusable (cut off, invalid).

    No tool can be called with a schema: on llama.cpp the schema's grammar admits only the
    JSON (docs/architecture.md has the measurements). The tools are still sent, with
    tool_choice "none", where the server is llama.cpp: the prompt keeps its cached prefix.
    """
    asked = [*state.messages, {"role": "user", "content": structured.RESTATE[shape]}]
    tools, choice = _offer(toolbox, state, answer_only=True)
    try:
        result = await turn_on_slot(
            slot,
            functools.partial(
                one_turn,
                ctx,
                sink,
                tools=tools,
                max_tokens=ctx.depth.max_output_tokens,
                messages=asked,
                response_format=structured.response_format(shape),
                tool_choice=choice,
                reroute=slot,
            ),
            state,
        )
    except StructuredOutputRejected as exc:
        sink.emit(EventKind.STATUS, state="structured_refused", reason=str(exc)[:300])
        return prose
    except BackendError as exc:
        # llama.cpp answers 500 when its chat parser rejects what the grammar let through; a
        # restatement that fails must not cost the step its prose answer.
        reason = f"structured answer failed: {exc}; the prose answer stands"
        sink.emit(EventKind.STATUS, state="structured_unusable", reason=reason[:300])
        return prose
    finally:
        await asyncio.shield(slot.release())
    state.turns += 1
    count_turn(sink, state, result)
    try:
        answer = structured.parse(shape, result.content)
    except structured.Unusable as exc:
        cut = " (cut off at the token limit)" if result.finish_reason == "length" else ""
        reason = f"structured answer unusable{cut}: {exc}; the prose answer stands"
        sink.emit(EventKind.STATUS, state="structured_unusable", reason=reason[:300])
        await db_async(checkpoint)(ctx, state.messages, state.counters())
        return prose
    rendered = structured.render(answer)
    sink.emit(EventKind.STATUS, state="structured", shape=shape.value)
    # Checkpointed as the answer, so a resumed attempt returns it rather than the JSON.
    state.messages = [*asked, {"role": "assistant", "content": rendered}]
    await db_async(checkpoint)(ctx, state.messages, state.counters())
    return rendered


async def _tools_on_slot(slot: ModelSlot, tools: Awaitable[None], names: str) -> None:
    """Run a turn's tool calls. Calls that finish within ORCHESTRATOR_KEEP_SLOT_SECONDS keep
    the slot for the agent's next turn while no other owner's step waits for one: the
    server's cache then still holds exactly this agent's conversation and the next prompt
    only adds the tool results (with one slot and several agents taking turns, the next
    agent's prompt would otherwise evict it, and the server re-reads this agent's turns when
    it comes back). Longer calls, or another user waiting, give the slot back to the next in
    line while they run."""
    running = asyncio.ensure_future(tools)
    keep = settings.ORCHESTRATOR_KEEP_SLOT_SECONDS
    try:
        if keep > 0 and slot.held and await slot.may_keep():
            await asyncio.wait_for(asyncio.shield(running), keep)
            return
    except TimeoutError:
        pass  # slow tools: the slot goes to the next in line meanwhile
    except BaseException:
        running.cancel()
        raise
    await slot.release(tools=names)
    await running


async def _run_tools(
    sink: EventSink,
    toolbox: ReadOnlyTools,
    state: TurnState,
    calls: tuple[ToolCall, ...],
    budget: int,
) -> None:
    cap = state.limits.tool_calls_per_message
    for call in calls[:cap]:
        signature = f"{call.name}:{call.arguments}"
        state.seen_calls[signature] = state.seen_calls.get(signature, 0) + 1
        sink.emit(
            EventKind.TOOL_CALL,
            id=call.id,
            name=call.name[:200],
            arguments=call.arguments[:UI_ARGUMENT_CHARS],
        )
        if state.tool_calls >= budget:
            content, ok, summary = BUDGET_SPENT, False, "tool budget spent"
        elif state.seen_calls[signature] >= REPEAT_LIMIT:
            content, ok, summary = (
                "You made this exact call before and got its result. " + BUDGET_SPENT,
                False,
                f"{call.name[:60]} repeated; refused",
            )
            state.tool_calls = budget  # force the next turn to be the final one
        else:
            state.tool_calls += 1
            outcome = await run_off_loop(_call_tool, toolbox, call)
            content, ok, summary = outcome.content, outcome.ok, outcome.summary
            state.last_tool = summary[:200]
        sink.emit(
            EventKind.TOOL_RESULT,
            id=call.id,
            name=call.name[:200],
            ok=ok,
            summary=summary,
            content=content[:UI_RESULT_CHARS],
        )
        state.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
        state.limits.check_events(sink.count)
    if len(calls) > cap:
        # One event for all of them: 500 calls in a message must not become 1,000 events.
        refused = len(calls) - cap
        reason = f"{refused} of {len(calls)} tool calls in one message refused: at most {cap}"
        sink.emit(EventKind.STATUS, state="tool_calls_capped", reason=reason)
        for call in calls[cap:]:
            message = f"Not run: at most {cap} tool calls are run per message ({reason})."
            state.messages.append({"role": "tool", "tool_call_id": call.id, "content": message})


def open_toolbox(ctx: StepContext) -> ReadOnlyTools:
    """Checked at every attempt: a target moved or swapped since the launch fails the step
    (TargetChanged). Off the event loop: it touches the disk and may ask git."""
    confinement = open_target(ctx)
    if ctx.web:
        return web_toolbox(confinement, run_id=ctx.run_id, step_key=ctx.key, focus=ctx.focus)
    return ReadOnlyTools(confinement.root, confinement=confinement)


def _call_tool(toolbox: ReadOnlyTools, call: ToolCall) -> ToolResult:
    """On a tool thread: the target must still be the launch's, then the tool runs."""
    toolbox.confine.verify()  # TargetChanged fails the step
    return toolbox.call(call.name, call.arguments)


def _offer(
    toolbox: ReadOnlyTools, state: TurnState, *, answer_only: bool
) -> tuple[list[dict[str, Any]] | None, str]:
    """The tools a turn sends and its tool_choice. A turn that must answer without calls (the
    last one, a restatement) still sends the same tools, with tool_choice "none", to a server
    that showed it is llama.cpp (its timings): the template renders the tools before the
    conversation, so dropping them would make the server evaluate the whole prompt again.
    Elsewhere (a server that may not honour "none") it sends none."""
    if not answer_only:
        return _tool_specs(toolbox), "auto"
    if state.llama_cpp:
        return _tool_specs(toolbox), "none"
    return None, "auto"


def _say_budget_spent(messages: list[dict[str, Any]]) -> None:
    """Tell the model its next turn is its last: at the end of the tool result it has not yet
    read (never sent, so the transcript stays append-only), not in a user message of its own,
    which Qwen's templates take as a new question and then render every earlier turn without
    its reasoning, so the server's cache would stop at the first of them."""
    last = messages[-1] if messages else {}
    if last.get("role") != "tool":
        return  # the first turn: nothing was asked yet
    content = str(last.get("content") or "")
    if not content.endswith(BUDGET_SPENT):  # a resumed attempt may have said it already
        last["content"] = f"{content}\n\n{BUDGET_SPENT}" if content else BUDGET_SPENT


def _final_answer(messages: list[dict[str, Any]]) -> str:
    """The answer a transcript already ends with, if its last turn asked for no tools."""
    last = messages[-1] if messages else {}
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return ""
    return str(last.get("content") or "").strip()


_SPECS: dict[tuple[str, ...], list[dict[str, Any]]] = {}


def _tool_specs(toolbox: ReadOnlyTools) -> list[dict[str, Any]]:
    """The tools' JSON schemas, built once per set of tools: building them takes milliseconds,
    and a dependant's first turn would pay them between its dependency finishing and its
    request."""
    available = tuple(toolbox.available())
    if available not in _SPECS:
        _SPECS[available] = toolbox.specs()
    return _SPECS[available]
