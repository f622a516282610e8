"""The pane's header, rows and timeline over HTTP; the workspace's memory; chat; the admin;
error pages; the friendly edges of the CLI."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.test import Client

from devtools.testing import ROOT, database_url, manage_env
from runs import services
from runs.engine.queue import scheduler
from runs.models import ChatMessage, FlowRun, WorkspaceLayout
from runs.services import launch_run
from runs.workspace import MAX_OPEN_PANES


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def text(html: str) -> str:
    """The page's words, tags removed and spaces squeezed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.django_db
class TestPaneAtAGlance:
    def test_the_header_counts_agents_and_labels_every_number(self, alice, finished_run):
        """4 done, 0 running/queued/failed of 4; tokens in/out and tok/s labelled; started and
        finished as <time> elements; elapsed to a tenth of a second."""
        FlowRun.objects.filter(id=finished_run.id).update(
            tokens_in=4311, tokens_out=299, model="demo/scripted"
        )
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        words = text(html)
        assert "4 done 0 running 0 queued 0 failed of 4 agents" in words
        assert "tokens in 4,311" in words and "tokens out 299" in words and "tok/s" in words
        assert re.search(r'data-testid="run-elapsed"[^>]*>\d+\.\d s<', html)
        assert 'data-testid="run-started"' in html and 'data-testid="run-finished"' in html
        assert 'data-testid="demo-chip"' in html

    def test_a_queued_agent_says_its_place_in_words(self, alice, target_dir):
        """Two claimed steps of one owner wait for a slot: the first has the owner's place in
        the line, the second is next after it: each says its own place."""
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        claimed = scheduler.claim_steps("w", 10, run_id=run.id)
        assert len(claimed) == 2
        for step_id in claimed:  # no slot is free: both join the model's line, in claim order
            assert not scheduler.try_acquire_slot(step_id, "w", run.model, 0).granted
        html = client_for(alice).get(f"/runs/{run.id}/").content.decode()
        assert html.count(">waiting for a model slot</span>") == 2
        assert ">1st in line</span>" in html and ">2nd in line</span>" in html
        assert ">for Correctness, Security</span>" in html  # the synthesizer
        assert "#0" not in text(html), "no attempt numbers for agents that never ran"

    def test_every_row_carries_every_metric(self, alice, finished_run):
        """Elapsed, first token, tokens in and out, tok/s and tool calls, labelled."""
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        rows = html.split('class="agent-row')[1:]
        assert len(rows) == 4
        for row in rows:
            for metric in ("m-elapsed", "m-ttft", "m-in", "m-out", "m-rate", "m-tools"):
                assert metric in row
            assert "first token" in row and "tok/s" in row and "tools" in row

    def test_the_timeline_has_a_lane_per_agent_and_marks_the_critical_path(
        self, alice, finished_run
    ):
        """Server-rendered: four lanes; the critical path named, ending with the validator."""
        html = client_for(alice).get(f"/runs/{finished_run.id}/").content.decode()
        assert html.count('data-testid="lane"') == 4
        path = re.search(r'data-testid="critical-path">(.*?)</p>', html, re.S)
        assert path and text(path.group(1)).strip().startswith("Critical path Security")
        assert "→ Synthesizer → Validator" in text(path.group(1))
        assert html.index('id="run-timeline"') < html.index('class="agents"')

    def test_a_cancelled_run_offers_to_retry_its_cancelled_agents(self, alice, bob, target_dir):
        """The button reruns only what was cancelled; the rest is kept. Only the owner."""
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        [first, _] = scheduler.claim_steps("w", 10, run_id=run.id)
        scheduler.finish_step(first, "w", succeeded=True, output="kept")
        services.cancel_run(run.id)
        html = client_for(alice).get(f"/runs/{run.id}/").content.decode()
        assert 'data-testid="retry-cancelled"' in html
        assert client_for(bob).post(f"/runs/{run.id}/retry-cancelled/").status_code == 404
        assert client_for(alice).post(f"/runs/{run.id}/retry-cancelled/").status_code == 204
        statuses = dict(run.steps.values_list("key", "status"))
        assert statuses == {
            "correctness": "succeeded",
            "security": "ready",
            "synthesis": "pending",
            "validation": "pending",
        }
        # Back to pending: a retried run passes its owner's active-run cap again.
        assert FlowRun.objects.get(id=run.id).status == "pending"
        # Nothing cancelled any more: a second press is refused.
        assert client_for(alice).post(f"/runs/{run.id}/retry-cancelled/").status_code == 409


