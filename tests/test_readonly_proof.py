"""Proof of read-only: each run's report says whether the target changed while it ran."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devtools.testing import finish_step
from runs.engine.queue import scheduler
from runs.engine.target import readonly_proof
from runs.models import FlowRun, RunStatus
from runs.services import launch_run


def finish_all(run: FlowRun) -> FlowRun:
    """Every step succeeds, as the engine would record them, then the report is written."""
    while claimed := scheduler.claim_steps("w", 10, run_id=run.id):
        for step_id in claimed:
            finish_step(step_id, "w", succeeded=True, output="- x `app/views.py:6`")
    run.refresh_from_db()
    return run


@pytest.mark.django_db(transaction=True)
def test_a_whole_run_reports_its_target_unchanged_and_keeps_its_first_snapshot(
    run_to_end, scripted_model, target_dir: Path
):
    subprocess.run(["git", "init", "-q", str(target_dir)], check=True)
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "Read-only check: target unchanged during the run." in run.report
    assert run.report_data["target_state"] == "target unchanged during the run"
    # Kept for a retry's report, which compares against the same first snapshot.
    assert run.fingerprint["digest"] and run.fingerprint["entries"]
    assert run.fingerprint["file_count"] >= 5


@pytest.mark.django_db
def test_a_file_edited_during_the_run_is_named_in_the_report(target_dir: Path):
    run = launch_run(flow="code-review", target=str(target_dir))
    readonly_proof.save_before(run.id, readonly_proof.take_fingerprint(target_dir))
    (target_dir / "app" / "views.py").write_text("changed while the run was reading\n" * 3)
    (target_dir / "new.txt").write_text("added\n")
    run = finish_all(run)
    state = run.report_data["target_state"]
    assert state.startswith("target changed during the run")
    assert "app/views.py" in state and "new.txt" in state
    assert "Read-only check: target changed during the run" in run.report


@pytest.mark.django_db
def test_the_first_fingerprint_is_kept_and_hostile_names_are_stored(target_dir: Path):
    """A later attempt never replaces the before state; odd names cannot break storage."""
    (target_dir / "bad\udcffname.py").write_bytes(b"x = 1\n")
    run = launch_run(flow="code-review", target=str(target_dir))
    first = readonly_proof.take_fingerprint(target_dir)
    readonly_proof.save_before(run.id, first)
    (target_dir / "later.txt").write_text("later\n")
    readonly_proof.save_before(run.id, readonly_proof.take_fingerprint(target_dir))
    run.refresh_from_db()
    assert run.fingerprint["digest"] == first["digest"]
    assert not readonly_proof.needs_before(run.id)


@pytest.mark.django_db
def test_a_run_started_before_fingerprints_existed_says_nothing_about_it(target_dir: Path):
    run = finish_all(launch_run(flow="code-review", target=str(target_dir)))
    assert run.report_data["target_state"] == ""
    assert "Read-only check" not in run.report
