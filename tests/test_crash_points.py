"""A worker process killed with SIGKILL at 22 named points across runs (runs/engine/crashpoints.py).

Each case: a run, a real `runworker` process that kills itself at one moment of the engine's
life, then a fresh engine that must finish the run. Every case checks the same invariants:
the run finishes; no step lost; none completed twice; each session's event seq gap-free; an
interrupted step resumes from its last checkpointed turn.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import start_manage
from runs.engine.worker import Engine
from runs.models import AgentEvent, FlowRun, RunStatus, StepStatus
from runs.services import launch_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# (flow, crash point): the small band of each flow is 2 specialists -> synthesis -> validation,
# so finish_step 1-2 are specialists, 3 the synthesizer and 4 the validator (with the report).
CRASH_POINTS = [
    ("code-review", "claim_steps:after:1"),  # claimed, nothing started
    ("code-review", "load_context:before:1"),
    ("code-review", "load_context:after:1"),  # session opened, no event yet
    ("code-review", "try_acquire_slot:after:1"),  # holding a model slot
    ("code-review", "mark_streaming:after:1"),  # first byte seen
    ("code-review", "model_chunk:after:3"),  # a few lines into the first stream
    ("research", "bulk_create:after:1"),  # first events persisted
    ("research", "tool:before:1"),  # a tool call about to run
    ("research", "tool:before:4"),
    ("research", "checkpoint:after:1"),  # a turn checkpointed
    ("investigate", "checkpoint:after:3"),
    ("investigate", "model_chunk:after:150"),  # deep in a later turn
    ("investigate", "heartbeat:after:2"),  # (streams paced, so a lease is renewed at all)
    ("investigate", "bulk_create:before:8"),  # events about to be written
    ("security-review", "finish_step:before:1"),  # a specialist's answer, not yet recorded
    ("security-review", "finish_step:after:1"),  # recorded, nobody told yet
    ("security-review", "finish_step:after:2"),  # the synthesizer just became ready
    ("code-review", "finish_step:before:3"),  # the synthesis is written, not recorded
    ("code-review", "finish_step:after:3"),  # the validator leased with the synthesis' outcome
    ("code-review", "release_slot:after:1"),  # a turn's slot given back, its tools to run
    ("code-review", "finish_step:before:4"),  # the validator done, not yet recorded
    # The last step committed, the report not yet written: only the sweep can finish the run.
    ("code-review", "finalize_run:before:1"),
]


def test_there_are_at_least_twenty_distinct_crash_points():
    assert len(set(CRASH_POINTS)) == len(CRASH_POINTS) >= 20


@pytest.mark.parametrize(("flow", "point"), CRASH_POINTS, ids=[p for _, p in CRASH_POINTS])
def test_a_worker_killed_at_this_point_loses_nothing_and_the_run_finishes(
    worker_env,
    settings: Any,
    scripted_model: Any,
    target_dir: Path,
    tmp_path: Path,
    flow: str,
    point: str,
):
    settings.ORCHESTRATOR_SWEEP_SECONDS = 0.2
    if point.startswith("heartbeat"):
        scripted_model.token_rate = 200.0  # leases are renewed every 0.5 s
    run = launch_run(flow=flow, target=str(target_dir))
    log = tmp_path / "crashing-worker.log"
    worker = start_manage(
        "runworker",
        "orchestrator.dispatch",
        env=worker_env(scripted_model.url, ORCHESTRATOR_CRASH_AT=point),
        log=log,
    )
    try:
        worker.wait(60)
    finally:
        if worker.poll() is None:
            worker.kill()
    output = log.read_text()
    assert worker.returncode == -signal.SIGKILL, output
    assert f"crash point {point} reached" in output
    before = snapshot(run)

    # A new engine (the dead worker's leases run out after 2 s) takes over the run.
    asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 60))

    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.finished_at is not None and "## Method" in run.report
    resumed = assert_nothing_lost_or_doubled(run, before)
    print(f"{point}: {run.steps.count()} steps finished, {resumed} resumed from a checkpoint")
    if point.startswith("checkpoint:after"):
        assert resumed >= 1, "a checkpointed step must continue from its turn, not restart"


def snapshot(run: FlowRun) -> dict[str, tuple[str, int]]:
    """Each step's status and attempt when the worker died."""
    return {s.key: (s.status, s.attempt) for s in run.steps.all()}


def assert_nothing_lost_or_doubled(run: FlowRun, before: dict[str, tuple[str, int]]) -> int:
    """The invariants of a crash; returns how many steps resumed from a checkpointed turn."""
    resumed = 0
    for step in run.steps.all():
        assert step.status == StepStatus.SUCCEEDED, (step.key, step.error)
        if before[step.key][0] == StepStatus.SUCCEEDED:
            assert step.attempt == before[step.key][1], f"{step.key} was finished, then rerun"
        finished = AgentEvent.objects.filter(
            step=step, kind="status", payload__state="succeeded"
        ).count()
        assert finished == 1, f"{step.key} completed {finished} times"
        sessions = list(step.sessions.order_by("attempt"))
        assert sessions and sessions[-1].attempt == step.attempt, step.key
        carried, answered = 0, False
        for session in sessions:
            seqs = list(session.events.order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1)), f"seq gap in {step.key}"
            assert session.resumed_from_turn == carried, f"{step.key} lost its turns"
            if session.resumed_from_turn:
                resumed += 1
            if answered:
                assert session.turns_completed == carried, f"{step.key} answered twice"
            if session.turns_completed:
                last = session.transcript[-1]
                answered = last["role"] == "assistant" and not last.get("tool_calls")
            carried = max(carried, session.turns_completed)
    return resumed
