"""What a streamed flush costs the database, by count: statements sent, health checks
among them; and that a connection that failed or sat idle is still checked (the engine
rides out a restarted database, tests/test_database_restart.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

from runs.engine import dbthread
from runs.engine.agent.events import EventSink
from runs.engine.storable import is_outage
from runs.models import AgentSession, FlowRun

pytestmark = pytest.mark.django_db(transaction=True)
FLUSHES = 10


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every statement any thread sends through psycopg, health checks included (Django's
    check bypasses its own cursor wrappers, so CaptureQueriesContext cannot see it)."""
    sent: list[str] = []
    real_execute = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(kind_of(str(query)))
        return real_execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    yield sent


def kind_of(query: str) -> str:
    if query.strip() == "SELECT 1":
        return "health check"
    if "set_config('TimeZone'" in query:
        return "new connection"  # Django's first statement on a connection
    return query.split()[0].upper()


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One engine database thread, so every call below meets the same connection."""
    dbthread.close_pool()
    monkeypatch.setattr(dbthread, "POOL_SIZE", 1)
    yield
    dbthread.close_pool()


def sink_for(run: FlowRun) -> EventSink:
    session = AgentSession.objects.filter(step__run=run).order_by("id").first()
    assert session is not None
    return EventSink(run_id=run.id, step_id=session.step_id, session_id=session.id, next_seq=4)


async def stream(sink: EventSink, flushes: int, *, pause: float = 0.0) -> None:
    for i in range(flushes):
        if pause:
            await asyncio.sleep(pause)
        sink.emit("text", text=f"token {i} ")
        await sink.flush()


def test_back_to_back_flushes_send_one_insert_each_and_no_health_check(
    finished_run: Any, one_thread: None, statements: list[str]
) -> None:
    """Before: a `SELECT 1` before every flush's INSERT (two round trips a flush)."""
    sink = sink_for(finished_run)

    async def go() -> None:
        await stream(sink, 1)  # the thread's connection is opened (new ones are not checked)
        statements.clear()
        await stream(sink, FLUSHES)

    asyncio.run(go())
    assert statements == ["INSERT"] * FLUSHES


def test_a_connection_idle_longer_than_the_window_is_checked_once(
    finished_run: Any, one_thread: None, statements: list[str], monkeypatch: Any
) -> None:
    monkeypatch.setattr(dbthread, "HEALTH_CHECK_IDLE", 0.05)
    sink = sink_for(finished_run)

    async def go() -> None:
        await stream(sink, 1)
        statements.clear()
        await stream(sink, 3, pause=0.1)

    asyncio.run(go())
    assert statements == ["health check", "INSERT"] * 3


def test_a_connection_cut_under_the_engine_fails_one_call_then_reconnects(
    finished_run: Any, one_thread: None, statements: list[str], monkeypatch: Any
) -> None:
    """The server ends the thread's session (as a restart does) just after it answered: the
    next flush fails as in an outage, keeping its events; the one after reconnects and
    writes them, in order, with no gap."""
    monkeypatch.setattr(dbthread, "HEALTH_CHECK_IDLE", 60.0)  # the count, not the clock
    sink = sink_for(finished_run)
    backend_pid = dbthread.db_async(lambda: connection.cursor().connection.info.backend_pid)

    async def go() -> None:
        await stream(sink, 1)
        pid = await backend_pid()
        await asyncio.to_thread(terminate, pid)
        statements.clear()
        sink.emit("text", text="kept ")
        with pytest.raises(Exception) as failed:
            await sink.flush()
        assert is_outage(failed.value)
        # It had answered within the window: not checked, so this flush meets the cut.
        assert statements == ["INSERT"]
        statements.clear()
        sink.emit("text", text="after")
        await sink.flush()
        assert await backend_pid() != pid

    asyncio.run(go())
    assert statements == ["new connection", "INSERT"], "the cut connection is replaced"
    texts = list(
        finished_run.steps.get(id=sink.step_id)
        .events.filter(session_id=sink.session_id, seq__gte=4)
        .order_by("seq")
        .values_list("payload__text", flat=True)
    )
    assert texts == ["token 0 ", "kept after"]


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.02)
