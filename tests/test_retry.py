"""Retrying a failed agent re-runs it and everything downstream for real, with its new output."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runs.demo.faults import FaultPlan, fault_plan
from runs.demo.scripts import marker
from runs.engine.queue import scheduler
from runs.engine.worker import Engine
from runs.models import AgentSession, FlowRun, RunStatus, StepStatus
from runs.services import launch_run

pytestmark = pytest.mark.django_db(transaction=True)


def run_engine(run: FlowRun) -> FlowRun:
    asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 60))
    run.refresh_from_db()
    return run


def requests_of(server: Any, kind: str) -> list[dict[str, Any]]:
    return [body for body in server.requests if marker(body, "Step kind") == kind]


def prompt_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


@pytest.fixture
def failed_security_run(settings: Any, scripted_model: Any, target_dir: Path) -> FlowRun:
    """A code review whose security agent failed on HTTP 500s while its dependants finished."""
    settings.ORCHESTRATOR_RETRY_SECONDS = 0.5
    subprocess.run(["git", "init", "-q", str(target_dir)], check=True)
    scripted_model.faults = fault_plan("http_500:role=security")
    run = run_engine(launch_run(flow="code-review", target=str(target_dir)))
    assert run.steps.get(key="security").status == StepStatus.FAILED
    assert "security" in run.report_data["failed_agents"]
    assert run.steps.get(kind="synthesizer").status == StepStatus.SUCCEEDED
    scripted_model.faults = FaultPlan()  # the server is well again
    return run


def test_a_retried_agent_reruns_its_dependants_with_its_new_output(
    scripted_model: Any, failed_security_run: FlowRun
) -> None:
    """The synthesizer and validator ask the model again, and the synthesizer's prompt carries
    the retried agent's findings; the report has them and no longer names it as failed."""
    run = failed_security_run
    synth_before = len(requests_of(scripted_model, "synthesizer"))
    validator_before = len(requests_of(scripted_model, "validator"))

    assert scheduler.retry_step(run.id, "security")
    run = run_engine(run)

    security = run.steps.get(key="security")
    assert security.status == StepStatus.SUCCEEDED, security.error
    finding = next(line for line in security.output.splitlines() if line.startswith("- **"))
    synth_asked = requests_of(scripted_model, "synthesizer")[synth_before:]
    assert synth_asked, "the synthesizer made no new model call"
    assert any(security.output.strip() in prompt_text(body) for body in synth_asked)
    assert len(requests_of(scripted_model, "validator")) > validator_before
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "security" not in run.report_data["failed_agents"]
    assert finding.split("`")[1] in run.report  # its first finding's citation, path:line
    assert run.report_data["target_state"] == "target unchanged during the run"
    synthesizer = run.steps.get(kind="synthesizer")
    assert synthesizer.sessions.order_by("-attempt").first().resumed_from_turn == 0


def test_three_retries_in_a_row_each_run_afresh(
    settings: Any, scripted_model: Any, failed_security_run: FlowRun
) -> None:
    """The attempt cap counts per retry: a third retry of an agent the server keeps failing
    asks the model again, instead of "gave up after N attempts without an outcome"; each
    retry's attempt keeps its own tokens and adds to what every attempt spent."""
    settings.ORCHESTRATOR_MAX_ATTEMPTS = 1
    scripted_model.faults = fault_plan("http_500:role=security")
    run = failed_security_run
    security = run.steps.get(key="security")
    for round_ in range(1, 4):
        asked = scripted_model.faults.hits()["http_500:role=security"]
        synth_calls = len(requests_of(scripted_model, "synthesizer"))
        assert scheduler.retry_step(run.id, "security"), f"retry {round_} refused"
        run = run_engine(run)
        security.refresh_from_db()
        assert security.status == StepStatus.FAILED
        assert "500" in security.error and "gave up" not in security.error, security.error
        assert scripted_model.faults.hits()["http_500:role=security"] > asked, round_
        assert len(requests_of(scripted_model, "synthesizer")) > synth_calls, round_
        assert security.attempt == round_ + 1 and security.attempts_this_retry == 1

    scripted_model.faults = FaultPlan()
    spent_before = security.tokens_spent_out
    assert scheduler.retry_step(run.id, "security")
    run = run_engine(run)
    security.refresh_from_db()
    assert security.status == StepStatus.SUCCEEDED, security.error
    latest = AgentSession.objects.filter(step=security).order_by("-attempt").first()
    assert latest is not None and latest.attempt == 5
    assert security.tokens_in == latest.tokens_in  # kept: this attempt's turns only
    assert security.tokens_spent_out == spent_before + security.tokens_out
    assert not security.truncated
    assert run.report_data["target_state"] == "target unchanged during the run"
