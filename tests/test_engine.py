"""The engine in-process against the scripted model over real HTTP: whole runs, end to end."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from runs.demo.faults import fault_plan
from runs.engine.dbthread import close_pool
from runs.engine.worker import HEARTBEAT_SECONDS, Engine
from runs.models import AgentEvent, AgentSession, FlowStep, RunStatus, StepStatus
from runs.services import cancel_run, launch_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_code_review_runs_end_to_end_and_cites_real_lines(
    run_to_end, scripted_model, target_dir: Path
):
    """Every agent succeeds once; the report leads with Summary and Confidence and cites code."""
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir), focus="security"))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.report.startswith("## Summary\n")
    assert "## Confidence: " in run.report.split("\n\n")[1]
    assert "app/settings.py:" in run.report or "app/views.py:" in run.report
    steps = list(run.steps.all())
    assert {s.status for s in steps} == {StepStatus.SUCCEEDED}
    assert all(s.attempt == 1 and s.sessions.count() == 1 for s in steps)
    assert all(s.tokens_out > 0 and s.first_token_at is not None for s in steps)
    specialists = [s for s in steps if s.kind == "specialist"]
    assert specialists, "a code review has specialists"
    assert all(s.tool_calls >= 2 for s in specialists)
    assert run.tokens_out == sum(s.tokens_out for s in steps)


def test_events_are_persisted_in_batches_with_gap_free_sequences(
    run_to_end, scripted_model, target_dir
):
    """Tokens are merged before they are written, and seq runs 1..N per session."""
    run = run_to_end(launch_run(flow="research", target=str(target_dir)))
    sessions = AgentSession.objects.filter(step__run=run)
    assert sessions.count() == run.steps.count() > 0, "each step ran one session"
    for session in sessions:
        seqs = list(session.events.values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    kinds = set(AgentEvent.objects.filter(step__run=run).values_list("kind", flat=True))
    assert {"text", "reasoning", "tool_call", "tool_result", "status"} <= kinds
    text_events = AgentEvent.objects.filter(step__run=run, kind="text").count()
    assert text_events < run.tokens_out / 2, "text must be coalesced, not one row per token"


def test_a_model_fault_on_one_agent_fails_that_agent_and_the_report_says_so(
    run_to_end, settings, scripted_model, target_dir
):
    """Retries for the retry budget, then a clear step error; the run still reports, with
    capped confidence."""
    settings.ORCHESTRATOR_RETRY_SECONDS = 1.0
    scripted_model.faults = fault_plan("http_500:role=security")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    assert security.status == StepStatus.FAILED
    assert "500" in security.error
    assert run.status == RunStatus.FINISHED_WITH_FAILURES
    assert run.confidence in {"medium", "low"}
    assert "security" in run.report_data["failed_agents"]
    retries = AgentEvent.objects.filter(step=security, kind="status", payload__state="retrying")
    assert retries.count() >= 1


def test_a_transient_fault_is_retried_and_the_agent_succeeds(
    run_to_end, scripted_model, target_dir
):
    """One dropped stream costs a retry, not the step."""
    scripted_model.faults = fault_plan("drop_mid_stream:role=correctness:times=1")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED
    assert run.steps.get(key="correctness").status == StepStatus.SUCCEEDED


def test_fast_mode_caps_a_looping_agent(run_to_end, scripted_model, target_dir):
    """A model that only ever calls tools is stopped by fast mode's turn and tool caps."""
    scripted_model.faults = fault_plan("loop_tool:role=security")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir), fast=True))
    security = run.steps.get(key="security")
    session = security.sessions.get()
    assert session.turns_completed <= 4
    assert security.tool_calls <= 6
    last_request = [r for r in scripted_model.requests if "Agent role: security" in str(r)][-1]
    # The final turn asks for an answer; the tools stay in the prompt for the server's cache.
    assert last_request.get("tool_choice") == "none", "the final turn allows no tool call"
    assert last_request["tools"] == scripted_model.requests[0]["tools"]
    assert run.status in {RunStatus.SUCCEEDED, RunStatus.FINISHED_WITH_FAILURES, RunStatus.FAILED}


def test_cancel_stops_running_agents_before_their_answers_finish(
    run_to_end, settings, scripted_model, target_dir
):
    """Cancelling a live run stops its streaming agents quickly and starts nothing new."""
    scripted_model.token_rate = 5.0  # slow enough that the agents are mid-stream
    run = launch_run(flow="code-review", target=str(target_dir))
    stopped: dict[str, Any] = {}

    def cancel_when_streaming() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if FlowStep.objects.filter(run=run, status=StepStatus.RUNNING).exists():
                break
            time.sleep(0.05)
        stopped["at"] = time.monotonic()
        stopped["answers"] = len(scripted_model.timings)
        stopped["running"] = set(
            FlowStep.objects.filter(run=run, status=StepStatus.RUNNING).values_list("id", flat=True)
        )
        cancel_run(run.id)
        connection.close()

    canceller = threading.Thread(target=cancel_when_streaming)
    canceller.start()
    run = run_to_end(run)
    took = time.monotonic() - stopped["at"]
    canceller.join()
    print(f"engine stopped {took:.2f}s after the cancel")
    assert run.status == RunStatus.CANCELLED
    assert stopped["running"], "agents were streaming when the run was cancelled"
    # At 5 tokens a second no answer in flight could end on its own before the engine
    # stopped it: the count of finished answers is the one at the cancel.
    assert len(scripted_model.timings) == stopped["answers"]
    assert set(run.steps.filter(id__in=stopped["running"]).values_list("status", flat=True)) == {
        StepStatus.CANCELLED
    }
    assert not run.steps.filter(status__in=["queued", "running", "ready"]).exists()
    assert run.steps.get(key="synthesis").status == StepStatus.CANCELLED


def test_the_heartbeat_stops_lost_agents_but_not_one_recording_its_outcome(finished_run):
    """A step's lease ends with its outcome, while its agent still tells the viewers: the
    heartbeat cancelled such agents and cut off the stream's last events (found by the soak)."""
    finishing, lost = finished_run.steps.order_by("id")[:2]  # neither is leased any more

    async def scenario() -> tuple[bool, bool]:
        engine = Engine()
        agents = {step.id: asyncio.create_task(asyncio.sleep(5)) for step in (finishing, lost)}
        engine.tasks.update(agents)
        engine.finishing(finishing.id)
        beat = asyncio.create_task(engine._heartbeat_forever())
        await asyncio.sleep(3 * HEARTBEAT_SECONDS)
        beat.cancel()
        cancelled = agents[finishing.id].cancelled(), agents[lost.id].cancelled()
        for agent in agents.values():
            agent.cancel()
        await asyncio.to_thread(close_pool)
        return cancelled

    finishing_cancelled, lost_cancelled = asyncio.run(scenario())
    assert lost_cancelled, "an agent whose step is no longer its own is stopped"
    assert not finishing_cancelled, "an agent recording its outcome finishes by itself"
