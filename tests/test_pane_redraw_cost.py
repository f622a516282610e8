"""What a live status change costs a pane, by count: the redraws a socket makes, the queries
each one runs and the rows it renders (not by time: this machine's timings are noise)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs import consumers, live
from runs.engine import dbthread
from runs.engine.agent.events import run_group
from runs.models import FlowRun, RunStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redraws(monkeypatch: pytest.MonkeyPatch) -> list[tuple[set[int] | None, int, list[str]]]:
    """Every redraw a socket makes: (its rows, queries it ran, partials it rendered)."""
    seen: list[tuple[set[int] | None, int, list[str]]] = []
    real_redraw, real_render = consumers._redraw, live.render_to_string
    rendered: list[str] = []

    def render(name: str, context: Any = None) -> str:
        rendered.append(name.rsplit("#", 1)[-1])
        return real_render(name, context)

    def redraw(run_id: Any, step_ids: set[int] | None, watched: dict[int, int]) -> Any:
        rendered.clear()
        with CaptureQueriesContext(connection) as queries:
            result = real_redraw(run_id, step_ids, watched)
        seen.append((None if step_ids is None else set(step_ids), len(queries), list(rendered)))
        return result

    monkeypatch.setattr(consumers, "_redraw", redraw)
    monkeypatch.setattr(live, "render_to_string", render)
    return seen


def test_status_changes_within_the_window_are_one_redraw_of_three_queries(
    connect: Any, alice: Any, finished_run: Any, redraws: list[Any], monkeypatch: Any
) -> None:
    """The first change is drawn at once; five more, arriving while the window is open, are
    drawn together after it: two redraws, not six. Each reads the run in three queries and
    renders the header's parts, the timeline and only the changed rows' parts."""
    monkeypatch.setattr(consumers, "REDRAW_SECONDS", 1.0)  # wide: the count, not the clock
    FlowRun.objects.filter(id=finished_run.id).update(status=RunStatus.RUNNING, finished_at=None)
    steps = list(finished_run.steps.order_by("id").values_list("id", flat=True))
    group = run_group(finished_run.id)

    async def scenario() -> None:
        ws, connected = await connect(alice, finished_run)
        assert connected
        await ws.receive_from(timeout=5)  # the snapshot
        layer = get_channel_layer()
        await layer.group_send(group, {"type": "run.step", "step_id": steps[0]})
        for _ in range(100):
            if redraws:
                break
            await asyncio.sleep(0.02)
        for step in steps[1:]:
            await layer.group_send(group, {"type": "run.step", "step_id": step})
            await asyncio.sleep(0.01)
        for _ in range(150):
            if len(redraws) >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # a third redraw, if there were one, would show by now
        await ws.disconnect()

    asyncio.run(scenario())
    assert [rows for rows, _, _ in redraws] == [{steps[0]}, set(steps[1:])]
    row_parts = set(live.ROW_PARTS)
    for rows, queries, rendered in redraws:
        assert queries <= 3, queries
        header = [name for name in rendered if name in live.HEADER_PARTS]
        assert header == list(live.HEADER_PARTS)
        assert rendered.count("run-timeline") == 1
        assert len([name for name in rendered if name in row_parts]) == len(row_parts) * len(rows)


def test_redraws_a_second_apart_or_less_send_no_health_check(
    connect: Any, alice: Any, finished_run: Any, redraws: list[Any], monkeypatch: Any
) -> None:
    """A pane's redraws come many a second while agents change state: the connection that
    answered the last one is not asked `SELECT 1` before the next (it was before each)."""
    import psycopg

    monkeypatch.setattr(consumers, "REDRAW_SECONDS", 0.0)
    # The rule, not the clock: on a loaded machine the redraws may lie more than the real
    # second apart, which would (rightly) check the connection again.
    monkeypatch.setattr(dbthread, "HEALTH_CHECK_IDLE", 60.0)
    FlowRun.objects.filter(id=finished_run.id).update(status=RunStatus.RUNNING, finished_at=None)
    steps = list(finished_run.steps.order_by("id").values_list("id", flat=True))
    checks: list[str] = []
    real_execute = psycopg.Cursor.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if str(query).strip() == "SELECT 1":
            checks.append(str(query))
        return real_execute(self, query, *args, **kwargs)

    async def scenario() -> None:
        ws, connected = await connect(alice, finished_run)
        assert connected
        await ws.receive_from(timeout=5)  # the snapshot
        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        layer = get_channel_layer()
        for count, step in enumerate(steps[:4], start=1):
            await layer.group_send(
                run_group(finished_run.id), {"type": "run.step", "step_id": step}
            )
            for _ in range(100):
                if len(redraws) >= count:
                    break
                await asyncio.sleep(0.01)
        await ws.disconnect()

    asyncio.run(scenario())
    assert len(redraws) == 4
    assert checks == []