@pytest.mark.django_db(transaction=True)
def test_a_live_pane_asks_for_a_longer_axis_at_most_once_a_second(connect, alice, finished_run):
    """`refresh` brings the header's parts that changed (its server clock) and the timeline;
    a flood of them brings one. The parts that did not change (the actions) are not sent."""
    FlowRun.objects.filter(id=finished_run.id).update(status="running")

    async def scenario() -> list[str]:
        communicator, connected = await connect(alice, finished_run)
        assert connected
        await communicator.receive_from(timeout=5)  # the snapshot
        for _ in range(20):
            await communicator.send_to(text_data='{"type": "refresh"}')
        got = [await communicator.receive_from(timeout=5)]
        await asyncio.sleep(0.5)
        while not await communicator.receive_nothing(timeout=0.2):
            got.append(await communicator.receive_from())
        await communicator.disconnect()
        return got

    got = asyncio.run(scenario())
    assert len(got) == 1
    assert 'id="run-clock"' in got[0] and 'id="run-timeline"' in got[0]
    assert 'id="run-header"' not in got[0] and 'id="run-actions"' not in got[0]


@pytest.mark.django_db
class TestWorkspaceMemory:
    def test_a_launched_pane_and_each_project_survive_a_reload(self, alice, target_dir):
        """Launch from the workspace, set the Coder's project: the next visit shows both."""
        client = client_for(alice)
        response = client.post(
            "/launch/", {"flow": "code-review", "target": str(target_dir), "origin": "slash"}
        )
        assert response.status_code == 201
        run_id = response.json()["id"]
        assert f'data-run="{run_id}"' in response.json()["pane"]
        assert (
            client.post("/workspace/layout/", {"pane": "coder", "target": "/srv/x"}).status_code
            == 204
        )
        html = client.get("/workspace/").content.decode()
        assert f'data-run="{run_id}"' in html and f"/runs/{run_id}/?embed=1" in html
        assert 'value="/srv/x" data-testid="coder-target"' in html

    def test_closing_a_pane_forgets_it_but_leaves_its_run_alone(self, alice, target_dir):
        """Closed panes do not come back; the run is untouched."""
        client = client_for(alice)
        run_id = client.post("/launch/", {"flow": "research", "target": str(target_dir)}).json()[
            "id"
        ]
        assert client.post("/workspace/layout/", {"close": run_id}).status_code == 204
        assert run_id not in client.get("/workspace/").content.decode()
        assert FlowRun.objects.get(id=run_id).status == "pending"

    def test_at_most_eight_panes_are_remembered_newest_first(self, alice, target_dir):
        """The oldest falls off the list."""
        client = client_for(alice)
        ids = [
            client.post("/launch/", {"flow": "research", "target": str(target_dir)}).json()["id"]
            for _ in range(MAX_OPEN_PANES + 2)
        ]
        remembered = [str(r) for r in WorkspaceLayout.objects.get(owner=alice).open_runs]
        assert remembered == ids[::-1][:MAX_OPEN_PANES]

    def test_bad_layout_input_is_refused_and_stores_nothing(self, alice):
        """Unknown panes, control bytes, NULs, huge paths, non-ids: 400 with a sentence."""
        client = client_for(alice)
        bad = [
            {"pane": "admin", "target": "/x"},
            {"pane": "chat", "target": "/x\x00y"},
            {"pane": "chat", "target": "/x\x1b[2Jy"},
            {"pane": "chat", "target": "/x\u202ey"},
            {"pane": "chat", "target": "/" + "a" * 5000},
            {"close": "../../etc/passwd"},
            {"close": ""},
            {},
        ]
        for data in bad:
            response = client.post("/workspace/layout/", data)
            assert response.status_code == 400, data
            assert response.content
        layout = WorkspaceLayout.objects.filter(owner=alice).first()
        assert layout is None or layout.targets == {}

    def test_another_persons_runs_never_open_in_my_workspace(self, alice, bob, target_dir):
        """A layout naming someone else's run (or a deleted one) shows nothing of it."""
        theirs = launch_run(flow="research", target=str(target_dir), owner=bob)
        WorkspaceLayout.objects.create(owner=alice, open_runs=[theirs.id, uuid.uuid4()])
        html = client_for(alice).get("/workspace/").content.decode()
        assert str(theirs.id) not in html

    def test_the_layout_needs_a_login_and_the_csrf_token(self, alice):
        """Anonymous: sent to log in; no token: refused."""
        assert (
            Client().post("/workspace/layout/", {"pane": "chat", "target": "/x"}).status_code == 302
        )
        client = Client(enforce_csrf_checks=True)
        client.force_login(alice)
        assert (
            client.post("/workspace/layout/", {"pane": "chat", "target": "/x"}).status_code == 403
        )


