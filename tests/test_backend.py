"""The streaming backend over real sockets: against the scripted model server for answers and
faults, and against a tiny canned-SSE server for the stream shapes other servers send."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest

from runs.demo.faults import fault_plan
from runs.engine.agent.backends.base import (
    BackendError,
    FirstByte,
    PromptProgress,
    ReasoningDelta,
    Retrying,
    TextDelta,
    ToolCallStarted,
    TurnResult,
)
from runs.engine.agent.backends.openai import probe_models
from tests.canned_sse import FAST, VALIDATOR, backend_for, collect, delta, sse

SPECIALIST = [
    {"role": "system", "content": "Step kind: specialist\nAgent role: security"},
    {"role": "user", "content": "Focus: auth"},
]
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("list_dir", "grep", "read_file")
]


def wait_until(predicate: Any, deadline: float = 10) -> bool:
    """Whether the predicate came true; the deadline only bounds the wait."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def after_last_retry(events: list[Any]) -> list[Any]:
    retries = [i for i, e in enumerate(events) if isinstance(e, Retrying)]
    return events[retries[-1] + 1 :] if retries else events


def free_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- a canned server, for stream shapes the scripted model does not produce ------------------


# --- answers -----------------------------------------------------------------------------------


def test_text_streams_word_by_word_and_ends_with_the_servers_usage(server):
    """The prompt's progress (asked for), FirstByte, one TextDelta per word, then a single
    TurnResult carrying the usage."""
    events = collect(server.url)
    assert isinstance(events[0], PromptProgress) and events[0].processed == 0
    first_byte = next(i for i, e in enumerate(events) if isinstance(e, FirstByte))
    assert all(isinstance(e, PromptProgress) for e in events[:first_byte])
    assert events[first_byte - 1].processed == events[first_byte - 1].total
    assert server.requests[0]["return_progress"] is True
    assert [type(e) for e in events].count(TurnResult) == 1
    result = events[-1]
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(texts) > 5 and all(len(t.split()) <= 1 for t in texts)
    assert result.content == "".join(texts)
    assert result.content.startswith("Summary: The report lists 2 cited findings across 2 files")
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage.completion_tokens > len(texts)
    words = sum(len(m["content"].split()) for m in VALIDATOR)
    assert result.usage.prompt_tokens == words


def test_the_request_body_is_an_openai_streaming_request(server):
    """model, messages, stream, include_usage; tools with tool_choice auto; max_tokens if set."""
    collect(server.url, SPECIALIST, tools=TOOLS, max_tokens=64)
    collect(server.url)
    with_tools, plain = server.requests
    assert with_tools["model"] == "scripted" and with_tools["messages"] == SPECIALIST
    assert with_tools["stream"] is True
    assert with_tools["stream_options"] == {"include_usage": True}
    assert with_tools["tools"] == TOOLS and with_tools["tool_choice"] == "auto"
    assert with_tools["max_tokens"] == 64
    assert not {"tools", "tool_choice", "max_tokens"} & plain.keys()


def test_reasoning_content_streams_as_reasoning_deltas_before_the_text(server):
    """llama.cpp's delta.reasoning_content becomes ReasoningDelta and TurnResult.reasoning."""
    events = collect(server.url)
    kinds = [type(e) for e in events]
    assert kinds.index(ReasoningDelta) < kinds.index(TextDelta)
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning == events[-1].reasoning == "Checking each finding against the checklist. "


def test_tool_call_fragments_split_across_chunks_are_reassembled(server):
    """Name once, arguments in pieces: one ToolCallStarted and one whole call in the result."""
    events = collect(server.url, SPECIALIST, tools=TOOLS)
    started = [e for e in events if isinstance(e, ToolCallStarted)]
    assert started == [ToolCallStarted(index=0, name="list_dir")]
    [call] = events[-1].tool_calls
    assert call.name == "list_dir" and call.id.startswith("call_")
    assert json.loads(call.arguments) == {"path": ".", "depth": 2}
    assert events[-1].finish_reason == "tool_calls" and events[-1].content == ""


def test_tool_arguments_that_are_not_json_are_passed_through_raw(server):
    """The backend reports what the model said; the agent decides what bad arguments mean."""
    server.faults = fault_plan("bad_tool_args:times=1")
    [call] = collect(server.url, SPECIALIST, tools=TOOLS)[-1].tool_calls
    assert (call.name, call.arguments) == ("grep", '{"pattern": oops')


def test_max_tokens_cuts_the_answer_with_finish_reason_length(server):
    """The server stops after max_tokens content pieces and says why."""
    result = collect(server.url, max_tokens=3)[-1]
    assert result.finish_reason == "length"
    assert result.content == "Summary: The report "


