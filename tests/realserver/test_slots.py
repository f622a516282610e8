"""Slots as llama-server reports and uses them: `/props`, `/slots`, queueing at one slot, a
cancelled stream freeing its slot, and a restart on the same port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devtools.llamacpp.server import LlamaServer
from tests.realserver.chat import chat_body, metric, slots, stream_chat
from tests.realserver.facts import Observations

LONG = 30_000  # tokens: the first request is still decoding, however fast, when the tests act


@pytest.fixture(scope="module")
def long_slot(start_server: Callable[..., LlamaServer]) -> Iterator[LlamaServer]:
    """One slot with room for a generation far longer than any test waits for."""
    server = start_server(slots=1, context=32_768)
    assert slots(server)[0]["n_ctx"] == 32_768  # not capped by the model's trained context
    yield server
    server.stop()


def props(server: LlamaServer) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/props", timeout=10).json())


def test_props_and_slots_report_the_slot_count_and_each_slots_context(
    one_slot: LlamaServer, start_server: Callable[..., LlamaServer], observed: Observations
) -> None:
    assert props(one_slot)["total_slots"] == 1
    [slot] = slots(one_slot)
    assert slot["n_ctx"] == 2048
    three = start_server(slots=3, context=3072)
    try:
        assert props(three)["total_slots"] == 3
        three_slots = slots(three)
        assert [s["id"] for s in three_slots] == [0, 1, 2]
        per_slot = {s["n_ctx"] for s in three_slots}
        assert per_slot == {1024}  # --ctx-size is shared out: 3072 / 3
    finally:
        three.stop()
    default = start_server(slots=None, context=4096)
    try:
        default_slots = props(default)["total_slots"]
        default_ctx = {s["n_ctx"] for s in slots(default)}
    finally:
        default.stop()
    assert default_slots >= 1
    observed.note(
        "slots",
        f"/props total_slots 1 with -np 1 (slot n_ctx 2048 of -c 2048); 3 with -np 3 -c 3072 "
        f"(each n_ctx 1024); without -np: {default_slots} slots, n_ctx {sorted(default_ctx)} "
        f"of -c 4096; /slots keys {sorted(slot)}",
    )


async def _read_stream(
    client: httpx.AsyncClient,
    server: LlamaServer,
    name: str,
    log: list[str],
    started: asyncio.Event | None = None,
    **overrides: Any,
) -> None:
    """Read one stream, logging when its headers, first text and finish arrive."""
    url = f"{server.base_url}/chat/completions"
    try:
        async with client.stream("POST", url, json=chat_body(**overrides)) as response:
            log.append(f"{name} headers")
            async for line in response.aiter_lines():
                if '"content":"' in line and f"{name} text" not in log:
                    log.append(f"{name} text")
                    if started is not None:
                        started.set()
                if '"finish_reason":"' in line:
                    log.append(f"{name} finish")
    except asyncio.CancelledError:
        log.append(f"{name} closed")  # leaving the `async with` closed the connection
        raise


def test_a_second_request_waits_for_the_only_slot_until_the_first_is_closed(
    long_slot: LlamaServer, observed: Observations
) -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        log: list[str] = []
        async with httpx.AsyncClient(timeout=120) as client:
            started = asyncio.Event()
            first = asyncio.create_task(
                _read_stream(client, long_slot, "A", log, started, max_tokens=LONG, ignore_eos=True)
            )
            await started.wait()
            second = asyncio.create_task(
                _read_stream(client, long_slot, "B", log, max_tokens=4, ignore_eos=True)
            )
            # Wait (no time limit here) until the server counts B as deferred.
            while await asyncio.to_thread(metric, long_slot, "llamacpp:requests_deferred") < 1:
                assert "A finish" not in log, "the first request ended before the second queued"
                await asyncio.sleep(0.01)
            while_waiting = list(log)
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await second
        return log, while_waiting

    log, while_waiting = asyncio.run(scenario())
    assert "B headers" not in while_waiting  # a queued request gets no response headers yet
    assert log.index("A closed") < log.index("B headers") < log.index("B text")
    assert "A finish" not in log
    observed.note(
        "queueing at 1 slot",
        f"while B waited: /metrics llamacpp:requests_deferred 1 and B had no response headers "
        f"(log {while_waiting}); closing A let B start: {log}",
    )


def test_closing_a_stream_frees_its_slot(long_slot: LlamaServer, observed: Observations) -> None:
    predicted_before = metric(long_slot, "llamacpp:tokens_predicted_total")
    url = f"{long_slot.base_url}/chat/completions"
    chunks = 0
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", url, json=chat_body(max_tokens=LONG, ignore_eos=True)) as response,
    ):
        for line in response.iter_lines():
            chunks += line.startswith("data: ")
            if chunks == 5:
                assert slots(long_slot)[0]["is_processing"]
                # Leaving the loop closes the connection (httpx closes a stream whose line
                # iterator is abandoned), as a cancelled agent's request does.
                closed_at = time.monotonic()
                break
    # The connection is closed now; wait (without a time limit here) for the slot to go idle.
    while slots(long_slot)[0]["is_processing"]:
        time.sleep(0.01)
    freed_after = time.monotonic() - closed_at
    # The counter moves when the next request finishes, so run a short one to flush it.
    stream_chat(long_slot, max_tokens=1, ignore_eos=True)
    decoded = metric(long_slot, "llamacpp:tokens_predicted_total") - predicted_before - 1
    assert decoded < LONG, "the cancelled generation ran to the end"
    observed.note(
        "cancel",
        f"closing the stream after 5 chunks: the slot was idle {freed_after * 1000:.0f} ms "
        f"later; {decoded:g} of {LONG} tokens were decoded in all",
    )


def test_a_server_restarted_on_its_port_serves_again(
    start_server: Callable[..., LlamaServer], observed: Observations
) -> None:
    server = start_server(slots=1, context=1024)
    assert stream_chat(server, max_tokens=2, ignore_eos=True).status == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        stream_chat(server, max_tokens=2)
    began = time.monotonic()
    server.start()
    restart_seconds = time.monotonic() - began
    after = stream_chat(server, max_tokens=2, ignore_eos=True)
    assert after.status == 200
    assert after.timings["cache_n"] == 0  # a restart forgets the prompt cache
    observed.note(
        "restart",
        f"while stopped: connection refused; start to /health 200 took "
        f"{restart_seconds:.2f} s (tiny model); the prompt cache is empty afterwards",
    )