@pytest.mark.django_db
class TestChat:
    def test_a_report_sent_to_chat_is_whole_rendered_sanitised_and_links_back(
        self, alice, finished_run
    ):
        """No ellipsis, headings rendered, no markup from the model, a link to the run."""
        long_tail = "Last line of a very long report."
        FlowRun.objects.filter(id=finished_run.id).update(
            report=finished_run.report + "\n\n" + "filler " * 400 + "\n\n" + long_tail
        )
        client = client_for(alice)
        assert client.post(f"/runs/{finished_run.id}/send-to-chat/").status_code == 200
        html = client.get("/workspace/chat/").content.decode()
        assert long_tail in html and "…" not in html
        assert "<h2>Summary</h2>" in html
        assert "<img" not in html and "onerror" not in html.replace("onerror=alert", "")
        assert f'href="/runs/{finished_run.id}/"' in html
        assert "<html" not in html

    def test_a_message_about_a_run_i_cannot_see_has_no_link(self, alice, bob, target_dir):
        """Links only lead to runs the reader may open."""
        theirs = launch_run(flow="research", target=str(target_dir), owner=bob)
        ChatMessage.objects.create(owner=alice, run=theirs, text="## Hi")
        html = client_for(alice).get("/workspace/chat/").content.decode()
        assert "<h2>Hi</h2>" in html and str(theirs.id) not in html


@pytest.mark.django_db
class TestHistoryAndEdges:
    def test_an_empty_search_says_nothing_matched_not_that_there_are_no_runs(
        self, alice, finished_run
    ):
        """Filters that match nothing offer to clear them; a new user is told how to start."""
        client = client_for(alice)
        words = text(client.get("/runs/?q=zebra").content.decode())
        assert "No runs match these filters" in words and "No runs yet" not in words
        fresh = client_for(type(alice).objects.create_user("dora", password="dora-pass-123"))
        assert "No runs yet" in text(fresh.get("/runs/").content.decode())

    def test_demo_runs_are_marked_in_the_history(self, alice, finished_run):
        """The demo chip, only on runs of the scripted model."""
        client = client_for(alice)
        assert "chip-demo" not in client.get("/runs/").content.decode()
        FlowRun.objects.filter(id=finished_run.id).update(model="demo/scripted")
        assert "chip-demo" in client.get("/runs/").content.decode()

    def test_an_unknown_status_in_the_address_is_said_not_silently_ignored(
        self, alice, finished_run
    ):
        client = client_for(alice)
        words = text(client.get("/runs/?status=bogus").content.decode())
        assert "There is no status “bogus”; showing runs of any status." in words
        assert 'data-testid="history-run"' in client.get("/runs/?status=bogus").content.decode()
        assert "There is no status" not in text(client.get("/runs/?status=").content.decode())

    def test_the_403_page_says_only_the_refusal(self, alice, finished_run):
        """A run whose directory was taken back: its sentence, and no hint to reload."""
        FlowRun.objects.filter(id=finished_run.id).update(
            target="/elsewhere", target_real_path="/elsewhere"
        )
        response = client_for(alice).get(f"/runs/{finished_run.id}/export.md")
        assert response.status_code == 403
        words = text(response.content.decode())
        assert "You no longer have access to the project directory of this run." in words
        assert "reload" not in words.lower() and "try again" not in words

    def test_unknown_pages_get_the_styled_404(self, alice):
        """Not Django's bare page: the app's, with a way back."""
        response = client_for(alice).get("/no/such/page/")
        assert response.status_code == 404
        assert 'data-testid="error-page"' in response.content.decode()
        assert "/workspace/" in response.content.decode()

    def test_the_500_page_renders_with_nothing_from_the_request(self):
        """Rendered without context (the database may be the problem)."""
        html = render_to_string("500.html")
        assert "Something went wrong" in html and "app.css" in html

    def test_the_login_page_names_a_createsuperuser_command_that_works(self):
        """`make user`, or this interpreter (the one with the dependencies) and manage.py."""
        words = text(Client().get("/login/").content.decode())
        assert "make user" in words
        command = re.search(r"\(or (\S+) manage\.py createsuperuser ?\)", words)
        assert command and command.group(1) != "python"
        result = subprocess.run(
            [*command.group(1).split(), "-c", "import django"], cwd=ROOT, capture_output=True
        )
        assert result.returncode == 0