def test_delta_reasoning_comments_and_index_less_fragments_are_understood(canned):
    """`delta.reasoning`, keep-alives, index-less fragments, no usage (None, never guessed)."""
    call = {"id": "c1", "type": "function", "function": {"name": "grep", "arguments": ""}}
    body = sse(
        ": keep-alive\n\n",
        delta(role="assistant"),
        delta(reasoning="Thinking. "),
        "\n",
        delta(tool_calls=[call]),
        delta(tool_calls=[{"function": {"arguments": '{"pattern": '}}]),
        delta(tool_calls=[{"function": {"arguments": '"TODO"}'}}]),
        delta(finish="tool_calls"),
        "data: [DONE]\n\n",
    )
    events = collect(canned(body).url, tools=TOOLS)
    result = events[-1]
    assert result.reasoning == "Thinking. " and result.usage is None
    assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
        ("c1", "grep", '{"pattern": "TODO"}')
    ]
    assert [type(e) for e in events][:3] == [FirstByte, ReasoningDelta, ToolCallStarted]


def test_a_stream_cut_after_the_finish_reason_still_counts_as_an_answer(canned):
    """finish_reason says the answer is whole; a lost usage chunk or [DONE] costs no retry."""
    events = collect(canned(sse(delta(content="Done."), delta(finish="stop"))).url)
    assert not any(isinstance(e, Retrying) for e in events)
    assert events[-1].content == "Done." and events[-1].usage is None


def test_a_stream_that_ends_before_the_model_finished_is_retried_then_fails(canned):
    """No finish_reason and no [DONE]: the answer may be cut short, so the turn is retried."""
    server = canned(sse(delta(content="Half an ans")))
    with pytest.raises(BackendError, match="stream ended before the model finished") as error:
        collect(server.url, max_retries=1)
    assert f"(model server at {server.url}, 2 tries)" in str(error.value)
    assert server.hits == 2


def test_an_error_inside_the_stream_with_a_client_code_is_not_retried(canned):
    """llama.cpp reports e.g. an oversized prompt as an error chunk; retrying cannot help."""
    error = {"error": {"code": 400, "message": "the request exceeds the available context size"}}
    server = canned(sse(delta(role="assistant"), error))
    with pytest.raises(BackendError, match="exceeds the available context size"):
        collect(server.url)
    assert server.hits == 1


# --- faults ------------------------------------------------------------------------------------

TRANSIENT = {
    "http_500": ("failed (500: scripted internal error)", {}),
    "refuse": ("closed the connection without answering", {}),
    "drop_mid_stream": ("dropped the connection mid-stream", {}),
    "malformed_chunk": ("malformed chunk", {}),
    "stall_first_byte:seconds=5": (
        "silent before the first byte (0.3s)",
        {"first_byte_timeout": 0.3},
    ),
    "stall_mid_stream:seconds=5": ("silent mid-stream (nothing for 0.3s)", {"read_timeout": 0.3}),
}


@pytest.mark.parametrize(("fault", "expected"), TRANSIENT.items(), ids=list(TRANSIENT))
def test_a_fault_that_happens_once_costs_one_retry_and_the_turn_succeeds(server, fault, expected):
    """One Retrying naming the fault, then the same answer a clean server gives."""
    reason, config = expected
    clean = collect(server.url)[-1]
    kind, *options = fault.split(":")
    server.faults = fault_plan(":".join([kind, "times=1", *options]))
    events = collect(server.url, **config)
    [retry] = [e for e in events if isinstance(e, Retrying)]
    assert retry.attempt == 1 and reason in retry.reason
    assert events[-1] == clean
    final_attempt = after_last_retry(events)
    assert "".join(e.text for e in final_attempt if isinstance(e, TextDelta)) == clean.content


@pytest.mark.parametrize(("fault", "expected"), TRANSIENT.items(), ids=list(TRANSIENT))
def test_a_persistent_fault_ends_in_a_clear_error_after_bounded_retries(server, fault, expected):
    """max_retries + 1 attempts, then one sentence naming the fault, the URL and the attempts."""
    reason, config = expected
    server.faults = fault_plan(fault)
    events: list[Any] = []

    async def go() -> None:
        backend = backend_for(server.url, max_retries=2, **FAST, **config)
        try:
            async for event in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
                events.append(event)
        finally:
            await backend.aclose()

    with pytest.raises(BackendError) as error:
        asyncio.run(go())
    assert reason in str(error.value)
    assert str(error.value).endswith(f"(model server at {server.url}, 3 tries)")
    assert [e.attempt for e in events if isinstance(e, Retrying)] == [1, 2]
    assert len(server.requests) == 3


def test_retries_back_off_exponentially(server):
    """base * 2**n between attempts when the server gives no Retry-After."""
    server.faults = fault_plan("http_500:times=3")
    events = collect(server.url, backoff_base=0.01)
    assert [e.delay for e in events if isinstance(e, Retrying)] == [0.01, 0.02, 0.04]
    assert isinstance(events[-1], TurnResult)


