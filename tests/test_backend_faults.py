"""The streaming backend against the scripted server over real sockets: every fault it meets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from typing import Any

import pytest

from runs.demo.faults import fault_plan
from runs.engine.agent.backends.base import (
    BackendError,
    EndpointConfig,
    FirstByte,
    PromptProgress,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCallStarted,
    Tries,
    TurnResult,
)
from runs.engine.agent.backends.openai import OpenAICompatibleBackend, probe_models

SPECIALIST = [
    {"role": "system", "content": "Step kind: specialist\nAgent role: security"},
    {"role": "user", "content": "Focus: auth"},
]
VALIDATOR = [
    {"role": "system", "content": "Step kind: validator\nAgent role: validator"},
    {"role": "user", "content": "## Findings\n- a `x.py:1`\n- b `y.py:2`"},
]
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("list_dir", "grep", "read_file")
]


def turn(url: str, messages: list[dict[str, Any]], tools=None, **config: Any) -> list[Any]:
    async def go() -> list[Any]:
        backend = OpenAICompatibleBackend(
            EndpointConfig(base_url=url, model="scripted", backoff_base=0.01, **config)
        )
        try:
            return [
                e
                async for e in backend.stream_turn(messages=messages, tools=tools, max_tokens=None)
            ]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_text_and_reasoning_stream_in_order_and_end_with_usage(server):
    """First byte, reasoning, text, then one TurnResult with the server's usage."""
    events = turn(server.url, VALIDATOR)
    assert isinstance(next(e for e in events if not isinstance(e, PromptProgress)), FirstByte)
    kinds = [type(e) for e in events]
    assert kinds.index(ReasoningDelta) < kinds.index(TextDelta)
    result = events[-1]
    assert isinstance(result, TurnResult)
    assert result.content == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert result.content.startswith("Summary: ")
    assert result.usage and result.usage.completion_tokens > 5
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_tool_call_fragments_split_across_chunks_are_reassembled(server):
    """Name first, arguments in pieces: the result holds one whole call."""
    events = turn(server.url, SPECIALIST, tools=TOOLS)
    assert any(isinstance(e, ToolCallStarted) and e.name == "list_dir" for e in events)
    [call] = events[-1].tool_calls
    assert (call.name, call.arguments) == ("list_dir", '{"path": ".", "depth": 2}')
    assert events[-1].finish_reason == "tool_calls"
    assert server.requests[0]["tool_choice"] == "auto"


@pytest.mark.parametrize(
    "fault",
    ["http_500", "http_429", "drop_mid_stream", "malformed_chunk", "refuse"],
)
def test_a_transient_fault_is_retried_once_and_the_turn_succeeds(server, fault: str):
    """One failure costs one Retrying event, not the turn."""
    server.faults = fault_plan(f"{fault}:times=1")
    events = turn(server.url, VALIDATOR)
    assert [type(e) for e in events].count(Retrying) == 1
    assert isinstance(events[-1], TurnResult) and events[-1].content.startswith("Summary:")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("http_500", "the model server failed (500: scripted internal error)"),
        ("drop_mid_stream", "dropped the connection mid-stream"),
        ("malformed_chunk", "malformed chunk"),
        ("refuse", "closed the connection without answering"),
    ],
)
def test_a_persistent_fault_ends_in_a_clear_error_after_bounded_retries(server, fault, message):
    """max_retries + 1 attempts, then one sentence naming the fault and the server."""
    server.faults = fault_plan(fault)
    with pytest.raises(BackendError, match=re.escape(message)) as error:
        turn(server.url, VALIDATOR, max_retries=2)
    assert f"model server at {server.url}, 3 tries" in str(error.value)
    assert len(server.requests) == 3


