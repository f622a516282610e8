"""The event sink's coalescing, by count (runs/engine/agent/events.py): within one window a
step's deltas become one row, one INSERT and one message to the run's group (so one render
per pane), whatever the number of tokens; the first event after a quiet spell goes at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runs.engine.agent import events
from runs.engine.agent.events import EventSink
from runs.engine.dbthread import close_pool
from runs.models import AgentEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_deltas_within_a_window_are_one_insert_and_one_message(
    finished_run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "FLUSH_SECONDS", 1.0)  # wide: the count, not the clock
    step = finished_run.steps.get(key="security")
    session = step.sessions.get()
    first_seq = session.events.count() + 1
    inserts: list[int] = []
    messages: list[dict[str, Any]] = []
    real_insert = AgentEvent.objects.bulk_create

    def insert(rows: list[AgentEvent]) -> list[AgentEvent]:
        inserts.append(len(rows))
        return real_insert(rows)

    async def publish(run_id: Any, message: dict[str, Any]) -> None:
        messages.append(message)

    monkeypatch.setattr(AgentEvent.objects, "bulk_create", insert)
    monkeypatch.setattr(events, "publish", publish)

    async def scenario() -> None:
        sink = EventSink(
            run_id=finished_run.id, step_id=step.id, session_id=session.id, next_seq=first_seq
        )
        sink.start()
        try:
            sink.emit("text", text="first ")  # after a quiet spell: written at once
            for _ in range(200):
                if messages:
                    break
                await asyncio.sleep(0.01)
            for i in range(30):  # within the window: they wait for its end, merged
                sink.emit("text", text=f"t{i} ")
                await asyncio.sleep(0.002)
            sink.emit("tool_call", id="c1", name="read_file", arguments="{}")
            sink.emit("text", text="after the call")
            for _ in range(300):
                if len(messages) >= 2:
                    break
                await asyncio.sleep(0.01)
            await sink.close()
        finally:
            await asyncio.to_thread(close_pool)

    asyncio.run(scenario())
    assert inserts == [1, 3]  # the first event; then 30 deltas as one row, the call, a delta
    assert [len(m["events"]) for m in messages] == [1, 3]
    kinds = [e["kind"] for m in messages for e in m["events"]]
    assert kinds == ["text", "text", "tool_call", "text"]
    texts = [e["payload"].get("text") for m in messages for e in m["events"]]
    assert texts[1] == "".join(f"t{i} " for i in range(30))
    seqs = [e["seq"] for m in messages for e in m["events"]]
    assert seqs == list(range(first_seq, first_seq + 4))
