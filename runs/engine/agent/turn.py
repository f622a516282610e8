"""One model turn of an agent: streamed into its event sink, counted, its cut-off judged.

Counting covers every try: a turn's tokens are kept (the transcript holds them) or spent
(retried, cut off or cancelled tries too), and llama.cpp's timings add the prompt tokens it
reused from its cache and its decode speed. A turn that stops at the output limit
(finish_reason "length") is honest about it: its answer is marked truncated, and a tool call
it cut off is never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from django.utils import timezone

from runs.engine.agent.backends.base import (
    AgentBackend,
    FirstByte,
    PromptProgress,
    ReasoningDelta,
    Retrying,
    RetryKind,
    TextDelta,
    ToolCall,
    ToolCallStarted,
    Tries,
    TurnResult,
    estimate_tokens,
)
from runs.engine.agent.caps import AgentLimits
from runs.engine.agent.context import StepContext
from runs.engine.agent.counters import STEP_FIELDS, Counters
from runs.engine.agent.events import EventSink, StorageRefused, publish_step_changed
from runs.engine.dbthread import db_async
from runs.engine.queue import scheduler
from runs.labels import prompt_progress_words
from runs.models import EventKind, StepPhase

MOVED = "the turn starts again on another server of the model"
TRANSCRIPT_ARGUMENT_CHARS = 65_536  # longer arguments are not replayed to the model
# How often the row's "reading the prompt" is rewritten (a row update and a redraw each). A
# prompt read faster than this never says so: the first byte follows before anyone could read.
PROGRESS_SECONDS = 0.5


class StepFailed(Exception):
    """The step cannot finish; the message is what the person reads."""


class EndpointLost(Exception):
    """The turn's endpoint went away while another of the model's is up: the turn starts
    again on another (runs.engine.agent.loop.turn_on_slot)."""


class Backoff(Exception):
    """A try failed and the next one is due in `delay` seconds: the turn's request is closed,
    and the agent gives its slot back for the wait and asks again before the next try
    (runs.engine.agent.loop.turn_on_slot), so nobody waits through another's backoff."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"next try in {delay:g} s")
        self.delay = delay


class Reroute(Protocol):
    async def may_reroute(self) -> bool:
        """Another endpoint of the model is up."""
        ...


@dataclass
class TurnState:
    messages: list[dict[str, Any]]
    turns: int
    tool_calls: int
    tokens_in: int  # kept: the turns the transcript holds
    tokens_out: int
    last_tool: str = ""
    seen_calls: dict[str, int] = field(default_factory=dict)
    streaming: bool = False  # this attempt has had its first byte
    # Spent: every try of every turn, cut off, retried or cancelled ones included.
    tokens_spent_in: int = 0
    tokens_spent_out: int = 0
    cached_tokens: int = 0  # server timings of the kept turns
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    timed_turns: int = 0
    truncated: bool = False  # the final answer stopped at the output limit
    # The server sent llama.cpp's timings on a turn of this attempt: it honours tool_choice
    # "none" with the tools still in the prompt, so a last turn keeps the cached prefix.
    llama_cpp: bool = False
    cut_calls: int = 0  # turns in a row whose tool calls were cut off
    # The turn in flight: pieces streamed by the try under way, and whether it has answered.
    inflight_pieces: int = 0
    inflight_answered: bool = False
    limits: AgentLimits = field(default_factory=AgentLimits.from_settings)

    @classmethod
    def resume(cls, ctx: StepContext) -> TurnState:
        """The tally an attempt starts from: its transcript and counters as opened."""
        return cls(messages=list(ctx.transcript), **_tally(ctx.counters))

    def counters(self) -> Counters:
        """The tally as the one counters value checkpoints and counts write."""
        return Counters(turns=self.turns, **{name: getattr(self, name) for name in STEP_FIELDS})

    def drop_inflight(self) -> None:
        """The try under way ended without a result: count what it cost as spent."""
        self.tokens_spent_out += self.inflight_pieces
        if self.inflight_answered:  # the server processed the prompt
            self.tokens_spent_in += estimate_tokens(self.messages)
        self.inflight_pieces, self.inflight_answered = 0, False


def answer_of_turn(sink: EventSink, state: TurnState, result: TurnResult, max_tokens: int) -> str:
    """The final answer of a turn that ran no tools; StepFailed when there is none."""
    answer = result.content.strip()
    cut = result.finish_reason == "length"
    if not answer and result.tool_calls:
        raise StepFailed(
            f"the model kept asking for tools after its budget was spent ({state.turns} turns)"
        )
    if not answer and cut:
        raise StepFailed(
            f"the model's answer was cut off at the output limit ({_limit(max_tokens)}) "
            "before any text; it spent the limit thinking"
        )
    if not answer:
        raise StepFailed("the model returned an empty answer")
    if cut:
        state.truncated = True
        sink.emit(
            EventKind.STATUS,
            state="truncated",
            detail=f"the answer was cut off at the output limit ({_limit(max_tokens)})",
        )
    return answer


