"""Real processes: the CLI, a worker killed with SIGKILL and restarted, two workers at once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from devtools.testing import ROOT, manage_env, start_manage
from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep, RunStatus, StepStatus
from runs.services import launch_run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    shown = "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out waiting for {what}\n{shown}")


def assert_each_step_completed_once(run: FlowRun) -> None:
    assert run.steps.exists(), f"run {run.id} has no steps to check"
    for step in run.steps.all():
        assert step.status == StepStatus.SUCCEEDED, (step.key, step.error)
        sessions = list(step.sessions.order_by("attempt"))
        assert [s.attempt for s in sessions] == list(range(1, step.attempt + 1))
        for session in sessions:
            seqs = list(session.events.values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1)), f"gap in {step.key} #{session.attempt}"


def test_a_worker_killed_mid_run_is_replaced_and_the_step_resumes_from_its_last_turn(
    stop, worker_env, scripted_model, target_dir: Path, tmp_path: Path
):
    """kill -9 in the middle of a run: the next worker finishes it; nothing lost or doubled."""
    scripted_model.token_rate = 40.0
    run = launch_run(flow="code-review", target=str(target_dir))
    env = worker_env(scripted_model.url)
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    first = start_manage("runworker", "orchestrator.dispatch", env=env, log=logs[0])
    try:
        wait_for(
            lambda: AgentSession.objects.filter(
                step__run=run, turns_completed__gte=1, step__status=StepStatus.RUNNING
            ).exists(),
            30,
            "an agent mid-run with a completed turn",
            logs,
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        interrupted = {
            s.step.key: s.turns_completed
            for s in AgentSession.objects.filter(
                step__run=run, step__status__in=["queued", "running"]
            ).select_related("step")
        }
        assert interrupted, "something must have been in flight when the worker died"
        second = start_manage("runworker", "orchestrator.dispatch", env=env, log=logs[1])
        try:
            wait_for(lambda: FlowRun.objects.get(id=run.id).is_finished, 60, "the run", logs)
        finally:
            stop(second)
    finally:
        stop(first)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert_each_step_completed_once(run)
    for key, turns in interrupted.items():
        step = run.steps.get(key=key)
        assert step.attempt == 2, key
        resumed = step.sessions.get(attempt=2)
        assert resumed.resumed_from_turn == turns, "the retry continues from the last turn"
        assert resumed.turns_completed > turns


def test_two_workers_share_the_runs_and_never_run_a_step_twice(
    redis_url, stop, worker_env, scripted_model, target_dir: Path, tmp_path: Path
):
    """Two worker processes on one channel layer: every step runs exactly once."""
    # With Redis the workers share one channel layer (wake-ups reach both); without it each
    # has its own in-process layer and finds work by sweeping the database. Say which.
    extra = {"REDIS_URL": redis_url} if redis_url else {}
    if not redis_url:
        warnings.warn(
            "Redis missing: the two workers ran with one in-process channel layer each, not a "
            "shared Redis one (set TEST_REDIS_URL to test the shared layer)",
            stacklevel=1,
        )
    env = worker_env(
        scripted_model.url, ORCHESTRATOR_SLOTS="4", ORCHESTRATOR_WORKER_CONCURRENCY="3", **extra
    )
    runs = [launch_run(flow="code-review", target=str(target_dir), band="medium") for _ in range(3)]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [start_manage("runworker", "orchestrator.dispatch", env=env, log=log) for log in logs]
    try:
        wait_for(
            lambda: all(FlowRun.objects.get(id=r.id).is_finished for r in runs),
            90,
            "all runs",
            logs,
        )
    finally:
        for worker in workers:
            stop(worker)
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert_each_step_completed_once(run)
    assert FlowStep.objects.filter(attempt__gt=1).count() == 0
    owners = set(AgentSession.objects.values_list("worker", flat=True))
    print(f"steps were run by {len(owners)} worker(s): {sorted(owners)}")
    assert len(owners) == 2, "both workers should have taken work"


def test_launch_flow_waits_prints_live_agent_lines_and_the_report(
    manage, target_dir: Path, tmp_path
):
    """The terminal door: --wait runs the engine itself, on the auto-started demo model."""
    env = manage_env(
        ORCHESTRATOR_MODEL="demo/scripted",
        ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path),
        ORCHESTRATOR_DEMO_TOKEN_RATE="400",
    )
    out = tmp_path / "report.md"
    result = manage(
        "launch_flow",
        "investigate",
        "--target",
        str(target_dir),
        "--focus",
        "totals are wrong",
        "--wait",
        "--output",
        str(out),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "reproduction" in result.stdout and "succeeded" in result.stdout
    report = result.stdout.split("## Summary", 1)[1]
    assert "## Confidence:" in report and "## Method" in report
    assert out.read_text().startswith("## Summary")
    assert not (target_dir / "report.md").exists()


def test_launch_flow_without_wait_prints_the_run_id(manage, target_dir: Path, tmp_path):
    """Without --wait the command returns at once with the new run's id."""
    env = manage_env(ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path))
    result = manage("launch_flow", "research", "--target", str(target_dir), env=env)
    assert result.returncode == 0, result.stderr
    run = FlowRun.objects.get(id=result.stdout.strip())
    assert run.status == RunStatus.PENDING


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["launch_flow", "nope", "--target", "{t}"], "unknown flow 'nope'; valid flows:"),
        (["launch_flow", "research", "--target", "{t}", "--band", "xl"], "unknown band 'xl'"),
        (["launch_flow", "research", "--target", "/no/such/dir"], "does not exist"),
        (["launch_flow", "research", "--target", "{t}/README.md"], "is not a directory"),
        (["launch_flow", "research", "--target", "/"], "You cannot analyse that directory"),
        (["cancel_run", "not-a-uuid"], "is not a run id"),
        (["cancel_run", "6f1c1a36-3f57-4a3e-9b8e-6f3f3f3f3f3f"], "no run"),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_code_never_a_traceback(
    manage, target_dir: Path, tmp_path: Path, args: list[str], message: str
):
    """Each mistake is named in one line on stderr, with a non-zero exit."""
    env = manage_env(ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path))
    result = manage(*[a.replace("{t}", str(target_dir)) for a in args], env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert FlowRun.objects.count() == 0


def test_a_bad_setting_stops_the_command_with_the_variables_name(manage, target_dir, tmp_path):
    """Configuration errors name the variable instead of failing mid-run."""
    env = manage_env(ORCHESTRATOR_MODEL="no-slash", ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path))
    result = manage("launch_flow", "research", "--target", str(target_dir), env=env)
    assert result.returncode != 0
    assert "ORCHESTRATOR_MODEL must look like provider/model" in result.stderr
    assert "Traceback" not in result.stderr