def test_429_honours_retry_after(server):
    """The server said wait a second: the backend waits that second, not its own backoff."""
    server.faults = fault_plan("http_429:times=1")
    started = time.monotonic()
    events = collect(server.url, backoff_base=0.01)
    [retry] = [e for e in events if isinstance(e, Retrying)]
    assert retry.delay == 1.0 and "busy (429: all slots are busy)" in retry.reason
    assert time.monotonic() - started >= 0.95
    assert isinstance(events[-1], TurnResult)


def test_a_client_error_is_not_retried_and_carries_the_servers_message(canned):
    """A 4xx other than 429 will not get better: one attempt, the server's own words."""
    body = json.dumps({"error": {"code": 404, "message": "model 'qwen-nope' not found"}})
    server = canned(body.encode(), status=404)
    with pytest.raises(BackendError) as error:
        collect(server.url)
    assert str(error.value) == (
        f"the model server at {server.url} rejected the request (404: model 'qwen-nope' not found)"
    )
    assert server.hits == 1


def test_nothing_listening_is_reported_with_the_url():
    """Connection refused names the server the person configured."""
    url = free_port_url()
    with pytest.raises(BackendError) as error:
        collect(url, max_retries=1)
    assert str(error.value) == (
        f"the model server refused the connection (model server at {url}, 2 tries)"
    )


def test_probe_models_lists_the_served_models_or_says_nothing_answers(server):
    """`make run` asks /models to tell a person whether a model server answers."""
    assert asyncio.run(probe_models(server.url)) == ["scripted"]
    url = free_port_url()
    with pytest.raises(BackendError, match=f"nothing answers at {url} .*refused the connection"):
        asyncio.run(probe_models(url))


# --- cancellation and concurrency -------------------------------------------------------------


def test_cancelling_mid_stream_stops_at_once_and_leaves_no_task(server):
    """A cancelled agent does not wait for the model; its stream is closed, no task lingers."""
    server.token_rate = 20.0

    async def go() -> list[asyncio.Task[Any]]:
        backend = backend_for(server.url)
        streaming = asyncio.Event()

        async def consume() -> None:
            async for event in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
                if isinstance(event, TextDelta):
                    streaming.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(streaming.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Before the model's answer ends: the request is already gone from the server.
        assert server.timings == [], "the cancel waited for the model to finish"
        await backend.aclose()
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(go()) == []
    assert server.open_requests.arrivals == 1
    assert wait_until(lambda: server.open_requests.current() == 0), "the stream was left open"
    assert server.timings == [], "the server never finished the abandoned stream"


def test_cancelling_during_the_backoff_does_not_sleep_it_out(server):
    """Cancellation interrupts the wait between attempts too."""
    server.faults = fault_plan("http_500")

    backoff = 5.0

    async def go() -> None:
        backend = backend_for(server.url, backoff_base=backoff)
        retrying = asyncio.Event()

        async def consume() -> None:
            async for event in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
                if isinstance(event, Retrying):
                    retrying.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(retrying.wait(), 5)
        task.cancel()
        # Ended within the backoff it was sleeping, so it did not sleep it out.
        done, _ = await asyncio.wait({task}, timeout=backoff)
        assert task in done and task.cancelled(), "the cancel waited for the backoff"
        await backend.aclose()

    asyncio.run(go())
    assert len(server.requests) == 1, "no attempt after the cancel"


def test_a_consumer_that_stops_reading_closes_the_stream(server):
    """Leaving the stream early and closing it releases the connection at once."""
    server.token_rate = 20.0

    async def go() -> None:
        backend = backend_for(server.url)
        stream = backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None)
        async for event in stream:
            if isinstance(event, TextDelta):
                break
        await stream.aclose()
        await backend.aclose()

    asyncio.run(go())
    assert server.open_requests.arrivals == 1
    assert wait_until(lambda: server.open_requests.current() == 0), "the stream was left open"
    assert server.timings == [], "closed before the model's answer ended"


def test_sixteen_concurrent_streams_at_a_token_rate_all_complete(server):
    """Sixteen paced streams run side by side (not one after another), all whole."""
    server.token_rate = 100.0
    clean = collect(server.url)[-1]

    async def go() -> list[tuple[float, float, list[Any]]]:
        async def one() -> tuple[float, float, list[Any]]:
            backend = backend_for(server.url)
            try:
                stream = backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None)
                events, first = [], 0.0
                async for event in stream:
                    first = first or time.monotonic()
                    events.append(event)
                return first, time.monotonic(), events
            finally:
                await backend.aclose()

        return await asyncio.gather(*(one() for _ in range(16)))

    results = asyncio.run(go())
    assert [events[-1] for _, _, events in results] == [clean] * 16
    # Streaming at once: when the last stream's first byte came, most others were still open.
    last_start = max(start for start, _, _ in results)
    still_open = sum(end >= last_start for _, end, _ in results)
    assert still_open >= 8, f"only {still_open} of 16 streams overlapped"