def _limit(max_tokens: int) -> str:
    """The output limit, as llama.cpp may also stop at the end of its context."""
    return f"max_tokens {max_tokens}, or the server's context" if max_tokens else "the context"


def refuse_cut_calls(
    sink: EventSink, state: TurnState, calls: tuple[ToolCall, ...], max_tokens: int
) -> None:
    """Answer every call of a turn cut off by the output limit without running any: the last
    one's arguments are incomplete, and a half-written path or pattern must never run."""
    state.cut_calls += 1
    if state.cut_calls >= 2:
        raise StepFailed(
            f"the model's tool call was cut off at the output limit ({_limit(max_tokens)}) "
            f"twice in a row and was never run ({call_names(calls)})"
        )
    sink.emit(
        EventKind.STATUS,
        state="truncated",
        detail=f"tool call cut off at the output limit ({_limit(max_tokens)}); not run",
    )
    for call in calls:
        sink.emit(
            EventKind.TOOL_RESULT,
            id=call.id,
            name=call.name,
            ok=False,
            summary=f"{call.name} cut off; not run",
            content="",
        )
        state.messages.append(
            {
                "role": "tool",
                "tool_call_id": call.id,
                "content": "Your tool call was cut off at the output limit and was not run. "
                "Call it again with shorter arguments, or write your final answer.",
            }
        )


def check_storage(sink: EventSink) -> None:
    if sink.refused:
        raise StorageRefused(sink.refused)


def call_names(calls: tuple[ToolCall, ...]) -> str:
    return ", ".join(dict.fromkeys(call.name for call in calls))[:300]


async def one_turn(
    ctx: StepContext,
    sink: EventSink,
    backend: AgentBackend,
    state: TurnState,
    tools: list[dict[str, Any]] | None,
    max_tokens: int,
    *,
    messages: list[dict[str, Any]] | None = None,
    response_format: dict[str, Any] | None = None,
    tool_choice: str = "auto",
    reroute: Reroute | None = None,
    tries: Tries | None = None,
) -> TurnResult:
    """One turn, on the step's transcript or on `messages` (a restatement's); `response_format`
    asks the server for a schema-shaped answer, and `tool_choice` "none" for an answer without
    tool calls although the tools are sent (each sent only when given). A try that lost its
    endpoint raises EndpointLost instead of retrying there when `reroute` has another. Given
    `tries` (the caller starts the turn again with them), a failed try whose next one must
    wait raises Backoff once it has said so, instead of waiting inside the request."""
    result: TurnResult | None = None
    answered_turn = False
    loop = asyncio.get_running_loop()
    progress_at: float | None = None  # when the prefill was first heard of, or last shown
    started = 0  # tool calls this turn has begun
    options: dict[str, Any] = {}
    if response_format is not None:
        options["response_format"] = response_format
    if tool_choice != "auto":
        options["tool_choice"] = tool_choice
    if tries is not None:
        options["tries"] = tries
    stream = backend.stream_turn(
        messages=messages or state.messages, tools=tools, max_tokens=max_tokens, **options
    )
    try:
        # aclosing: however this turn ends (cancelled between two events included), the
        # request is closed before the caller gives the slot back.
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                match event:
                    case PromptProgress():
                        now = loop.time()
                        if progress_at is None:
                            progress_at = now
                        elif now - progress_at >= PROGRESS_SECONDS:
                            progress_at = now
                            await _reading_prompt(ctx, event)
                    case FirstByte():
                        state.inflight_answered = True
                        if not answered_turn:
                            answered_turn = True
                            await _first_byte(ctx, sink, state)
                    case TextDelta(text=text):
                        state.inflight_pieces += 1
                        sink.emit(EventKind.TEXT, text=text)
                    case ReasoningDelta(text=text):
                        state.inflight_pieces += 1
                        sink.emit(EventKind.REASONING, text=text)
                    case ToolCallStarted(name=name):
                        # Shown at once: the arguments may take a while to stream. Only as
                        # many as are run: 500 calls in a message must not be 500 events.
                        started += 1
                        if started <= state.limits.tool_calls_per_message:
                            name = name[:200]
                            sink.emit(EventKind.STATUS, state="calling", name=name, detail=name)
                    case Retrying():
                        answered_turn, progress_at = False, None
                        if event.lost_endpoint and reroute and await reroute.may_reroute():
                            # Said like any failed try (the pane strikes its text out), but
                            # the next try is now, on another server.
                            moved = dataclasses.replace(event, delay=0.0)
                            await _retrying(ctx, sink, state, moved, detail=MOVED)
                            raise EndpointLost(event.reason)
                        await _retrying(ctx, sink, state, event)
                        if tries is not None and event.delay > 0:
                            raise Backoff(event.delay)
                    case TurnResult():
                        result = event
                        state.inflight_pieces, state.inflight_answered = 0, False
                state.limits.check_events(sink.count)
    except BaseException:
        state.drop_inflight()
        raise
    if result is None:
        raise StepFailed("the model stream ended without a result")
    return result


