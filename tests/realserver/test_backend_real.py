"""The project's own streaming backend (runs/engine/agent/backends/openai.py) against the real server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from devtools.llamacpp.server import LlamaServer
from runs.engine.agent.backends.base import (
    BackendError,
    EndpointConfig,
    FirstByte,
    PromptProgress,
    Retrying,
    RetryKind,
    TextDelta,
    TurnResult,
)
from runs.engine.agent.backends.openai import OpenAICompatibleBackend, probe_models
from tests.realserver.chat import HELLO
from tests.realserver.facts import Observations


def turn(
    server: LlamaServer,
    messages: list[dict[str, Any]] = HELLO,
    max_tokens: int | None = 24,
    **config: Any,
) -> list[Any]:
    """Every event of one backend turn (raises what the backend raises)."""

    async def go() -> list[Any]:
        endpoint = EndpointConfig(base_url=server.base_url, model="tiny", **config)
        backend = OpenAICompatibleBackend(endpoint)
        try:
            stream = backend.stream_turn(messages=messages, tools=None, max_tokens=max_tokens)
            return [event async for event in stream]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_the_backend_streams_one_real_answer_end_to_end(
    one_slot: LlamaServer, observed: Observations
) -> None:
    models = asyncio.run(probe_models(one_slot.base_url))
    events = turn(one_slot)
    progress = [event for event in events if isinstance(event, PromptProgress)]
    assert progress and events[: len(progress)] == progress  # asked for: the prompt's reading
    assert isinstance(events[len(progress)], FirstByte)
    result = events[-1]
    assert isinstance(result, TurnResult)
    texts = [event.text for event in events if isinstance(event, TextDelta)]
    assert result.content == "".join(texts)
    assert result.usage is not None
    assert 1 <= result.usage.completion_tokens <= 24
    assert result.usage.prompt_tokens > 0
    assert result.finish_reason in {"stop", "length"}
    observed.note(
        "OpenAICompatibleBackend",
        f"/v1/models lists {models}; one turn: {len(progress)} PromptProgress, FirstByte, "
        f"{len(texts)} TextDelta, TurnResult "
        f"usage {result.usage}, finish_reason {result.finish_reason!r}",
    )


def test_the_backend_hands_on_a_length_cut_as_an_ordinary_result(
    one_slot: LlamaServer, observed: Observations
) -> None:
    # Random weights may sample the end-of-turn token within two tokens: then the answer
    # simply ended. Across a few prompts the cut must show up, and nothing else may.
    reasons = []
    for attempt in range(6):
        messages = [{"role": "user", "content": f"hello, attempt {attempt}"}]
        [*_, result] = turn(one_slot, messages=messages, max_tokens=2)
        assert isinstance(result, TurnResult)
        assert result.finish_reason in ("length", "stop"), result.finish_reason
        reasons.append(result.finish_reason)
        if result.finish_reason == "length":
            break
    assert "length" in reasons, reasons
    observed.note(
        "length through the backend",
        "a 2-token cut arrives as TurnResult(finish_reason='length'); nothing else marks it",
    )


def test_the_backend_fails_at_once_on_a_context_overflow(
    one_slot: LlamaServer, observed: Observations
) -> None:
    messages = [{"role": "user", "content": "review the code " * 2000}]
    with pytest.raises(BackendError) as failure:
        turn(one_slot, messages=messages)
    assert "rejected the request (400" in str(failure.value)
    observed.note("overflow through the backend", str(failure.value))


def test_the_backend_waits_for_a_stopped_server_within_its_retry_budget(
    start_server: Callable[..., LlamaServer], observed: Observations
) -> None:
    """Down for 2 s: the turn retries ("server unavailable") and then succeeds. With a budget
    shorter than the outage it gives up, after the budget, saying how long it tried."""
    server = start_server(slots=1, context=1024)
    server.stop()
    events: list[Any] = []

    async def go(**config: Any) -> None:
        endpoint = EndpointConfig(base_url=server.base_url, model="tiny", **config)
        backend = OpenAICompatibleBackend(endpoint)
        try:
            async for event in backend.stream_turn(messages=HELLO, tools=None, max_tokens=4):
                events.append(event)
        finally:
            await backend.aclose()

    restart = threading.Timer(2.0, server.start)
    began = time.monotonic()
    restart.start()
    asyncio.run(go())
    restart.join()
    back_after = time.monotonic() - began
    retries = [event for event in events if isinstance(event, Retrying)]
    assert isinstance(events[-1], TurnResult)
    assert retries and {r.kind for r in retries} == {RetryKind.UNAVAILABLE}
    server.stop()
    events.clear()
    began = time.monotonic()
    with pytest.raises(BackendError) as failure:
        asyncio.run(go(retry_seconds=1.5))
    gave_up_after = time.monotonic() - began
    assert "refused the connection" in str(failure.value)
    assert gave_up_after >= 1.5
    server.start()
    observed.note(
        "server down through the backend",
        f"down 2 s: {len(retries)} retries (delays {[r.delay for r in retries]} s), answered "
        f"after {back_after:.1f} s; with a 1.5 s budget it gave up after {gave_up_after:.1f} s: "
        f"{failure.value}",
    )
