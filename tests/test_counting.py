"""Everything is counted (issue 10, item 7): tokens of every attempt, spent and kept,
cancelled steps included; per turn the prompt, what the server's cache reused and the decode
speed; a tool call shown the moment its name is known; a failed tool names its path."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from flows.report import rate
from runs.demo.faults import fault_plan
from runs.engine.target.tools import ReadOnlyTools
from runs.models import AgentEvent, FlowRun, FlowStep, RunStatus, StepStatus
from runs.progress import step_line, step_numbers
from runs.services import cancel_run, launch_run

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_retried_stream_is_spent_but_not_kept(run_to_end, scripted_model: Any, target_dir: Path):
    """The cut stream's chunks and its prompt count as spent; the transcript keeps one turn."""
    scripted_model.faults = fault_plan("drop_mid_stream:role=security:times=1")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    correctness = run.steps.get(key="correctness")
    assert security.status == StepStatus.SUCCEEDED
    assert security.tokens_spent_out >= security.tokens_out + 3  # FAULT_AFTER_PIECES
    assert security.tokens_spent_in > security.tokens_in
    assert (correctness.tokens_spent_in, correctness.tokens_spent_out) == (
        correctness.tokens_in,
        correctness.tokens_out,
    )
    row = next(line for line in run.report.splitlines() if line.startswith("| security |"))
    spent = f"| {security.tokens_spent_in}/{security.tokens_spent_out} |"
    assert spent in row
    assert "(spent " in step_numbers(security).tokens


def test_a_cancelled_step_still_shows_what_it_spent(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """It was 0/0: a turn cut by the cancel never reached a checkpoint."""
    scripted_model.token_rate = 5.0
    run = launch_run(flow="code-review", target=str(target_dir))

    def cancel_when_streaming() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            streaming = FlowStep.objects.filter(run=run, status=StepStatus.RUNNING)
            if AgentEvent.objects.filter(step__in=streaming, kind="reasoning").count() >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        cancel_run(run.id)
        connection.close()

    canceller = threading.Thread(target=cancel_when_streaming)
    canceller.start()
    run = run_to_end(run)
    canceller.join()
    assert run.status == RunStatus.CANCELLED
    cancelled = [s for s in run.steps.all() if s.kind == "specialist"]
    assert cancelled, "the run has specialists to check"
    assert all(s.status == StepStatus.CANCELLED for s in cancelled)
    assert all(s.tokens_spent_out > 0 and s.tokens_spent_in > 0 for s in cancelled), [
        (s.key, s.tokens_spent_in, s.tokens_spent_out) for s in cancelled
    ]


def test_each_turn_reports_its_prompt_cache_reuse_and_decode_speed(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """From the server's timings (llama.cpp's cache_n, predicted_per_second)."""
    scripted_model.token_rate = 200.0
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    turns = list(
        AgentEvent.objects.filter(step=security, kind="status", payload__state="turn").order_by(
            "seq"
        )
    )
    assert [t.payload["turn"] for t in turns] == list(range(1, len(turns) + 1))
    assert sum(t.payload["prompt_tokens"] for t in turns) == security.tokens_in
    assert turns[0].payload["cached_tokens"] < turns[-1].payload["cached_tokens"]
    assert all(t.payload["tokens_per_second"] > 0 for t in turns)
    assert "from cache" in turns[-1].payload["detail"] and "tok/s" in turns[-1].payload["detail"]
    assert security.cached_tokens == sum(t.payload["cached_tokens"] for t in turns)
    numbers = step_numbers(security)
    assert numbers.cache_reuse is not None and 0 < numbers.cache_reuse < 1
    assert numbers.decode_rate is not None and numbers.decode_rate > 0
    row = next(line for line in run.report.splitlines() if line.startswith("| security |"))
    assert f"| {numbers.cache_reuse:.0%} | {rate(numbers.decode_rate)} |" in row
    line = step_line(security)
    assert numbers.cache in line and numbers.speed in line
    print(f"security: {line}")


def test_launch_flow_shows_each_agents_decode_speed_and_cache_reuse(
    scripted_model: Any, target_dir: Path
):
    out = io.StringIO()
    call_command("launch_flow", "code-review", target=str(target_dir), wait=True, stdout=out)
    run = FlowRun.objects.get()
    assert run.steps.exists(), "the run has steps to count"
    for step in run.steps.all():
        numbers = step_numbers(step)
        assert any(
            step.key in line and numbers.speed in line and numbers.cache in line
            for line in out.getvalue().splitlines()
        ), step.key


def test_a_tool_call_is_shown_as_soon_as_its_name_is_known(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """A status event naming the tool comes before the arguments have finished streaming."""
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    events = list(AgentEvent.objects.filter(step=security).order_by("seq"))
    calls = [e for e in events if e.kind == "tool_call"]
    started = [e for e in events if e.kind == "status" and e.payload["state"] == "calling"]
    assert [e.payload["name"] for e in started] == [e.payload["name"] for e in calls]
    for begun, call in zip(started, calls, strict=True):
        assert begun.seq < call.seq


def test_a_failed_file_info_names_the_path(target_dir: Path):
    result = ReadOnlyTools(target_dir).call("file_info", {"path": "app/missing.py"})
    assert not result.ok
    # The confinement refuses what it cannot reach, naming the path and the reason.
    assert result.content == "refused: app/missing.py: no such file"
    assert result.summary == "file_info refused"


def test_the_run_shows_its_prompt_tokens_saved_in_the_method_table_and_the_pane(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """Every agent's turns summed, one definition (counters.CacheSaving) for both places."""
    from runs.live import pane_state, render_header

    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    steps = list(run.steps.all())
    reused = sum(s.cached_tokens for s in steps)
    prompt = sum(s.tokens_in for s in steps)
    assert 0 < reused < prompt
    share = f"{reused / prompt:.0%}"
    sentence = f"{reused:,} prompt tokens reused from the server's cache ({share})"
    method = run.report.split("## Method")[1]
    assert f"Prompt cache: {sentence}." in method.split("| agent |")[0]
    header = render_header(pane_state(run))
    assert f'data-testid="run-cache-saved">{reused:,} ({share})</dd>' in header
    assert "prompt tokens saved" in header


def test_the_pane_says_nothing_was_saved_until_a_server_reports_its_cache(target_dir: Path):
    from runs.live import pane_state, render_header

    run = launch_run(flow="code-review", target=str(target_dir))
    header = render_header(pane_state(run))
    assert 'data-testid="run-cache-saved">\u2013</dd>' in header


def test_the_saving_counts_only_steps_whose_server_reports_its_cache():
    """A server without timings is not a 0% cache; hostile counts never pass 100%."""
    from runs.engine.agent.counters import CacheSaving, Counters

    silent = Counters(tokens_in=500, tokens_out=20)  # no cache count, no decode time
    assert CacheSaving.of([silent]) is None
    reporting = Counters(tokens_in=1000, cached_tokens=710, decode_seconds=1.0)
    saving = CacheSaving.of([silent, reporting, Counters()])
    assert saving == CacheSaving(reused=710, prompt=1000)
    assert saving.sentence == "710 prompt tokens reused from the server's cache (71%)"
    wild = CacheSaving.of([Counters(tokens_in=10, cached_tokens=10**7)])
    assert wild is not None and wild.short == "10 (100%)"
