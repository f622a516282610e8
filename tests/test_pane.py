"""The pane over HTTP and WebSocket: owner-only, snapshot, status for all, streams on demand."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db.models import F
from django.test import Client

from devtools.testing import finish_step
from orchestrator_site.asgi import application
from runs.engine.agent.events import run_group
from runs.engine.queue import scheduler
from runs.models import AgentEvent, ChatMessage, FlowStep
from runs.services import launch_run


@pytest.mark.django_db
class TestPages:
    def test_the_owner_sees_the_pane_with_the_report_on_top(self, client_for, alice, finished_run):
        """Header, then the report (Summary first), then the agents."""
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        assert (
            html.index('id="run-header"')
            < html.index('data-testid="report"')
            < html.index('class="agents"')
        )
        assert "<h2>Summary</h2>" in html
        assert html.count('class="agent kind-') == 4

    def test_model_output_and_focus_text_are_escaped(self, client_for, alice, finished_run):
        """No markup from a model or a person runs in the browser."""
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        assert "<img src=x" not in html and "<b>auth</b>" not in html
        assert "&lt;b&gt;auth&lt;/b&gt;" in html

    def test_another_user_gets_404_everywhere(self, client_for, bob, finished_run):
        """Pane, exports and actions all answer 404 to someone who does not own the run."""
        client = client_for(bob)
        base = f"/runs/{finished_run.id}"
        for url in (f"{base}/", f"{base}/export.md", f"{base}/export.json"):
            assert client.get(url).status_code == 404, url
        for url in (f"{base}/cancel/", f"{base}/steps/security/retry/", f"{base}/send-to-chat/"):
            assert client.post(url).status_code == 404, url
        assert str(finished_run.id) not in client.get("/runs/").content.decode()

    def test_anonymous_visitors_are_sent_to_log_in(self, client, finished_run):
        """Every page needs a login."""
        for url in ("/runs/", f"/runs/{finished_run.id}/", f"/runs/{finished_run.id}/export.md"):
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith("/login/")

    def test_posts_need_the_csrf_token(self, alice, finished_run):
        """Cancel, retry and send-to-chat are refused without the token."""
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        assert client.post(f"/runs/{finished_run.id}/cancel/").status_code == 403

    def test_exports_markdown_and_json(self, client_for, alice, finished_run):
        """.md is the report; .json has the run, every step and the structured report."""
        client = client_for(alice)
        md = client.get(f"/runs/{finished_run.id}/export.md")
        assert md["Content-Disposition"].endswith('.md"')
        assert md.content.decode() == finished_run.report
        data = json.loads(client.get(f"/runs/{finished_run.id}/export.json").content)
        assert data["run"]["flow"] == "code-review"
        assert [s["key"] for s in data["steps"]] == [
            "correctness",
            "security",
            "synthesis",
            "validation",
        ]
        assert data["report"]["confidence"] == finished_run.confidence
        assert data["report"]["markdown"] == finished_run.report

    def test_send_to_chat_lands_in_the_workspace_chat_by_default(
        self, client_for, alice, finished_run
    ):
        """With no webhook configured, the report becomes a chat message for its owner."""
        response = client_for(alice).post(f"/runs/{finished_run.id}/send-to-chat/")
        assert response.content.decode() == "sent to the workspace chat"
        message = ChatMessage.objects.get()
        assert message.owner == alice and finished_run.report in message.text

    def test_retry_reruns_a_failed_agent_and_its_dependants(self, client_for, alice, target_dir):
        """The pane's Retry button: the failed step and the spine go again, the rest stays."""
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        claimed = scheduler.claim_steps("w", 10, run_id=run.id)
        for step_id in claimed:
            step = FlowStep.objects.get(id=step_id)
            finish_step(
                step_id, "w", succeeded=step.key != "security", output="ok", error="model down"
            )
        for _ in range(2):
            for step_id in scheduler.claim_steps("w", 10, run_id=run.id):
                finish_step(
                    step_id, "w", succeeded=True, output="Summary: s\nConfidence: low\nReasons: r"
                )
        client = client_for(alice)
        page = client.get(f"/runs/{run.id}/").content.decode()
        assert 'data-testid="retry"' in page
        assert client.post(f"/runs/{run.id}/steps/security/retry/").status_code == 204
        statuses = dict(run.steps.values_list("key", "status"))
        assert statuses == {
            "correctness": "succeeded",
            "security": "ready",
            "synthesis": "pending",
            "validation": "pending",
        }
        again = client.post(f"/runs/{run.id}/steps/security/retry/")
        assert again.status_code == 409 and "cannot be retried" in again.content.decode()

    def test_admin_is_for_staff_only(self, client_for, bob, finished_run):
        """The admin shows runs to staff; anyone else is sent to its login."""
        response = client_for(bob).get("/admin/runs/flowrun/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]

    def test_history_filters_searches_and_paginates(
        self, client_for, settings, alice, target_dir, finished_run
    ):
        """Newest first, by flow, status and text."""
        settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0  # 30 waiting runs, on purpose
        for i in range(30):
            launch_run(flow="research", target=str(target_dir), owner=alice, focus=f"topic {i}")
        client = client_for(alice)
        first = client.get("/runs/").content.decode()
        assert "topic 29" in first and "topic 0" not in first
        assert "page 1 of 2" in first
        only_review = client.get("/runs/?flow=code-review").content.decode()
        assert str(finished_run.id) in only_review and "topic" not in only_review
        found = client.get("/runs/?q=topic 17", HTTP_HX_REQUEST="true").content.decode()
        assert "topic 17" in found and "topic 16" not in found
        assert "<html" not in found, "an HTMX request gets the partial only"


@pytest.mark.django_db(transaction=True)
def test_the_socket_sends_a_snapshot_then_streams_only_expanded_agents(
    connect, event_ids, alice, finished_run
):
    """Status for everyone, tokens only for the agent being watched, resumed without loss."""
    security = finished_run.steps.get(key="security")
    correctness = finished_run.steps.get(key="correctness")
    stored = list(security.events.order_by("id").values_list("id", flat=True))

    async def scenario() -> None:
        ws, connected = await connect(alice, finished_run)
        assert connected
        snapshot = await ws.receive_from()
        # Parts inside the header and the rows, never them (a focused control survives).
        assert 'id="run-state"' in snapshot and f'id="agent-who-{security.id}"' in snapshot
        assert 'id="run-header"' not in snapshot and f'id="agent-row-{security.id}"' not in snapshot
        await ws.send_to(
            text_data=json.dumps({"type": "subscribe", "step": security.id, "after": stored[0]})
        )
        replay = await ws.receive_from()
        assert event_ids(replay) == stored[1:], "only what the browser does not have"
        assert "&lt;script&gt;" in replay and "<script>" not in replay
        # Live events: the watched agent's arrive, the collapsed agent's do not.
        layer = get_channel_layer()
        for step, new_id in ((correctness, 10_000), (security, stored[-1])):
            await layer.group_send(
                run_group(finished_run.id),
                {
                    "type": "run.events",
                    "step_id": step.id,
                    "events": [{"id": new_id, "seq": 9, "kind": "text", "payload": {"text": "x"}}],
                },
            )
        assert await ws.receive_nothing(0.3), "duplicates and collapsed agents send nothing"
        await layer.group_send(
            run_group(finished_run.id),
            {
                "type": "run.events",
                "step_id": security.id,
                "events": [
                    {
                        "id": stored[-1] + 1000,
                        "seq": 9,
                        "kind": "text",
                        "payload": {"text": "fresh"},
                    }
                ],
            },
        )
        live = await ws.receive_from()
        assert event_ids(live) == [stored[-1] + 1000] and "fresh" in live
        # A step that changed brings the parts of its row that changed, not the row itself.
        await database_sync_to_async(FlowStep.objects.filter(id=correctness.id).update)(
            tool_calls=F("tool_calls") + 7
        )
        await layer.group_send(
            run_group(finished_run.id), {"type": "run.step", "step_id": correctness.id}
        )
        update = await ws.receive_from()
        assert f'id="agent-metrics-{correctness.id}"' in update
        assert f'id="agent-row-{correctness.id}"' not in update
        assert f'id="agent-who-{correctness.id}"' not in update, "its badge did not change"
        await ws.disconnect()
        # A reconnect says what it holds; the gap comes from the database.
        again, _ = await connect(alice, finished_run)
        await again.receive_from()
        await again.send_to(text_data=json.dumps({"type": "resume", "have": {str(security.id): 0}}))
        assert event_ids(await again.receive_from()) == stored
        await again.disconnect()

    asyncio.run(scenario())


def _store_events(step: FlowStep, texts: list[str]) -> list[dict[str, Any]]:
    """Events written after the step's last one, in its last session, as announced."""
    last = step.events.order_by("-id").first()
    assert last is not None
    rows = AgentEvent.objects.bulk_create(
        AgentEvent(
            session_id=last.session_id,
            step=step,
            seq=last.seq + i,
            kind="text",
            payload={"text": text},
        )
        for i, text in enumerate(texts, start=1)
    )
    return [
        {"id": r.id, "session": r.session_id, "seq": r.seq, "kind": r.kind, "payload": r.payload}
        for r in rows
    ]


@pytest.mark.django_db(transaction=True)
def test_a_live_message_lost_on_the_way_is_healed_from_the_database(
    connect, event_ids, alice, finished_run
):
    """The channel layer may drop a message: a gap in seq, or a status change after the
    last events, brings the missing events from the database, each exactly once."""
    security = finished_run.steps.get(key="security")
    stored = list(security.events.order_by("id").values_list("id", flat=True))
    store = database_sync_to_async(_store_events)

    async def scenario() -> None:
        layer = get_channel_layer()
        group = run_group(finished_run.id)
        ws, _ = await connect(alice, finished_run)
        await ws.receive_from()  # the snapshot
        await ws.send_to(
            text_data=json.dumps({"type": "subscribe", "step": security.id, "after": stored[-2]})
        )
        assert event_ids(await ws.receive_from()) == stored[-1:]
        # Three events written; the messages of the first two are lost, the third arrives.
        written = await store(security, ["one ", "two ", "three "])
        await layer.group_send(
            group, {"type": "run.events", "step_id": security.id, "events": written[2:]}
        )
        healed = await ws.receive_from()
        assert event_ids(healed) == [e["id"] for e in written], "the gap filled, in order"
        assert "one" in healed and "three" in healed
        # The last messages of a stream are lost: the status change that follows heals them.
        tail = await store(security, ["four ", "five "])
        await layer.group_send(group, {"type": "run.step", "step_id": security.id})
        received = [await ws.receive_from(), await ws.receive_from()]
        appended = [m for m in received if f"#stream-{security.id}" in m]
        assert [event_ids(m) for m in appended] == [[e["id"] for e in tail]]
        # The lost messages turn up late after all: nothing is sent twice.
        for event in written + tail:
            await layer.group_send(
                group, {"type": "run.events", "step_id": security.id, "events": [event]}
            )
        assert await ws.receive_nothing(0.3)
        await ws.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_message_lost_right_after_a_subscribe_that_sent_nothing_is_healed(
    connect, event_ids, alice, finished_run
):
    """Subscribed with nothing new to send, the consumer knows no last seq to compare with:
    the first live batch is checked against the database, so a message lost before it is
    not missed."""
    security = finished_run.steps.get(key="security")
    stored = list(security.events.order_by("id").values_list("id", flat=True))
    store = database_sync_to_async(_store_events)

    async def scenario() -> None:
        layer = get_channel_layer()
        ws, _ = await connect(alice, finished_run)
        await ws.receive_from()  # the snapshot
        await ws.send_to(
            text_data=json.dumps({"type": "subscribe", "step": security.id, "after": stored[-1]})
        )
        assert await ws.receive_nothing(0.2), "nothing new to replay"
        written = await store(security, ["lost ", "arrived "])
        await layer.group_send(
            run_group(finished_run.id),
            {"type": "run.events", "step_id": security.id, "events": written[1:]},
        )
        healed = await ws.receive_from()
        assert event_ids(healed) == [e["id"] for e in written]
        more = await store(security, ["next "])
        await layer.group_send(
            run_group(finished_run.id),
            {"type": "run.events", "step_id": security.id, "events": more},
        )
        assert event_ids(await ws.receive_from()) == [more[0]["id"]]
        await ws.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_an_outsiders_socket_is_closed(connect, bob, finished_run):
    """Owner-only over WebSocket too."""

    async def scenario() -> bool:
        ws, connected = await connect(bob, finished_run)
        await ws.disconnect()
        return connected

    assert asyncio.run(scenario()) is False


@pytest.mark.django_db(transaction=True)
def test_a_foreign_origin_is_refused(alice, finished_run):
    """Pages from other sites are turned away at the handshake (tests/test_socket_origins.py
    covers other ports, schemes, null and a missing Origin)."""

    async def scenario() -> bool:
        ws = WebsocketCommunicator(
            application,
            f"/ws/runs/{finished_run.id}/",
            headers=[(b"origin", b"http://evil.example")],
        )
        connected, _ = await ws.connect()
        await ws.disconnect()
        return connected

    assert asyncio.run(scenario()) is False
