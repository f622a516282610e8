"""Malformed messages on the pane's socket: an error frame each, the socket stays open and
keeps serving the pane. Read by runs.socket_messages, answered by runs.consumers."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from channels.layers import get_channel_layer

from runs.engine.agent.events import run_group
from runs.models import FlowRun
from runs.socket_messages import (
    MAX_MESSAGE_CHARS,
    Refused,
    Resume,
    Subscribe,
    Unsubscribe,
    read_message,
)

HUGE = "9" * 5000  # more digits than Python converts to an int by default
MALFORMED_TEXT = [
    '{"type": "subscribe", "step": Infinity}',
    '{"type": "subscribe", "step": -Infinity}',
    '{"type": "subscribe", "step": NaN}',
    '{"type": "subscribe", "step": 1, "after": NaN}',
    f'{{"type": "subscribe", "step": {HUGE}}}',
    '{"type": "subscribe", "step": 99999999999999999999999999}',
    '{"type": "subscribe", "step": 1e308}',
    '{"type": "subscribe", "step": 1.5}',
    '{"type": "subscribe", "step": -3}',
    '{"type": "subscribe", "step": 0}',
    '{"type": "subscribe", "step": true}',
    '{"type": "subscribe", "step": "12abc"}',
    '{"type": "subscribe", "step": [1]}',
    '{"type": "subscribe", "step": {"id": 1}}',
    '{"type": "subscribe", "step": null}',
    '{"type": "subscribe"}',
    '{"type": "unsubscribe", "step": "x"}',
    '{"type": "unsubscribe", "step": Infinity}',
    '{"type": "resume", "have": [1, 2]}',
    '{"type": "resume", "have": {"Infinity": 1}}',
    '{"type": "resume", "have": {"1": Infinity}}',
    '{"type": "resume", "have": {"\uff11\uff12": 0}}',  # fullwidth digits pass isdigit()
    json.dumps({"type": "resume", "have": {str(i): 0 for i in range(1, 300)}}),
    '{"type": "resume"}',
    '{"type": 5}',
    '{"type": "\\ud800"}',  # a lone surrogate, which cannot be encoded back
    '{"type": "delete-everything"}',
    "[" * 100_000,  # over the size limit
    "[" * 20_000,  # under it, but nested past Python's recursion limit
    '{"a":' * 50_000,
    "[" * 500 + "]" * 500,
    "not json at all",
    "",
    "null",
    "42",
    '"subscribe"',
    "\x00\x01\x02",
    '{"type": "subscribe", "step": 1',
    "x" * (MAX_MESSAGE_CHARS + 1),
]


def test_every_malformed_text_is_refused_with_a_sentence():
    """Nothing raises, and the sentence never echoes what was sent."""
    for text in MALFORMED_TEXT:
        message = read_message(text, None)
        assert isinstance(message, Refused), text[:60]
        assert message.reason and message.reason.isascii(), text[:60]
        assert "ud800" not in message.reason and "Infinity" not in message.reason


def test_a_binary_frame_is_refused():
    assert isinstance(read_message(None, b'{"type": "subscribe", "step": 1}'), Refused)


def test_the_panes_own_messages_are_read():
    assert read_message('{"type":"subscribe","step":7,"after":0}', None) == Subscribe(7, 0)
    assert read_message('{"type":"subscribe","step":7}', None) == Subscribe(7, 0)
    assert read_message('{"type":"unsubscribe","step":7}', None) == Unsubscribe(7)
    have = '{"type":"resume","have":{"7":12,"8":0}}'
    assert read_message(have, None) == Resume({7: 12, 8: 0})
    assert read_message('{"type":"resume","have":{}}', None) == Resume({})


@pytest.mark.django_db(transaction=True)
def test_malformed_messages_get_error_frames_and_the_socket_keeps_serving(
    connect, event_ids, alice, finished_run
):
    """Each bad frame gets the notice line; afterwards a real subscribe and a live redraw
    still arrive on the same socket."""
    step = finished_run.steps.get(key="security")
    stored = list(step.events.order_by("id").values_list("id", flat=True))

    async def scenario() -> tuple[list[str], str, str]:
        ws, connected = await connect(alice, finished_run)
        assert connected
        await ws.receive_from(timeout=5)  # the snapshot
        notices = []
        frames = [{"text": text} for text in MALFORMED_TEXT] + [{"bytes": b"\x00\xff binary"}]
        for frame in frames:  # raw frames: the communicator's send_to refuses an empty one
            await ws.send_input({"type": "websocket.receive", **frame})
            notices.append(await ws.receive_from(timeout=5))
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "step": step.id}))
        replay = await ws.receive_from(timeout=5)
        await get_channel_layer().group_send(run_group(finished_run.id), {"type": "run.changed"})
        redraw = await ws.receive_from(timeout=5)
        while 'id="run-state"' not in redraw:
            redraw = await ws.receive_from(timeout=5)
        await ws.disconnect()
        return notices, replay, redraw

    notices, replay, redraw = asyncio.run(scenario())
    assert len(notices) == len(MALFORMED_TEXT) + 1
    for notice in notices:
        assert 'id="socket-notice"' in notice and 'hx-swap-oob="true"' in notice
        assert re.search(r'data-testid="socket-notice"[^>]*>[^<]+</p>', notice), notice
    assert event_ids(replay) == stored
    assert str(finished_run.id)[:8] in redraw


@pytest.mark.django_db(transaction=True)
def test_a_step_of_another_run_is_refused_without_its_events(
    connect, alice: Any, finished_run: FlowRun, target_dir: Any
):
    """Ids of other runs' steps get a sentence, never their stream."""
    from runs.services import launch_run

    other = launch_run(flow="research", target=str(target_dir), owner=alice)
    foreign = other.steps.first()
    assert foreign is not None

    async def scenario() -> str:
        ws, _ = await connect(alice, finished_run)
        await ws.receive_from(timeout=5)
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "step": foreign.id}))
        answer = await ws.receive_from(timeout=5)
        assert await ws.receive_nothing(0.3)
        await ws.disconnect()
        return answer

    answer = asyncio.run(scenario())
    assert f"step {foreign.id} is not an agent of this run" in answer


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_handling_a_message_is_an_error_frame_not_a_closed_socket(
    connect, alice, finished_run, monkeypatch
):
    """Even an unexpected exception (the database refusing, say) leaves the socket open."""
    from runs import consumers

    def broken(*args: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(consumers, "_events_for", broken)
    step = finished_run.steps.first()

    async def scenario() -> tuple[str, bool]:
        ws, _ = await connect(alice, finished_run)
        await ws.receive_from(timeout=5)
        await ws.send_to(text_data=json.dumps({"type": "subscribe", "step": step.id}))
        answer = await ws.receive_from(timeout=5)
        await get_channel_layer().group_send(run_group(finished_run.id), {"type": "run.changed"})
        still_open = 'id="run-state"' in await ws.receive_from(timeout=5)
        await ws.disconnect()
        return answer, still_open

    answer, still_open = asyncio.run(scenario())
    assert "could not handle that message" in answer and "database" not in answer
    assert still_open
