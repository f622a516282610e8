"""Every model fault the scripted server can inject, through a whole run: the faulty agent
fails with a sentence saying what happened, and the run still reports, naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from runs.demo.faults import FaultKind, fault_plan
from runs.engine.worker import Engine
from runs.models import AgentEvent, FlowRun, RunStatus, StepStatus
from runs.services import LaunchError, launch_run

FAST_FAILING_DEMO = {
    "demo": {
        "slots": 4,
        "max_retries": 1,
        "backoff_base": 0.01,
        "first_byte_timeout": 0.5,
        "read_timeout": 0.5,
    }
}

FAULTS = {
    "refuse": "closed the connection without answering",
    "http_429": "busy (429",
    "http_500": "failed (500",
    "http_503": "unavailable (503",
    "stall_first_byte:seconds=2": "silent before the first byte",
    "stall_mid_stream:seconds=2": "silent mid-stream",
    "drop_mid_stream": "dropped the connection mid-stream",
    "malformed_chunk": "malformed chunk",
    "loop_tool": "kept asking for tools",
}


# Faults a run survives, each with its own tests in tests/test_model_bytes.py.
SURVIVED = {FaultKind.NUL_TEXT, FaultKind.LENGTH, FaultKind.CUT_TOOL_CALL}


def test_every_fault_the_scripted_server_can_inject_is_covered_here():
    covered = {f.split(":")[0] for f in FAULTS} | {FaultKind.BAD_TOOL_ARGS.value}
    covered |= {kind.value for kind in SURVIVED}
    assert covered == {kind.value for kind in FaultKind}
    print(f"{len(covered)} model fault kinds, each through a whole run")


def run_with_fault(settings, scripted_model, target_dir: Path, fault: str) -> FlowRun:
    settings.ORCHESTRATOR_PROVIDERS = FAST_FAILING_DEMO
    kind, *options = fault.split(":")
    scripted_model.faults = fault_plan(":".join([kind, "role=security", *options]))
    run = launch_run(flow="code-review", target=str(target_dir), fast=True)
    asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 60))
    run.refresh_from_db()
    return run


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("fault", "message"), FAULTS.items(), ids=list(FAULTS))
def test_a_persistent_model_fault_fails_only_that_agent_and_the_report_names_it(
    settings, scripted_model, target_dir: Path, fault: str, message: str
):
    """Bounded retries, a clear step error, and a report that says which lens is missing."""
    run = run_with_fault(settings, scripted_model, target_dir, fault)
    security = run.steps.get(key="security")
    assert security.status == StepStatus.FAILED
    assert message in security.error, security.error
    assert run.status == RunStatus.FINISHED_WITH_FAILURES
    assert "security" in run.report_data["failed_agents"]
    # The table cell holds the word; the reason is a line of the list under the table.
    assert "| security | failed |" in run.report
    assert f"\n- security: {' '.join(security.error.split())}\n" in run.report + "\n"
    assert run.confidence != "high"
    assert run.steps.get(key="correctness").status == StepStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_invalid_tool_arguments_come_back_to_the_model_as_an_error(
    settings, scripted_model, target_dir: Path
):
    """The tool never runs on arguments it cannot parse; the agent is told and carries on."""
    run = run_with_fault(settings, scripted_model, target_dir, "bad_tool_args")
    refused = AgentEvent.objects.filter(
        step__run=run, step__key="security", kind="tool_result", payload__ok=False
    )
    assert refused.exists()
    assert "bad arguments for grep" in refused.first().payload["content"]
    assert run.status == RunStatus.SUCCEEDED


@pytest.mark.django_db
@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flow=st.one_of(st.sampled_from(["code-review", "research"]), st.text(max_size=30)),
    band=st.one_of(st.sampled_from(["small", "large"]), st.text(max_size=10)),
    target=st.one_of(st.just("{target}"), st.text(max_size=40)),
    focus=st.text(max_size=5000),
    fast=st.booleans(),
)
def test_launch_never_fails_with_anything_but_a_clear_message_and_never_half_creates(
    target_dir: Path, flow: str, band: str, target: str, focus: str, fast: bool
):
    """Any input: a run with all its steps, or a LaunchError and no rows at all."""
    before = FlowRun.objects.count()
    try:
        run = launch_run(
            flow=flow,
            band=band,
            target=target.replace("{target}", str(target_dir)),
            focus=focus,
            fast=fast,
        )
    except LaunchError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        assert FlowRun.objects.count() == before
    else:
        assert run.steps.count() >= 4
        assert FlowRun.objects.count() == before + 1