async def _first_byte(ctx: StepContext, sink: EventSink, state: TurnState) -> None:
    """The turn's first byte: the step is generating (the row says so at every turn)."""
    await db_async(scheduler.mark_streaming)(ctx.step_id, ctx.worker)
    if not state.streaming:
        state.streaming = True
        sink.emit(EventKind.STATUS, state="running")
    await publish_step_changed(ctx.run_id, ctx.step_id)


async def _reading_prompt(ctx: StepContext, progress: PromptProgress) -> None:
    """The server is still reading the prompt: the row says how far (coalesced by the caller:
    one row update per PROGRESS_SECONDS, never one per chunk)."""
    words = prompt_progress_words(progress.processed, progress.total, progress.cache)
    await db_async(scheduler.set_phase)(ctx.step_id, ctx.worker, StepPhase.PREFILL, words)
    await publish_step_changed(ctx.run_id, ctx.step_id)


async def _retrying(
    ctx: StepContext, sink: EventSink, state: TurnState, retry: Retrying, detail: str = ""
) -> None:
    """A try failed: count what it cost, and say what happens next, and when."""
    _count_discarded(state, retry)
    unavailable = retry.kind == RetryKind.UNAVAILABLE
    word = "unavailable" if unavailable else "retrying"
    sink.emit(
        EventKind.STATUS,
        state=word,
        attempt=retry.attempt,
        reason=retry.reason,
        fault=retry.kind,
        delay=round(retry.delay, 2),
        budget_left=round(retry.budget_left, 1),
        # The text this try streamed is not part of the answer: the pane may strike it out.
        discarded=retry.discarded_tokens,
        detail=detail or f"try {retry.attempt} failed; next try in {retry.delay:.0f} s",
    )
    phase = StepPhase.UNAVAILABLE if unavailable else StepPhase.RETRYING
    until = timezone.now() + timedelta(seconds=retry.delay)
    note = f"try {retry.attempt}: {retry.reason}"
    await db_async(scheduler.set_phase)(ctx.step_id, ctx.worker, phase, note, until)
    await publish_step_changed(ctx.run_id, ctx.step_id)


def _count_discarded(state: TurnState, retry: Retrying) -> None:
    state.tokens_spent_out += retry.discarded_tokens
    state.tokens_spent_in += retry.discarded_prompt
    state.inflight_pieces, state.inflight_answered = 0, False


def assistant_message(result: TurnResult) -> dict[str, Any]:
    """The turn as the next prompt sends it back: exactly what the server generated, so the
    template renders the tokens the server's cache already holds (append-only). The reasoning
    goes back as `reasoning_content`: without it Qwen's template renders the turn with no
    `<think>` block and the cache stops where this turn began."""
    message: dict[str, Any] = {"role": "assistant", "content": result.content}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
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
    """Servers reject a transcript whose tool arguments are not JSON; keep the turn replayable.
    Arguments too long to be a real call (the tool refused them) are not replayed either."""
    if len(arguments) > TRANSCRIPT_ARGUMENT_CHARS:
        return "{}"
    try:
        json.loads(arguments or "{}")
    except (ValueError, RecursionError):  # not JSON, huge integers, nested too deeply
        return "{}"
    return arguments or "{}"


def count_turn(sink: EventSink, state: TurnState, result: TurnResult) -> None:
    """Count a finished turn's tokens (kept and spent) and its server timings, and say them."""
    usage = result.usage
    if usage is not None:
        prompt, output = usage.prompt_tokens, usage.completion_tokens
    else:  # no usage from the server: a rough estimate beats a silent zero
        prompt, output = 0, max(1, len(result.content) // 4)
    state.tokens_in += prompt
    state.tokens_out += output
    state.tokens_spent_in += prompt
    state.tokens_spent_out += output
    timings = result.timings
    state.llama_cpp = state.llama_cpp or timings is not None
    cached: int | None = None  # None: the server does not say
    rate: float | None = None
    if timings is not None:
        cached = timings.cache_n
        state.timed_turns += 1
        if timings.prompt_ms > 0:
            state.prefill_tokens += timings.prompt_n
            state.prefill_seconds += timings.prompt_ms / 1000
        if timings.predicted_ms > 0:
            state.decode_tokens += timings.predicted_n
            state.decode_seconds += timings.predicted_ms / 1000
            rate = timings.predicted_per_second or timings.predicted_n * 1000 / timings.predicted_ms
    elif usage is not None:
        cached = usage.cached_tokens
    state.cached_tokens += cached or 0
    detail = f"turn {state.turns}: prompt {prompt}"
    detail += f" ({cached} from cache)" if cached is not None else ""
    detail += f", {output} out" + (f" at {rate:.1f} tok/s" if rate else "")
    sink.emit(
        EventKind.STATUS,
        state="turn",
        turn=state.turns,
        prompt_tokens=prompt,
        cached_tokens=cached,
        output_tokens=output,
        tokens_per_second=round(rate, 2) if rate else None,
        finish_reason=result.finish_reason,
        detail=detail,
    )


def _tally(counters: Counters) -> dict[str, Any]:
    return {"turns": counters.turns, **{name: getattr(counters, name) for name in STEP_FIELDS}}
