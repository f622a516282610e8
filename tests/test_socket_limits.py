"""What one pane socket and one user may cost (runs/socket_limits.py, runs/consumers.py): a
message rate per socket, sockets per user, ids checked against the run's roster without the
database, and nothing left behind when a socket closes."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest

from runs import consumers, socket_limits
from runs.socket_limits import (
    BURST_CONNECTS,
    CLOSE_TOO_FAST,
    CLOSE_TOO_MANY_SOCKETS,
    CONNECTS_PER_SECOND,
    OpenSockets,
    TokenBucket,
)

UNKNOWN = {str(10**12 + i): 0 for i in range(64)}


def test_a_bucket_gives_its_burst_then_refills_at_its_rate():
    bucket = TokenBucket(capacity=3, tokens=3, rate=2.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    bucket.at -= 1.0  # a second passes: two more
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    assert not bucket.rested()
    bucket.at -= 60.0  # never more than the burst
    assert bucket.rested()
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_sockets_per_user_are_counted_and_a_user_with_none_is_forgotten_once_rested(
    monkeypatch,
):
    clock = [1000.0]
    monkeypatch.setattr(socket_limits, "now", lambda: clock[0])
    counts = OpenSockets()
    assert counts.take(7, 2) == "" and counts.take(7, 2) == ""
    assert "you have 2 run panes open" in counts.take(7, 2)
    counts.give_back(7)
    assert counts.take(7, 2) == ""
    counts.give_back(7)
    counts.give_back(7)
    assert counts.held(7) == 0 and counts.users() == 1  # its connect rate is remembered
    clock[0] += BURST_CONNECTS / CONNECTS_PER_SECOND
    assert counts.users() == 0


def test_a_user_reconnecting_in_a_loop_is_refused_until_the_rate_allows(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(socket_limits, "now", lambda: clock[0])
    counts = OpenSockets()
    for _ in range(BURST_CONNECTS):
        assert counts.take(7, 2) == ""
        counts.give_back(7)
    assert "reconnected too often" in counts.take(7, 2)
    assert counts.take(8, 2) == ""  # another user is not held back
    clock[0] += 1 / CONNECTS_PER_SECOND
    assert counts.take(7, 2) == ""


def test_every_socket_a_user_may_hold_can_be_opened_at_once(monkeypatch):
    monkeypatch.setattr(socket_limits, "now", lambda: 1000.0)
    counts = OpenSockets()
    limit = BURST_CONNECTS * 2
    assert [counts.take(7, limit) for _ in range(limit)] == [""] * limit
    assert "you have 40 run panes open" in counts.take(7, limit)


@pytest.mark.django_db(transaction=True)
def test_a_socket_over_its_rate_gets_the_reason_and_is_closed(
    alice, finished_run, open_pane_socket, monkeypatch
):
    """Five messages are answered; the sixth closes the socket with a sentence, and what was
    sent after it is dropped unread."""
    monkeypatch.setattr(
        consumers, "TokenBucket", functools.partial(TokenBucket, capacity=5, tokens=5, rate=0.0)
    )
    flood = json.dumps({"type": "resume", "have": UNKNOWN})

    async def scenario() -> tuple[list[str], dict[str, Any], bool]:
        ws, connected = await open_pane_socket(alice, finished_run)
        assert connected
        await ws.receive_from(timeout=5)  # the snapshot
        for _ in range(20):
            await ws.send_input({"type": "websocket.receive", "text": flood})
        frames = []
        while True:
            output = await ws.receive_output(timeout=5)
            if output["type"] == "websocket.close":
                break
            frames.append(output["text"])
        quiet = await ws.receive_nothing(0.3)
        await ws.disconnect()
        return frames, output, quiet

    frames, closed, quiet = asyncio.run(scenario())
    assert len(frames) == 6
    assert all("64 steps are not agents of this run" in frame for frame in frames[:5])
    assert "sent more messages than a pane does" in frames[5]
    assert closed["code"] == CLOSE_TOO_FAST
    assert quiet
    assert consumers.OPEN_SOCKETS.held(alice.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_one_socket_more_than_a_user_may_hold_is_closed_and_a_closed_one_frees_its_place(
    alice, bob, finished_run, open_pane_socket, settings
):
    settings.ORCHESTRATOR_MAX_SOCKETS_PER_USER = 2

    async def scenario() -> tuple[str, dict[str, Any], bool]:
        first, _ = await open_pane_socket(alice, finished_run)
        second, _ = await open_pane_socket(alice, finished_run)
        for ws in (first, second):
            assert 'id="run-state"' in await ws.receive_from(timeout=5)
        third, accepted = await open_pane_socket(alice, finished_run)
        assert accepted  # accepted so that the reason can be sent
        reason = await third.receive_from(timeout=5)
        closed = await third.receive_output(timeout=5)
        await third.disconnect()
        assert consumers.OPEN_SOCKETS.held(alice.pk) == 2
        await first.disconnect()
        again, _ = await open_pane_socket(alice, finished_run)
        snapshot = 'id="run-state"' in await again.receive_from(timeout=5)
        for ws in (second, again):
            await ws.disconnect()
        return reason, closed, snapshot

    reason, closed, reopened = asyncio.run(scenario())
    assert "you have 2 run panes open on this server" in reason
    assert closed == {"type": "websocket.close", "code": CLOSE_TOO_MANY_SOCKETS}
    assert reopened
    assert consumers.OPEN_SOCKETS.held(alice.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_ids_that_are_not_the_runs_cost_no_database_trip_and_a_resume_is_one_trip(
    alice, finished_run, open_pane_socket, monkeypatch
):
    """Unknown ids are answered from the roster read on connect; the known ones of a resume
    are read together."""
    trips: list[dict[int, int]] = []
    real = consumers._events_for

    def counted(run_id: Any, have: dict[int, int]) -> Any:
        trips.append(dict(have))
        return real(run_id, have)

    monkeypatch.setattr(consumers, "_events_for", counted)
    steps = list(finished_run.steps.order_by("id").values_list("id", flat=True))[:2]

    async def scenario() -> tuple[str, list[str]]:
        ws, _ = await open_pane_socket(alice, finished_run)
        await ws.receive_from(timeout=5)
        await ws.send_to(text_data=json.dumps({"type": "resume", "have": UNKNOWN}))
        refused = await ws.receive_from(timeout=5)
        have = {str(step): 0 for step in steps} | {"999999999": 0}
        await ws.send_to(text_data=json.dumps({"type": "resume", "have": have}))
        frames = [await ws.receive_from(timeout=5) for _ in range(3)]
        await ws.disconnect()
        return refused, frames

    refused, frames = asyncio.run(scenario())
    assert "64 steps are not agents of this run" in refused
    assert trips == [{steps[0]: 0, steps[1]: 0}]
    assert "step 999999999 is not an agent of this run" in frames[0]
    for step, frame in zip(steps, frames[1:], strict=True):
        assert f'beforeend:#stream-{step}"' in frame
