"""The agent loop: one step attempt, from model slot to final answer, checkpointed per turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runs import scheduler
from runs.backends.base import (
    AgentBackend,
    BackendError,
    FirstByte,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCall,
    TurnResult,
    Usage,
)
from runs.context import StepContext, checkpoint, load_context
from runs.dbthread import db_async
from runs.events import EventSink, publish_step_changed
from runs.modelconfig import ModelTarget, resolve_model
from runs.models import EventKind
from runs.tools import Sandbox

log = logging.getLogger(__name__)
SLOT_POLL_SECONDS = 0.25
UI_RESULT_CHARS = 4000
REPEAT_LIMIT = 3  # the same tool call this many times means the model is looping
BUDGET_SPENT = "Your tool budget is spent. Write your final answer now from what you have read."


class StepFailed(Exception):
    """The step cannot finish; the message is what the person reads."""


class StepLost(Exception):
    """This worker no longer owns the step (cancelled, or taken over after a stall)."""


@dataclass
class TurnState:
    messages: list[dict[str, Any]]
    turns: int
    tool_calls: int
    tokens_in: int
    tokens_out: int
    last_tool: str = ""
    seen_calls: dict[str, int] = field(default_factory=dict)
    streaming: bool = False


class BackendFactory:
    """Makes the backend a step talks to; tests and benchmarks may pass their own."""

    def __call__(self, model: ModelTarget) -> AgentBackend:
        from runs.backends.openai import OpenAICompatibleBackend

        return OpenAICompatibleBackend(model.endpoint)


async def execute_step(
    step_id: int,
    worker: str,
    *,
    backend_factory: BackendFactory | None = None,
    slot_freed: asyncio.Event | None = None,
    on_finished: Callable[[], None] | None = None,
) -> None:
    """Run one claimed step to its end. Cancellation (lost lease, cancelled run) propagates.

    `on_finished` runs as soon as the outcome is committed, before the clean-up, so the engine
    can start the dependants without waiting for this task to wind down.
    """
    ctx = await db_async(load_context)(step_id, worker)
    if ctx is None:
        return
    sink = EventSink(ctx.run_id, ctx.step_id, ctx.session_id, next_seq=1)
    sink.start()
    backend: AgentBackend | None = None
    try:
        model = await asyncio.to_thread(resolve_model, ctx.model_id)
        backend = (backend_factory or BackendFactory())(model)
        sandbox = Sandbox(ctx.target)
        await _wait_for_slot(ctx, sink, model, slot_freed)
        output = await _converse(ctx, sink, backend, sandbox)
    except asyncio.CancelledError:
        sink.emit(EventKind.STATUS, state="stopped", detail="cancelled or lease lost")
        raise
    except StepLost:
        sink.emit(EventKind.STATUS, state="stopped", detail="cancelled or lease lost")
    except (BackendError, StepFailed) as exc:
        await _finish(ctx, sink, on_finished, succeeded=False, error=str(exc))
    except Exception as exc:  # a bug must fail this step, not wedge the worker
        log.exception("step %s (%s) crashed", ctx.key, ctx.step_id)
        await _finish(ctx, sink, on_finished, succeeded=False, error=f"internal error: {exc!r}")
    else:
        await _finish(ctx, sink, on_finished, succeeded=True, output=output)
    finally:
        await asyncio.shield(_close(sink, backend))


async def _close(sink: EventSink, backend: AgentBackend | None) -> None:
    await sink.close()
    if backend is not None:
        await backend.aclose()


async def _finish(
    ctx: StepContext,
    sink: EventSink,
    on_finished: Callable[[], None] | None,
    *,
    succeeded: bool,
    output: str = "",
    error: str = "",
) -> None:
    if error:
        sink.emit(EventKind.ERROR, message=error)
    sink.emit(EventKind.STATUS, state="succeeded" if succeeded else "failed")
    await sink.flush()
    await db_async(scheduler.finish_step)(
        ctx.step_id, ctx.worker, succeeded=succeeded, output=output, error=error
    )
    if on_finished is not None:
        on_finished()
    await publish_step_changed(ctx.run_id, ctx.step_id)


async def _wait_for_slot(
    ctx: StepContext, sink: EventSink, model: ModelTarget, slot_freed: asyncio.Event | None
) -> None:
    position = None
    while True:
        answer = await db_async(scheduler.try_acquire_slot)(
            ctx.step_id, ctx.worker, model.model_id, model.slots
        )
        if answer.granted:
            sink.emit(EventKind.STATUS, state="waiting_first_byte")
            await publish_step_changed(ctx.run_id, ctx.step_id)
            return
        if answer.position < 0:
            raise StepLost
        if answer.position != position:
            position = answer.position
            sink.emit(EventKind.STATUS, state="queued", position=position)
            await publish_step_changed(ctx.run_id, ctx.step_id)
        if slot_freed is not None:
            slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot_freed.wait(), SLOT_POLL_SECONDS)
        else:
            await asyncio.sleep(SLOT_POLL_SECONDS)


async def _converse(
    ctx: StepContext, sink: EventSink, backend: AgentBackend, sandbox: Sandbox
) -> str:
    state = TurnState(
        messages=list(ctx.transcript),
        turns=ctx.turns_completed,
        tool_calls=ctx.tool_calls,
        tokens_in=ctx.tokens_in,
        tokens_out=ctx.tokens_out,
        last_tool=ctx.last_tool,
    )
    if ctx.turns_completed:
        sink.emit(EventKind.STATUS, state="resumed", turn=ctx.turns_completed)
    depth = ctx.depth
    while True:
        final_turn = state.turns + 1 >= depth.max_turns or state.tool_calls >= depth.max_tool_calls
        tools = None if final_turn else sandbox.specs()
        if final_turn and state.turns > 0 and state.messages[-1].get("role") == "tool":
            state.messages.append({"role": "user", "content": BUDGET_SPENT})
        result = await _one_turn(ctx, sink, backend, state, tools, depth.max_output_tokens)
        state.turns += 1
        _count_usage(state, result)
        state.messages.append(_assistant_message(result))
        if result.tool_calls and not final_turn:
            await _run_tools(sink, sandbox, state, result.tool_calls, depth.max_tool_calls)
            await db_async(checkpoint)(ctx, state.messages, _totals(state))
            continue
        await db_async(checkpoint)(ctx, state.messages, _totals(state))
        answer = result.content.strip()
        if not answer and result.tool_calls:
            raise StepFailed(
                f"the model kept asking for tools after its budget was spent ({state.turns} turns)"
            )
        if not answer:
            raise StepFailed("the model returned an empty answer")
        return answer


async def _one_turn(
    ctx: StepContext,
    sink: EventSink,
    backend: AgentBackend,
    state: TurnState,
    tools: list[dict[str, Any]] | None,
    max_tokens: int,
) -> TurnResult:
    result: TurnResult | None = None
    async for event in backend.stream_turn(
        messages=state.messages, tools=tools, max_tokens=max_tokens
    ):
        match event:
            case FirstByte():
                if not state.streaming:
                    state.streaming = True
                    await db_async(scheduler.mark_streaming)(ctx.step_id, ctx.worker)
                    sink.emit(EventKind.STATUS, state="running")
                    await publish_step_changed(ctx.run_id, ctx.step_id)
            case TextDelta(text=text):
                sink.emit(EventKind.TEXT, text=text)
            case ReasoningDelta(text=text):
                sink.emit(EventKind.REASONING, text=text)
            case Retrying(attempt=attempt, reason=reason, delay=delay):
                sink.emit(
                    EventKind.STATUS, state="retrying", attempt=attempt, reason=reason, delay=delay
                )
            case TurnResult():
                result = event
    if result is None:
        raise StepFailed("the model stream ended without a result")
    return result


async def _run_tools(
    sink: EventSink,
    sandbox: Sandbox,
    state: TurnState,
    calls: tuple[ToolCall, ...],
    budget: int,
) -> None:
    for call in calls:
        signature = f"{call.name}:{call.arguments}"
        state.seen_calls[signature] = state.seen_calls.get(signature, 0) + 1
        sink.emit(EventKind.TOOL_CALL, id=call.id, name=call.name, arguments=call.arguments)
        if state.tool_calls >= budget:
            content, ok, summary = BUDGET_SPENT, False, "tool budget spent"
        elif state.seen_calls[signature] >= REPEAT_LIMIT:
            content, ok, summary = (
                "You made this exact call before and got its result. " + BUDGET_SPENT,
                False,
                f"{call.name} repeated; refused",
            )
            state.tool_calls = budget  # force the next turn to be the final one
        else:
            state.tool_calls += 1
            outcome = await asyncio.to_thread(sandbox.call, call.name, call.arguments)
            content, ok, summary = outcome.content, outcome.ok, outcome.summary
            state.last_tool = summary[:200]
        sink.emit(
            EventKind.TOOL_RESULT,
            id=call.id,
            name=call.name,
            ok=ok,
            summary=summary,
            content=content[:UI_RESULT_CHARS],
        )
        state.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})


def _assistant_message(result: TurnResult) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _valid_json(call.arguments)},
            }
            for call in result.tool_calls
        ]
    return message


def _valid_json(arguments: str) -> str:
    """Servers reject a transcript whose tool arguments are not JSON; keep the turn replayable."""
    try:
        json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return "{}"
    return arguments or "{}"


def _count_usage(state: TurnState, result: TurnResult) -> None:
    usage: Usage | None = result.usage
    if usage is not None:
        state.tokens_in += usage.prompt_tokens
        state.tokens_out += usage.completion_tokens
    else:  # no usage from the server: a rough estimate beats a silent zero
        state.tokens_out += max(1, len(result.content) // 4)


def _totals(state: TurnState) -> dict[str, Any]:
    return {
        "turns": state.turns,
        "tool_calls": state.tool_calls,
        "tokens_in": state.tokens_in,
        "tokens_out": state.tokens_out,
        "last_tool": state.last_tool,
    }
