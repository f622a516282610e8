"""Status that tells the truth at every turn, in the same words everywhere (issue 10, item 4).

runs.progress owns the words; the pane's rows and the CLI's lines both come from
`step_state`. A PostgreSQL trigger records every change of a step's phase during a real run,
so the test sees each moment, not samples of it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from runs.engine.queue import scheduler
from runs.live import pane_state, render_rows
from runs.models import FlowStep, StepPhase, StepStatus
from runs.progress import snapshot, step_line, step_state
from runs.services import launch_run


def make_step(**fields: Any) -> FlowStep:
    base: dict[str, Any] = {"key": "security", "status": StepStatus.RUNNING, "attempt": 1}
    return FlowStep(**{**base, **fields})


@pytest.mark.parametrize(
    ("fields", "position", "label", "detail"),
    [
        ({"status": StepStatus.PENDING}, None, "waiting", "for its dependencies"),
        ({"status": StepStatus.READY}, None, "waiting", "for a worker"),
        ({"status": StepStatus.QUEUED}, None, "starting", "claimed by a worker"),
        # The bug: a later turn in line for a slot said "running".
        (
            {"phase": StepPhase.SLOT, "wants_slot": True},
            2,
            "waiting for a model slot",
            "2nd in line",
        ),
        (
            {"status": StepStatus.QUEUED, "phase": StepPhase.FIRST_BYTE, "holds_slot": True},
            None,
            "waiting for the server's first byte",
            "",
        ),
        ({"phase": StepPhase.GENERATING, "holds_slot": True}, None, "generating", ""),
        ({"phase": StepPhase.TOOL, "phase_note": "grep"}, None, "running a tool", "grep"),
        (
            {"phase": StepPhase.RETRYING, "phase_note": "try 1: the model server failed (500)"},
            None,
            "retrying",
            "try 1: the model server failed (500); next try in 4 s",
        ),
        (
            {"phase": StepPhase.UNAVAILABLE, "phase_note": "try 2: refused", "attempt": 2},
            None,
            "server unavailable",
            "try 2: refused; next try in 4 s; attempt 2",
        ),
        ({"status": StepStatus.FAILED, "error": "boom"}, None, "failed", "boom"),
        (
            {"status": StepStatus.SUCCEEDED, "truncated": True},
            None,
            "succeeded",
            "answer cut off at the limit",
        ),
    ],
)
def test_each_moment_of_a_step_has_its_own_words(
    fields: dict[str, Any], position: int | None, label: str, detail: str
):
    now = timezone.now()
    if fields.get("phase") in (StepPhase.RETRYING, StepPhase.UNAVAILABLE):
        fields = {**fields, "phase_until": now + timedelta(seconds=3.6)}
    state = step_state(make_step(**fields), position, now=now)
    assert (state.label, state.detail) == (label, detail)


def test_a_retry_whose_time_has_come_waits_for_the_first_byte_again():
    now = timezone.now()
    step = make_step(phase=StepPhase.RETRYING, phase_note="try 1: x", phase_until=now)
    assert step_state(step, now=now).label == "waiting for the server's first byte"


PHASE_LOG = """
    CREATE TABLE IF NOT EXISTS phase_log (
        n bigserial PRIMARY KEY, step_id bigint, status text, phase text, wants boolean,
        holds boolean, turns int
    );
    CREATE OR REPLACE FUNCTION log_phase() RETURNS trigger AS $$
    BEGIN
        IF NEW.phase IS DISTINCT FROM OLD.phase OR NEW.status IS DISTINCT FROM OLD.status THEN
            INSERT INTO phase_log (step_id, status, phase, wants, holds, turns)
            VALUES (NEW.id, NEW.status, NEW.phase, NEW.wants_slot, NEW.holds_slot,
                    NEW.tool_calls);
        END IF;
        RETURN NEW;
    END $$ LANGUAGE plpgsql;
    DROP TRIGGER IF EXISTS phase_log ON flow_steps;
    CREATE TRIGGER phase_log AFTER UPDATE ON flow_steps FOR EACH ROW EXECUTE FUNCTION log_phase();
"""


@pytest.fixture
def phase_log() -> Any:
    with connection.cursor() as cursor:
        cursor.execute(PHASE_LOG)
    yield
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS phase_log ON flow_steps; DROP TABLE phase_log")


@pytest.mark.django_db(transaction=True)
def test_a_later_turn_waiting_for_a_slot_says_so_and_never_running(
    run_to_end, settings: Any, scripted_model: Any, target_dir: Path, phase_log: Any
):
    """Two agents, one slot: every turn after the first goes through the line, and the
    words follow each moment: tool, slot, first byte, generating (quick tools give the slot
    back here: keeping it is tested in test_fairness)."""
    settings.ORCHESTRATOR_SLOTS = 1
    settings.ORCHESTRATOR_KEEP_SLOT_SECONDS = 0
    scripted_model.token_rate = 200.0
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)), timeout=120)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT step_id, status, phase, wants, holds, turns FROM phase_log ORDER BY n"
        )
        log = cursor.fetchall()
    security = run.steps.get(key="security").id
    later = [row for row in log if row[0] == security and row[5] > 0]  # after its first tools
    waits = [row for row in later if row[2] == StepPhase.SLOT]
    assert waits, "a later turn waited for the slot"
    assert all(status == StepStatus.RUNNING for _, status, *_ in waits)
    words = {
        step_state(make_step(status=status, phase=phase, wants_slot=wants, holds_slot=holds)).label
        for _, status, phase, wants, holds, _ in later
    }
    expected = {"running a tool", "waiting for a model slot", "waiting for the server's first byte"}
    assert expected | {"generating"} <= words, words
    assert "running" not in words
    print(f"{len(log)} phase changes; a later turn of security said: {sorted(words)}")


@pytest.mark.django_db
def test_the_pane_and_the_cli_say_the_same_words(target_dir: Path):
    run = launch_run(flow="code-review", target=str(target_dir))
    [first, second] = scheduler.claim_steps("w", 2, run_id=run.id)
    FlowStep.objects.filter(id=first).update(
        status=StepStatus.RUNNING, phase=StepPhase.TOOL, phase_note="grep 'password'"
    )
    FlowStep.objects.filter(id=second).update(
        status=StepStatus.RUNNING, phase=StepPhase.SLOT, wants_slot=True, line_at=timezone.now()
    )
    steps = list(run.steps.filter(id__in=[first, second]))
    pane = pane_state(run, steps)
    html = render_rows(pane, pane.rows)
    lines = snapshot(run.id).lines
    for step in steps:
        state = step_state(step, 1 if step.id == second else None)
        assert f">{state.label}" in html
        assert any(line.startswith(step.key) and state.label in line for line in lines)
    # One wording per row: the badge, then what it adds (no second phrase for the same state).
    assert ">waiting for a model slot</span>" in html and ">1st in line</span>" in html
    assert "1st in line" in step_line(FlowStep.objects.get(id=second), 1)