def test_a_turn_asked_again_with_its_tries_keeps_counting_them_and_its_budget(server):
    """An agent that stops reading at a Retrying (to give its slot back for the wait) asks
    again with the same tries: the count goes on from them, and the budget runs from the
    turn's first fault, however long the agent waited for its slot since."""
    server.faults = fault_plan("http_500")

    async def go() -> tuple[list[int], str, str]:
        backend = OpenAICompatibleBackend(
            EndpointConfig(base_url=server.url, model="scripted", max_retries=2)
        )
        tries, counted = Tries(), []
        try:
            for _ in range(2):
                stream = backend.stream_turn(
                    messages=VALIDATOR, tools=None, max_tokens=None, tries=tries
                )
                async with contextlib.aclosing(stream) as events:
                    async for event in events:
                        if isinstance(event, Retrying):  # the agent stops reading here
                            counted.append(event.attempt)
                            break
            with pytest.raises(BackendError) as by_count:
                async for _ in backend.stream_turn(
                    messages=VALIDATOR, tools=None, max_tokens=None, tries=tries
                ):
                    pass
            # The first fault 200 s ago (waiting for a slot since): the budget of 180 s is spent.
            long_ago = Tries(made=1, first_fault=asyncio.get_running_loop().time() - 200)
            with pytest.raises(BackendError) as by_time:
                async for _ in backend.stream_turn(
                    messages=VALIDATOR, tools=None, max_tokens=None, tries=long_ago
                ):
                    pass
            return counted, str(by_count.value), str(by_time.value)
        finally:
            await backend.aclose()

    counted, by_count, by_time = asyncio.run(go())
    assert counted == [1, 2]
    assert "3 tries" in by_count
    assert "2 tries over 200" in by_time
    assert len(server.requests) == 4, "no try beyond the budget"


def test_429_honours_retry_after(server):
    """The server said wait a second: the backend waits a second, not its own backoff."""
    server.faults = fault_plan("http_429:times=1")
    started = time.monotonic()
    events = turn(server.url, VALIDATOR)
    retry = next(e for e in events if isinstance(e, Retrying))
    assert retry.delay == 1.0 and "busy" in retry.reason
    assert time.monotonic() - started >= 1.0


def test_a_stall_before_the_first_byte_and_mid_stream_time_out(server):
    """Silence is bounded separately before and after the first byte."""
    server.faults = fault_plan("stall_first_byte:times=1:seconds=2")
    events = turn(server.url, VALIDATOR, first_byte_timeout=0.5)
    assert "before the first byte" in next(e for e in events if isinstance(e, Retrying)).reason
    server.faults = fault_plan("stall_mid_stream:times=1:seconds=2")
    events = turn(server.url, VALIDATOR, read_timeout=0.5)
    assert "mid-stream" in next(e for e in events if isinstance(e, Retrying)).reason


def test_a_client_error_is_not_retried(server):
    """A 4xx other than 429 will not get better: one attempt, the server's message."""
    with pytest.raises(BackendError, match="rejected the request"):
        asyncio.run(_post_to_missing_route(server.url))
    assert len(server.requests) == 0


async def _post_to_missing_route(url: str) -> None:
    backend = OpenAICompatibleBackend(EndpointConfig(base_url=url + "/nope", model="m"))
    try:
        async for _ in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
            pass
    finally:
        await backend.aclose()


def test_nothing_listening_is_reported_with_the_url():
    """Connection refused names the server the person configured."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(BackendError, match=f"refused the connection .*{url}"):
        turn(url, VALIDATOR, max_retries=1)
    with pytest.raises(BackendError, match=f"nothing answers at {url}"):
        asyncio.run(probe_models(url))


def test_the_server_lists_its_model(server):
    """`make run` asks /models to tell a person whether a model server answers."""
    assert asyncio.run(probe_models(server.url)) == ["scripted"]


def test_cancelling_mid_stream_stops_at_once(server):
    """A cancelled agent does not wait for the model to finish."""
    server.token_rate = 5.0

    async def go() -> None:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.url, model="m"))
        streaming = asyncio.Event()

        async def consume() -> None:
            async for event in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
                if isinstance(event, TextDelta):
                    streaming.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(streaming.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled stream ended while the model was still answering.
        assert server.timings == [], "the cancel waited for the model to finish"
        await backend.aclose()

    asyncio.run(go())
    assert len(server.requests) == 1


def test_sixteen_concurrent_streams_all_complete(server):
    """The scripted server and the backend hold many streams at once."""
    server.token_rate = 200.0

    async def go() -> list[list[Any]]:
        async def one() -> list[Any]:
            backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.url, model="m"))
            try:
                return [
                    e
                    async for e in backend.stream_turn(
                        messages=VALIDATOR, tools=None, max_tokens=None
                    )
                ]
            finally:
                await backend.aclose()

        return await asyncio.gather(*(one() for _ in range(16)))

    results = asyncio.run(go())
    assert len(results) == 16 and all(events for events in results)
    assert all(isinstance(events[-1], TurnResult) for events in results)
