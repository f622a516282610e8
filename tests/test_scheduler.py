"""The scheduler's transactions, driven one call at a time (no model, no worker)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from devtools.testing import finish_step
from runs import services
from runs.engine.agent.context import Start, checkpoint, open_attempt
from runs.engine.agent.counters import Counters
from runs.engine.queue import scheduler
from runs.models import FlowRun, FlowStep, RunStatus, StepStatus
from runs.services import launch_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(target_dir: Path) -> FlowRun:
    return launch_run(flow="code-review", target=str(target_dir))


def statuses(run: FlowRun) -> dict[str, str]:
    return {s.key: s.status for s in run.steps.all()}


def claim_all(worker: str, run: FlowRun) -> dict[str, int]:
    ids = scheduler.claim_steps(worker, 10, run_id=run.id)
    return {FlowStep.objects.get(id=i).key: i for i in ids}


def test_only_ready_steps_are_claimed_and_the_run_starts(run: FlowRun):
    """Specialists go first; the synthesizer waits for them."""
    claimed = claim_all("w1", run)
    assert set(claimed) == {"correctness", "security"}
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert statuses(run)["correctness"] == StepStatus.QUEUED
    assert FlowStep.objects.get(id=claimed["security"]).attempt == 1


def test_a_claimed_step_is_not_claimed_by_another_worker(run: FlowRun):
    """Claims are exclusive while the lease lives."""
    assert claim_all("w1", run)
    assert claim_all("w2", run) == {}


def test_finishing_the_specialists_readies_the_synthesizer_then_the_validator(run: FlowRun):
    """Dependants become ready in the same transaction that finishes their last dependency."""
    claimed = claim_all("w1", run)
    assert finish_step(claimed["correctness"], "w1", succeeded=True, output="a")
    assert statuses(run)["synthesis"] == StepStatus.PENDING
    assert finish_step(claimed["security"], "w1", succeeded=True, output="b")
    assert statuses(run)["synthesis"] == StepStatus.READY
    synth = claim_all("w1", run)["synthesis"]
    findings = (
        "## Findings\n- x `app/views.py:6` — `return subprocess.run(cmd, shell=True)`\n"
        "- y `app/views.py:5` — `# TODO: validate the command before running it`\n"
        "- z `app/views.py:1` — `import subprocess`"
    )
    finish_step(synth, "w1", succeeded=True, output=findings)
    validation = claim_all("w1", run)["validation"]
    finish_step(
        validation,
        "w1",
        succeeded=True,
        output="Summary: One finding.\nConfidence: high\nReasons: cited",
    )
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.report.startswith("## Summary\nOne finding.")
    assert "## Confidence: high" in run.report
    assert "## Method" in run.report


def test_a_failed_specialist_lets_the_synthesizer_run_and_caps_confidence(run: FlowRun):
    """The report still comes, says which agent failed, and cannot claim high confidence."""
    claimed = claim_all("w1", run)
    finish_step(claimed["correctness"], "w1", succeeded=False, error="model down")
    finish_step(claimed["security"], "w1", succeeded=True, output="x")
    assert statuses(run)["synthesis"] == StepStatus.READY
    synth = claim_all("w1", run)["synthesis"]
    finish_step(
        synth,
        "w1",
        succeeded=True,
        output=(
            "- a `app/views.py:4` — `def run(cmd):`\n"
            "- b `app/views.py:6` — `return subprocess.run(cmd, shell=True)`\n"
            "- c `app/views.py:1` — `import subprocess`"
        ),
    )
    validation = claim_all("w1", run)["validation"]
    finish_step(
        validation, "w1", succeeded=True, output="Summary: ok.\nConfidence: high\nReasons: r"
    )
    run.refresh_from_db()
    assert run.status == RunStatus.FINISHED_WITH_FAILURES
    assert run.confidence == "medium"
    assert "correctness" in run.report_data["failed_agents"]
    assert "model down" in run.report


def test_a_failed_synthesizer_skips_the_validator_and_fails_the_run(run: FlowRun):
    """Without a report there is nothing to validate; the run says why it failed."""
    claimed = claim_all("w1", run)
    for step_id in claimed.values():
        finish_step(step_id, "w1", succeeded=True, output="x")
    synth = claim_all("w1", run)["synthesis"]
    finish_step(synth, "w1", succeeded=False, error="the model returned an empty answer")
    run.refresh_from_db()
    assert statuses(run)["validation"] == StepStatus.SKIPPED
    assert run.status == RunStatus.FAILED
    assert "synthesis (the model returned an empty answer)" in run.error
    assert run.report.startswith("## Summary\nThe run failed")


def test_an_expired_lease_is_reclaimed_as_the_next_attempt(run: FlowRun):
    """A worker that died loses its steps to any other worker, attempt N+1."""
    claimed = claim_all("dead", run)
    FlowStep.objects.filter(id__in=claimed.values()).update(
        status=StepStatus.RUNNING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    again = claim_all("alive", run)
    assert set(again) == set(claimed)
    step = FlowStep.objects.get(id=again["security"])
    assert (step.attempt, step.lease_owner, step.status) == (2, "alive", StepStatus.QUEUED)


def test_a_worker_that_lost_its_lease_cannot_complete_the_step(run: FlowRun):
    """No step is completed twice: the late finisher writes nothing."""
    claimed = claim_all("slow", run)
    FlowStep.objects.filter(id__in=claimed.values()).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    claim_all("fast", run)
    assert not finish_step(claimed["security"], "slow", succeeded=True, output="late")
    assert finish_step(claimed["security"], "fast", succeeded=True, output="mine")
    assert FlowStep.objects.get(id=claimed["security"]).output == "mine"


def test_heartbeat_keeps_live_leases_and_reports_lost_ones(run: FlowRun):
    """A cancelled step drops out of the heartbeat, which is how its agent learns to stop."""
    claimed = claim_all("w1", run)
    before = FlowStep.objects.get(id=claimed["security"]).lease_expires_at
    assert scheduler.heartbeat("w1", list(claimed.values())) == set(claimed.values())
    assert FlowStep.objects.get(id=claimed["security"]).lease_expires_at >= before
    scheduler.cancel_run(run.id)
    assert scheduler.heartbeat("w1", list(claimed.values())) == set()


def test_the_model_slot_cap_holds_across_workers_first_come_first_served(run: FlowRun):
    """With one slot, the second step waits in line and gets the slot when the first ends."""
    a = scheduler.claim_steps("w1", 1, run_id=run.id)[0]
    b = scheduler.claim_steps("w2", 1, run_id=run.id)[0]
    first = scheduler.try_acquire_slot(a, "w1", run.model, 1)
    second = scheduler.try_acquire_slot(b, "w2", run.model, 1)
    assert first.granted and not second.granted
    assert second.position == 1
    finish_step(a, "w1", succeeded=True, output="x")
    assert scheduler.try_acquire_slot(b, "w2", run.model, 1).granted


def test_a_dead_workers_slot_is_freed_with_its_lease(run: FlowRun):
    """An expired lease stops counting against the cap."""
    a, b = scheduler.claim_steps("w1", 2, run_id=run.id)
    assert scheduler.try_acquire_slot(a, "w1", run.model, 1).granted
    assert not scheduler.try_acquire_slot(b, "w1", run.model, 1).granted
    FlowStep.objects.filter(id=a).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert scheduler.try_acquire_slot(b, "w1", run.model, 1).granted


def test_cancel_stops_everything_that_has_not_finished(run: FlowRun):
    """Nothing new starts after a cancel and the run says so."""
    claimed = claim_all("w1", run)
    finish_step(claimed["security"], "w1", succeeded=True, output="x")
    assert services.cancel_run(run.id)
    assert statuses(run) == {
        "correctness": StepStatus.CANCELLED,
        "security": StepStatus.SUCCEEDED,
        "synthesis": StepStatus.CANCELLED,
        "validation": StepStatus.CANCELLED,
    }
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert "cancelled" in run.report
    assert claim_all("w1", run) == {}
    assert not services.cancel_run(run.id)


def test_retry_reruns_a_failed_step_and_what_depends_on_it_only(run: FlowRun):
    """The successful sibling keeps its output; the failed one and the spine run again."""
    claimed = claim_all("w1", run)
    finish_step(claimed["correctness"], "w1", succeeded=False, error="boom")
    finish_step(claimed["security"], "w1", succeeded=True, output="kept")
    finish_step(claim_all("w1", run)["synthesis"], "w1", succeeded=True, output="r")
    finish_step(claim_all("w1", run)["validation"], "w1", succeeded=True, output="v")
    assert scheduler.retry_step(run.id, "correctness")
    assert statuses(run) == {
        "correctness": StepStatus.READY,
        "security": StepStatus.SUCCEEDED,
        "synthesis": StepStatus.PENDING,
        "validation": StepStatus.PENDING,
    }
    assert FlowStep.objects.get(run=run, key="security").output == "kept"
    run.refresh_from_db()
    assert run.status == RunStatus.PENDING and run.report == ""  # through the cap again
    assert not scheduler.retry_step(run.id, "security")


def test_a_retry_starts_the_step_afresh_and_a_lost_lease_resumes_it(run: FlowRun):
    """After a lost lease the next attempt continues the same transcript (resume); after a
    retry it gets a new one from the current upstream outputs, zero kept counters, the spent
    ones carried, `truncated` cleared and the attempt cap counted from the retry."""
    claimed = claim_all("w1", run)
    ctx = open_attempt(FlowStep.objects.get(id=claimed["correctness"]), run, "w1")
    assert ctx.start is Start.FRESH
    said = [*ctx.transcript, {"role": "assistant", "content": "old answer"}]
    checkpoint(ctx, said, Counters(turns=1, tokens_in=50, tokens_out=7, last_tool="grep"))
    FlowStep.objects.filter(id=ctx.step_id).update(lease_expires_at=timezone.now())
    claim_all("w2", run)
    resumed = open_attempt(FlowStep.objects.get(id=ctx.step_id), run, "w2")
    assert resumed.start is Start.RESUME and resumed.transcript == said
    assert (resumed.attempt, resumed.counters.tokens_in) == (2, 50)

    finish_step(ctx.step_id, "w2", succeeded=False, error="the server kept failing")
    finish_step(claimed["security"], "w1", succeeded=True, output="security said this")
    synthesis_id = claim_all("w1", run)["synthesis"]
    finish_step(synthesis_id, "w1", succeeded=True, output="cut", truncated=True)
    finish_step(claim_all("w1", run)["validation"], "w1", succeeded=True, output="v")
    assert scheduler.retry_step(run.id, "correctness")
    step = FlowStep.objects.get(id=ctx.step_id)
    assert (step.error, step.tokens_in, step.tokens_spent_in, step.last_tool) == ("", 0, 50, "")
    assert (step.attempt, step.attempt_base, step.attempts_this_retry) == (2, 2, 0)
    synthesis = FlowStep.objects.get(id=synthesis_id)
    assert (synthesis.status, synthesis.truncated, synthesis.output) == ("pending", False, "")

    claim_all("w3", run)
    fresh = open_attempt(FlowStep.objects.get(id=ctx.step_id), run, "w3")
    assert fresh.start is Start.FRESH and fresh.exhausted == ""
    assert "old answer" not in str(fresh.transcript)
    assert fresh.counters == Counters(tokens_spent_in=50, tokens_spent_out=7)


def test_a_release_adds_how_long_the_grant_kept_the_slot(run: FlowRun):
    """Each grant is counted once, at its release, with the seconds from grant to release:
    the measure waits are estimated from (runs.waits). A release without a slot adds none."""
    [a] = scheduler.claim_steps("w1", 1, run_id=run.id)
    for _ in range(2):
        assert scheduler.try_acquire_slot(a, "w1", run.model, 1).granted
        FlowStep.objects.filter(id=a).update(slot_at=timezone.now() - timedelta(seconds=3))
        scheduler.release_slot(a, "w1", run.model, 1, tools="read_file")
    scheduler.release_slot(a, "w1", run.model, 1)
    step = FlowStep.objects.get(id=a)
    assert step.grants == 2
    assert 6.0 <= step.held_seconds < 60.0
    assert step.slot_at is None
