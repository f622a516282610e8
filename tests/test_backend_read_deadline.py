"""The stream's read deadline: what it costs per line (timers made, counted) and what it
still guarantees (a stall is a retry, a steady slow stream is not, a cancellation from
outside is never taken for a stall)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runs.engine.agent.backends import openai
from runs.engine.agent.backends.base import EndpointConfig, TextDelta, TurnResult
from runs.engine.agent.backends.openai import OpenAICompatibleBackend, _Retryable, _Turn
from tests.canned_sse import backend_for, collect, delta, sse

LINES = 400


def test_a_long_stream_makes_a_handful_of_timers_not_one_per_line(canned, monkeypatch):
    """400 SSE lines (200 chunks and their separators) arrive in a few network reads: the
    turn schedules a few timers in all (httpx's per-read backstop and the deadline's one
    timer), where a deadline per line made one per line."""
    pieces = [delta(content=f"w{i} ") for i in range(LINES // 2 - 1)]
    body = sse(*pieces, delta(finish="stop"), "data: [DONE]\n\n")
    server = canned(body)
    scheduled: list[float] = []
    real_call_at = asyncio.BaseEventLoop.call_at

    def counting_call_at(self: Any, when: float, *args: Any, **kwargs: Any) -> Any:
        scheduled.append(when)
        return real_call_at(self, when, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "call_at", counting_call_at)
    events = collect(server.url)
    assert sum(isinstance(e, TextDelta) for e in events) == LINES // 2 - 1
    assert isinstance(events[-1], TurnResult) and events[-1].finish_reason == "stop"
    assert 1 <= len(scheduled) <= 20, f"{len(scheduled)} timers for {LINES} lines"


def test_a_stream_slower_in_total_than_the_read_limit_but_never_silent_that_long_completes(
    server,
):
    """The deadline moves with every line: 0.3 s of silence is a stall, 2 s of steady
    streaming at 20 tokens/s is not."""
    server.token_rate = 20.0
    events = collect(server.url, read_timeout=0.3)
    texts = [e for e in events if isinstance(e, TextDelta)]
    assert len(texts) >= 12, "the answer must outlast the read limit several times"
    assert not [e for e in events if type(e).__name__ == "Retrying"]
    assert isinstance(events[-1], TurnResult)


class Silent:
    """Network chunks (an SSE event each) that stop after `chunks`: the next read never ends."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self.left:
            self.left -= 1
            await asyncio.sleep(0)
            return f"data: {json.dumps(delta(content='x'))}\n\n".encode()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _read_all(backend: OpenAICompatibleBackend, lines: Silent) -> Any:
    async def go() -> int:
        loop = asyncio.get_running_loop()
        turn, watchdog = _Turn(), openai._Watchdog(loop)
        first_byte = loop.time() + backend.config.first_byte_timeout
        read = 0
        try:
            while await backend._next_chunk(lines, turn, first_byte, watchdog) is not None:
                turn.started = True
                read += 1
        finally:
            watchdog.close()
        return read

    return go()


def test_silence_after_lines_is_a_stall_and_leaves_no_timer():
    backend = backend_for("http://127.0.0.1:9/v1", read_timeout=0.05, first_byte_timeout=5)

    async def go() -> None:
        with pytest.raises(_Retryable, match="silent mid-stream"):
            await _read_all(backend, Silent(30))
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

    asyncio.run(go())


def test_silence_before_the_first_byte_keeps_the_first_byte_limit():
    backend = backend_for("http://127.0.0.1:9/v1", read_timeout=5, first_byte_timeout=0.05)
    with pytest.raises(_Retryable, match="silent before the first byte"):
        asyncio.run(_read_all(backend, Silent(0)))


def test_a_cancellation_from_outside_when_the_deadline_fires_is_not_taken_for_a_stall(
    monkeypatch,
):
    """Both cancel the reading task in the same loop iteration: it ends cancelled, as with
    `asyncio.Timeout`, rather than retrying a turn somebody stopped."""
    backend = OpenAICompatibleBackend(
        EndpointConfig(base_url="http://127.0.0.1:9/v1", model="m", read_timeout=0.05)
    )
    reader: list[asyncio.Task[Any]] = []
    real_on_timer = openai._Watchdog._on_timer

    def and_from_outside(self: Any) -> None:
        real_on_timer(self)
        if self._fired:
            reader[0].cancel()

    monkeypatch.setattr(openai._Watchdog, "_on_timer", and_from_outside)

    async def go() -> None:
        task = asyncio.create_task(_read_all(backend, Silent(3)))
        reader.append(task)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(go())


class Chunked:
    """A response whose body arrives in exactly these network chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk


def events_of(*chunks: bytes) -> tuple[list[Any], _Turn]:
    backend = backend_for("http://127.0.0.1:9/v1")
    turn = _Turn()

    async def go() -> list[Any]:
        deadline = asyncio.get_running_loop().time() + 5
        return [e async for e in backend._events(Chunked(*chunks), turn, deadline)]  # type: ignore[arg-type]

    return asyncio.run(go()), turn


def text(content: str, finish: str | None = None) -> bytes:
    return ("data: " + json.dumps(delta(finish, content=content), ensure_ascii=False)).encode()


def test_lines_split_across_chunks_mid_character_and_any_line_ending_are_read_whole():
    """A line and a UTF-8 character cut between reads, CRLF, CR, and a last line with no
    newline at all: the same text as if each line had come alone."""
    first, second = text("h\u00e9 "), text("there", finish="stop")
    cut = first.index("\u00e9".encode()) + 1  # between the two bytes of é
    events, turn = events_of(first[:cut], first[cut:] + b"\r", b"\n\r\n: keep-alive\r" + second)
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["h\u00e9 ", "there"]
    assert turn.finish_reason == "stop"


def test_nothing_after_done_is_read_and_bytes_that_are_not_utf8_are_replaced():
    events, turn = events_of(
        text("a") + b"\n\n" + text("b\u00e9").replace("\u00e9".encode(), b"\xff\xfe") + b"\n\n",
        b"data: [DONE]\n\n" + text("never") + b"\n\n",
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["a", "b\ufffd\ufffd"]
    assert turn.done
