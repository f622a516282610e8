"""A run's state tells the truth at every door: a report written while some agents failed is
"finished with failures" (never a green "succeeded"), and "running" means an agent runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from runs import labels
from runs.engine.queue import scheduler
from runs.management.commands.launch_flow import EXIT_AGENTS_FAILED, EXIT_RUN_FAILED, exit_code
from runs.models import ChatMessage, FlowRun, FlowStep, RunStatus, StepPhase, StepStatus
from runs.services import launch_run

WORDS = "finished with failures"


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
class TestFinishedWithFailures:
    def test_the_report_is_written_and_the_run_says_an_agent_failed(self, run_with_a_failed_agent):
        run = run_with_a_failed_agent
        assert run.status == RunStatus.FINISHED_WITH_FAILURES
        assert run.report and run.finished_at is not None and run.is_finished
        assert run.failed_agents == 1
        assert labels.run_state(run).text == f"{WORDS} (1 agent failed)"

    def test_a_run_whose_agents_all_succeeded_still_succeeds(self, finished_run):
        assert finished_run.status == RunStatus.SUCCEEDED
        assert labels.run_state(finished_run).text == "succeeded"

    def test_the_pane_badges_it_amber_with_the_count(self, alice, run_with_a_failed_agent):
        html = logged_in(alice).get(f"/runs/{run_with_a_failed_agent.id}/").content.decode()
        assert 'class="badge badge-finished_with_failures' in html
        assert (
            ">Finished with failures</span>"
            '<span class="hint" data-testid="run-detail">1 agent failed</span>'
        ) in html
        assert ">Succeeded<" not in html

    def test_the_history_shows_it_and_filters_by_it(
        self, alice, run_with_a_failed_agent, finished_run
    ):
        client = logged_in(alice)
        everything = client.get("/runs/").content.decode()
        assert f'data-testid="history-status">{WORDS}</span>' in everything
        assert f'<option value="finished_with_failures">{WORDS}</option>' in everything
        only = client.get("/runs/?status=finished_with_failures").context["rows"]
        assert [row["run"].id for row in only] == [run_with_a_failed_agent.id]
        clean = client.get("/runs/?status=succeeded").context["rows"]
        assert [row["run"].id for row in clean] == [finished_run.id]

    def test_the_exports_and_the_chat_say_it(self, alice, run_with_a_failed_agent):
        run = run_with_a_failed_agent
        client = logged_in(alice)
        data = json.loads(client.get(f"/runs/{run.id}/export.json").content)
        assert data["run"]["status"] == "finished_with_failures"
        assert data["run"]["status_words"] == f"{WORDS} (1 agent failed)"
        assert data["run"]["failed_agents"] == 1
        markdown = client.get(f"/runs/{run.id}/export.md").content.decode()
        assert markdown.startswith(f"**Run {WORDS} (1 agent failed)**\n\n## Summary")
        assert client.post(f"/runs/{run.id}/send-to-chat/").status_code == 200
        [message] = ChatMessage.objects.filter(run=run)
        assert message.text.startswith(
            f"Orchestrator report: code-review on {run.target} ({WORDS} (1 agent failed))"
        )

    def test_the_admin_lists_it_in_the_same_words(self, django_user_model, run_with_a_failed_agent):
        admin = django_user_model.objects.create_superuser("root", password="root-pass-123")
        listing = logged_in(admin).get("/admin/runs/flowrun/").content.decode()
        assert f"{WORDS} (1 agent failed)" in listing
        assert f'<a href="?status=finished_with_failures">{WORDS}</a>' in listing
        assert "Finished With Failures" not in listing, "Django's own label for the choice"
        filtered = logged_in(admin).get("/admin/runs/flowrun/?status=finished_with_failures")
        assert f"{WORDS} (1 agent failed)" in filtered.content.decode()
        other = logged_in(admin).get("/admin/runs/flowrun/?status=succeeded").content.decode()
        assert f"{WORDS} (1 agent failed)" not in other
        unknown = logged_in(admin).get("/admin/runs/flowrun/?status=<b>x</b>")
        assert unknown.status_code == 200 and "<b>x</b>" not in unknown.content.decode()

    def test_a_run_that_finished_with_failures_is_not_compared_with_nor_compared_to(
        self, run_with_a_failed_agent
    ):
        """Its report is partial: what it did not reach would read as resolved."""
        assert run_with_a_failed_agent.report_data["comparison"] is None


@pytest.mark.django_db
class TestTheCommandLinesExitCode:
    def test_it_is_3_when_the_report_came_but_an_agent_failed(self, run_with_a_failed_agent):
        said: list[str] = []
        assert exit_code(run_with_a_failed_agent, said.append) == EXIT_AGENTS_FAILED == 3
        assert said == [f"run {WORDS} (1 agent failed): correctness (failed)"]

    def test_it_is_0_when_every_agent_succeeded(self, finished_run):
        said: list[str] = []
        assert exit_code(finished_run, said.append) == 0 and said == []

    def test_it_is_1_when_there_is_no_final_report(self, finished_run):
        FlowRun.objects.filter(id=finished_run.id).update(status=RunStatus.CANCELLED)
        finished_run.refresh_from_db()
        assert exit_code(finished_run, [].append) == EXIT_RUN_FAILED == 1


@pytest.mark.django_db
class TestRunningMeansSomethingRuns:
    def steps_of(self, run: FlowRun) -> list[FlowStep]:
        return list(run.steps.all())

    def test_a_run_whose_agents_all_wait_for_a_slot_says_so(self, alice, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        claimed = scheduler.claim_steps("w", 10, run_id=run.id)
        assert claimed, "the run's specialists were claimed"
        for step_id in claimed:
            assert not scheduler.try_acquire_slot(step_id, "w", run.model, 0).granted
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING
        state = labels.run_state(run, self.steps_of(run))
        assert (state.label, state.key) == ("waiting for a model slot", "slot")
        html = logged_in(alice).get(f"/runs/{run.id}/").content.decode()
        assert 'data-label="waiting for a model slot"' in html
        assert ">Waiting for a model slot</span>" in html

    def test_it_says_running_once_one_agent_generates(self, alice, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        [first, _] = scheduler.claim_steps("w", 10, run_id=run.id)
        FlowStep.objects.filter(id=first).update(
            status=StepStatus.RUNNING, phase=StepPhase.GENERATING, holds_slot=True
        )
        run.refresh_from_db()
        assert labels.run_state(run, self.steps_of(run)).label == "running"

    def test_a_running_run_with_no_agent_claimed_is_waiting_not_running(self, alice, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        FlowRun.objects.filter(id=run.id).update(status="running", started_at=timezone.now())
        run.refresh_from_db()
        state = labels.run_state(run, self.steps_of(run))
        assert (state.label, state.detail) == ("waiting", "for a worker")

    def test_a_running_run_whose_agents_all_ended_is_writing_its_report(self, alice, target_dir):
        """Between the last agent's end and the report: not "waiting for a worker"."""
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        FlowRun.objects.filter(id=run.id).update(status="running", started_at=timezone.now())
        run.steps.update(status=StepStatus.SUCCEEDED)
        run.refresh_from_db()
        state = labels.run_state(run, self.steps_of(run))
        assert (state.label, state.detail, state.waiting) == (
            "running",
            "writing the report",
            False,
        )

    def test_a_retried_run_does_not_say_no_agent_has_started(self, alice, target_dir):
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        assert labels.run_state(run).detail == "no agent has started yet"
        FlowRun.objects.filter(id=run.id).update(started_at=timezone.now())  # ran, retried
        run.refresh_from_db()
        state = labels.run_state(run, self.steps_of(run))
        assert (state.label, state.detail) == ("pending", "retried, waiting for a worker")

    def test_a_run_held_by_its_owners_cap_waits_and_so_do_its_agents(
        self, settings, alice, target_dir
    ):
        """The row, the run and the timeline's legend agree: waiting, and why."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        launch_run(flow="code-review", target=str(target_dir), owner=alice)
        held = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        scheduler.claim_steps("w", 100)
        html = logged_in(alice).get(f"/runs/{held.id}/").content.decode()
        reason = "1 of your runs is active"
        assert 'data-testid="run-status"' in html and ">Waiting</span>" in html
        assert html.count(f'data-testid="step-words">{reason}</span>') == 2  # the specialists
        assert "ready, waiting for a worker" not in html
        assert labels.STRETCH_WORDS["waiting"].startswith("waiting")
