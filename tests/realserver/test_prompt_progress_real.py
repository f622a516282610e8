"""llama.cpp's prompt progress (`return_progress`), read by the backend and shown on the step.

With a small batch (`-b 64 -ub 64`) the server sends one `prompt_progress` chunk per batch it
evaluates, each with an empty assistant delta: a long prompt gives many, rising to 100%
before the first byte; the same prompt again starts at its cached prefix.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.llamacpp.server import LlamaServer
from runs.engine.agent import turn as turn_module
from runs.engine.agent.backends.base import EndpointConfig, FirstByte, PromptProgress, TurnResult
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from runs.engine.agent.context import load_context
from runs.engine.agent.events import EventSink
from runs.engine.agent.turn import TurnState, count_turn, one_turn
from runs.engine.dbthread import close_pool
from runs.engine.queue import scheduler
from runs.models import FlowStep, StepPhase
from runs.services import launch_run
from tests.realserver.facts import Observations

BATCH = 64
LONG = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 150}]


@pytest.fixture(scope="module")
def small_batches(start_server: Callable[..., LlamaServer]) -> Iterator[LlamaServer]:
    server = start_server(
        slots=1, context=8192, extra_args=("--batch-size", str(BATCH), "--ubatch-size", str(BATCH))
    )
    yield server
    server.stop()


def turn(server: LlamaServer) -> list[Any]:
    async def go() -> list[Any]:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.base_url, model="m"))
        try:
            stream = backend.stream_turn(messages=LONG, tools=None, max_tokens=4)
            return [event async for event in stream]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_a_long_prompt_read_in_small_batches_streams_rising_progress_before_the_first_byte(
    small_batches: LlamaServer, observed: Observations
) -> None:
    events = turn(small_batches)
    first_byte = next(i for i, e in enumerate(events) if isinstance(e, FirstByte))
    progress = [e for e in events if isinstance(e, PromptProgress)]
    assert progress == events[:first_byte], "every progress event comes before the first byte"
    total = progress[0].total
    assert len(progress) >= total // BATCH  # one per batch (and the 0% one)
    processed = [e.processed for e in progress]
    assert processed == sorted(set(processed)) and processed[-1] == total
    # The 0% chunk: nothing read yet but what the slot kept (at most a token or so here).
    assert processed[0] == progress[0].cache < BATCH
    result = events[-1]
    assert isinstance(result, TurnResult) and result.usage is not None
    assert result.usage.prompt_tokens == total
    assert result.timings is not None and result.timings.prompt_ms > 0
    again = [e for e in turn(small_batches) if isinstance(e, PromptProgress)]
    assert again[0].cache == again[0].processed >= total - BATCH  # the cached prefix is in
    observed.note(
        "prompt progress",
        f"-b {BATCH}: {len(progress)} prompt_progress chunks for {total} prompt tokens "
        f"(processed {processed[:3]}...{processed[-1]}), prefill "
        f"{result.timings.prompt_n / (result.timings.prompt_ms / 1000):.0f} tok/s; the same "
        f"prompt again: {len(again)} chunks from cache {again[0].cache}",
    )


@pytest.mark.django_db(transaction=True)
def test_the_steps_phase_shows_the_prompts_progress_as_the_server_reads_it(
    small_batches: LlamaServer,
    target_dir: Path,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    observed: Observations,
) -> None:
    """The tiny model reads 1,600 tokens in a few dozen milliseconds, so the row's coalescing
    (PROGRESS_SECONDS) is set to 0 here: every chunk after the first rewrites the step's
    phase, and each write, read back from the database, says a larger share."""
    settings.ORCHESTRATOR_MODEL = "llama-cpp/tiny-qwen3"
    settings.ORCHESTRATOR_BASE_URL = small_batches.base_url
    settings.ORCHESTRATOR_SLOTS = 0
    monkeypatch.setattr(turn_module, "PROGRESS_SECONDS", 0.0)
    shown: list[tuple[str, str]] = []
    set_phase = scheduler.set_phase

    def reading_back(step_id: int, worker: str, phase: str, note: str = "", until: Any = None):
        set_phase(step_id, worker, phase, note, until)
        row = FlowStep.objects.get(id=step_id)
        shown.append((row.phase, row.phase_note))

    monkeypatch.setattr(scheduler, "set_phase", reading_back)
    run = launch_run(flow="code-review", target=str(target_dir), fast=True)
    [step_id, *_] = scheduler.claim_steps("progress-test", 2, run_id=run.id)
    ctx = load_context(step_id, "progress-test")
    assert ctx is not None

    async def go() -> TurnState:
        backend = OpenAICompatibleBackend(
            EndpointConfig(base_url=small_batches.base_url, model="m")
        )
        sink = EventSink(ctx.run_id, ctx.step_id, ctx.session_id)
        state = TurnState.resume(ctx)
        state.messages = [*state.messages, {"role": "user", "content": LONG[0]["content"] * 2}]
        try:
            result = await one_turn(ctx, sink, backend, state, None, 4)
            state.turns += 1
            count_turn(sink, state, result)
            await sink.flush()
            return state
        finally:
            await backend.aclose()
            await asyncio.to_thread(close_pool)

    state = asyncio.run(go())
    assert len(shown) >= 5
    assert {phase for phase, _ in shown} == {StepPhase.PREFILL}
    percents = [int(re.match(r"(\d+)%: ", note)[1]) for _, note in shown]  # type: ignore[index]
    assert percents == sorted(percents) and percents[0] < 50 and percents[-1] == 100
    step = FlowStep.objects.get(id=step_id)
    assert step.phase == StepPhase.GENERATING  # the first byte ended the reading
    assert state.timed_turns == 1 and state.prefill_tokens > 0 and state.prefill_seconds > 0
    observed.note(
        "prompt progress on the step",
        f"{len(shown)} phase writes with coalescing off: {shown[1][1]!r} ... {shown[-1][1]!r}; "
        f"prefill counted {state.prefill_tokens} tokens in {state.prefill_seconds:.3f} s",
    )
