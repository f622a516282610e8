"""The slot cap is a promise (issue 10, item 8): a slot is free only once its request is
closed, whatever ended it (cancel, takeover, failure), and every slot update rechecks the
step's status and lease. The scripted model counts its open requests as they arrive; through
cancels and worker kills it never sees more than the cap."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import start_manage
from runs.engine.queue import scheduler
from runs.models import FlowRun, FlowStep, RunStatus, StepStatus
from runs.services import cancel_run, launch_run

MODEL = "demo/scripted"


def lease(run: FlowRun, worker: str) -> list[int]:
    return scheduler.claim_steps(worker, 10, run_id=run.id)


@pytest.mark.django_db
def test_a_cancelled_step_keeps_its_slot_until_its_agent_gives_it_back(
    settings: Any, target_dir: Path
):
    """Cancel does not free the slot of a step whose request may still be open."""
    settings.ORCHESTRATOR_MODEL = MODEL
    first = launch_run(flow="code-review", target=str(target_dir))
    second = launch_run(flow="code-review", target=str(target_dir))
    holder, other = lease(first, "w1")
    waiter, _ = lease(second, "w2")
    assert scheduler.try_acquire_slot(holder, "w1", MODEL, 1).granted
    assert scheduler.try_acquire_slot(waiter, "w2", MODEL, 1).position == 1
    assert cancel_run(first.id)
    holding = FlowStep.objects.get(id=holder)
    assert holding.status == StepStatus.CANCELLED and holding.holds_slot
    assert not scheduler.try_acquire_slot(waiter, "w2", MODEL, 1).granted
    assert scheduler.release_slot(holder, "w1", MODEL, 1) == [waiter], "handed on once closed"
    assert FlowStep.objects.get(id=waiter).holds_slot
    # The cancelled step that held nothing has no lease left to count.
    assert FlowStep.objects.get(id=other).lease_expires_at is None


@pytest.mark.django_db
def test_slot_updates_recheck_the_steps_status_and_lease(settings: Any, target_dir: Path):
    """A cancelled step is never granted a slot nor put in line, by itself or a hand-over."""
    settings.ORCHESTRATOR_MODEL = MODEL
    run = launch_run(flow="code-review", target=str(target_dir))
    blocker_run = launch_run(flow="code-review", target=str(target_dir))
    blocker, _ = lease(blocker_run, "w0")
    assert scheduler.try_acquire_slot(blocker, "w0", MODEL, 1).granted
    first, second = lease(run, "w1")
    assert scheduler.try_acquire_slot(first, "w1", MODEL, 1).position == 1
    FlowStep.objects.filter(run=run).update(status=StepStatus.CANCELLED)  # as a cancel does
    assert scheduler.try_acquire_slot(second, "w1", MODEL, 1).position == -1
    assert not FlowStep.objects.get(id=second).wants_slot
    assert scheduler.release_slot(blocker, "w0", MODEL, 1) == [], "no hand-over to a cancelled step"
    assert not FlowStep.objects.filter(run=run, holds_slot=True).exists()


def _wait(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _streaming(run: FlowRun) -> bool:
    return FlowStep.objects.filter(run=run, status=StepStatus.RUNNING, holds_slot=True).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_model_never_sees_more_open_requests_than_slots_through_cancels_and_kills(
    worker_env, stop, settings: Any, scripted_model: Any, target_dir: Path, tmp_path: Path
):
    """Three workers, five runs, two slots, slow streams; two runs cancelled mid-stream and
    a worker killed mid-stream. Every request is counted as it arrives, beside the requests
    whose clients have not closed them yet."""
    cap = 2
    # Short, so the killed worker's steps are taken over soon; not so short that a live
    # worker starved of CPU on a loaded machine misses its renewal and has its streaming step
    # (and slot) taken over while its request is still open.
    settings.ORCHESTRATOR_LEASE_SECONDS = 4.0
    scripted_model.total_slots = cap
    scripted_model.token_rate = 12.0
    scripted_model.open_requests.reset(cap=cap)
    runs = [launch_run(flow="code-review", target=str(target_dir)) for _ in range(5)]
    env = worker_env(scripted_model.url, ORCHESTRATOR_SLOTS=str(cap))
    workers = [
        start_manage("runworker", "orchestrator.dispatch", env=env, log=tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    try:
        _wait(lambda: scripted_model.open_requests.current() == cap, 60, "the cap to fill")
        _wait(lambda: _streaming(runs[0]), 60, "run 0 to stream")
        cancel_run(runs[0].id)
        _wait(lambda: scripted_model.open_requests.current() >= 1, 30, "a stream")
        workers[0].send_signal(signal.SIGKILL)  # mid-stream, holding what it holds
        workers[0].wait(10)
        workers.append(
            start_manage("runworker", "orchestrator.dispatch", env=env, log=tmp_path / "w2.log")
        )
        _wait(lambda: _streaming(runs[3]), 90, "run 3 to stream")
        cancel_run(runs[3].id)
        _wait(
            lambda: FlowRun.objects.filter(finished_at__isnull=True).count() == 0,
            240,
            "every run to finish",
        )
    finally:
        for worker in workers:
            stop(worker)
    watched = scripted_model.open_requests
    statuses = {run.id: FlowRun.objects.get(id=run.id).status for run in runs}
    print(
        f"{watched.arrivals} requests, at most {watched.peak} open at once (cap {cap}); "
        f"runs: {sorted(statuses.values())}"
    )
    assert watched.over_cap == [], f"more than {cap} open: {watched.over_cap}"
    assert watched.peak == cap, "the cap was reached, so the test could have seen a breach"
    assert statuses[runs[0].id] == statuses[runs[3].id] == RunStatus.CANCELLED
    assert [statuses[r.id] for r in (runs[1], runs[2], runs[4])] == [RunStatus.SUCCEEDED] * 3