@pytest.mark.django_db
class TestAdmin:
    def test_a_runs_admin_page_shows_steps_first_and_no_save_button(
        self, django_user_model, finished_run
    ):
        """View-only: Close, no Save; the steps table before the run's fields."""
        admin = django_user_model.objects.create_superuser("root", "r@example.com", "root-pass-1")
        html = (
            client_for(admin).get(f"/admin/runs/flowrun/{finished_run.id}/change/").content.decode()
        )
        assert 'name="_save"' not in html and 'name="_continue"' not in html
        assert html.index("Flow steps") < html.index("Outcome") < html.index("Report data")
        assert "open the run" in html


def launch_research(
    target: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`manage.py launch_flow research --target TARGET` as a real process."""
    command = [sys.executable, "manage.py", "launch_flow", "research", "--target", str(target)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.django_db(transaction=True)
class TestLaunchFlowOnAFreshDatabase:
    def test_an_unmigrated_database_gets_one_sentence_not_a_traceback(self, target_dir, tmp_path):
        """A real process on an empty PostgreSQL database: exit 1, the command to run."""
        from django.db import connection

        name = f"test_empty_{uuid.uuid4().hex[:8]}"
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            env = manage_env(
                ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path), DATABASE_URL=database_url(name)
            )
            result = launch_research(target_dir, env, timeout=60)
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert "the database has no tables yet" in result.stderr and "make migrate" in result.stderr

    @pytest.mark.slow
    def test_a_fresh_embedded_database_is_migrated_there_and_then_and_stops_on_request(
        self, target_dir, tmp_path
    ):
        """No DATABASE_URL: a real embedded PostgreSQL is started, migrated and the run
        launched; `python -m orchestrator_site.embedded_db stop` then stops it."""
        var = Path(tempfile.mkdtemp(prefix="orchestrator-var-"))
        var.chmod(0o755)  # as root, the server runs as its own user and must reach its data
        env = manage_env(ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path), ORCHESTRATOR_VAR_DIR=str(var))
        env.pop("DATABASE_URL")
        try:
            result = launch_research(target_dir, env, timeout=180)
            assert result.returncode == 0, result.stderr
            assert "Setting up the embedded database first" in result.stderr
            assert uuid.UUID(result.stdout.strip().splitlines()[-1])
        finally:
            stop = subprocess.run(
                [sys.executable, "-m", "orchestrator_site.embedded_db", "stop"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            shutil.rmtree(var, ignore_errors=True)
        assert stop.stdout.startswith("Stopped the embedded PostgreSQL"), stop.stdout + stop.stderr