def test_cancel_run_from_the_terminal_stops_a_workers_agents_within_a_second(
    manage, stop, worker_env, scripted_model, target_dir: Path, tmp_path: Path
):
    """`manage.py cancel_run ID` against a run a separate worker process is streaming."""
    scripted_model.token_rate = 5.0
    run = launch_run(flow="code-review", target=str(target_dir))
    env = worker_env(scripted_model.url)
    logs = [tmp_path / "worker.log"]
    worker = start_manage("runworker", "orchestrator.dispatch", env=env, log=logs[0])
    try:
        wait_for(
            lambda: FlowStep.objects.filter(run=run, status=StepStatus.RUNNING).count() == 2,
            30,
            "two agents streaming",
            logs,
        )
        result = manage("cancel_run", str(run.id), env=env)
        cancelled_at = time.time()
        assert result.returncode == 0, result.stderr
        assert f"run {run.id} cancelled" in result.stdout
        time.sleep(2.0)
        last_event = AgentEvent.objects.filter(step__run=run).order_by("-created_at").first()
        assert last_event is not None
        lag = last_event.created_at.timestamp() - cancelled_at
        print(f"last event written {lag:+.2f}s after the cancel returned")
        assert lag < 1.0, "agents must stop within a second"
        assert worker.poll() is None, "the worker keeps serving other runs"
    finally:
        stop(worker)
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    again = manage("cancel_run", str(run.id), env=env)
    assert again.returncode != 0 and "already ended (cancelled)" in again.stderr


def test_the_scripted_model_serves_on_its_own_over_http(stop, tmp_path: Path):
    """`python -m devtools.fakemodel --port N` answers like an OpenAI-compatible server."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "fake.log"
    fake_model = [sys.executable, "-m", "devtools.fakemodel"]
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [*fake_model, "--port", str(port), "--token-rate", "500"],
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).json()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        assert models["data"][0]["id"] == "scripted"
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            timeout=10,
            json={
                "model": "scripted",
                "stream": True,
                "messages": [
                    {"role": "system", "content": "Step kind: validator"},
                    {"role": "user", "content": "## Findings"},
                ],
            },
        ) as response:
            body = "".join(response.iter_text())
        assert body.rstrip().endswith("data: [DONE]")
        assert "Confidence" in body
    finally:
        stop(server)
    bad = subprocess.run(
        [*fake_model, "--fault", "nonsense"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0 and "unknown fault 'nonsense'" in bad.stderr
