"""A model server that restarts, loads a model or pushes back is waited for (issue 10, item 5).

Retries last a budget of time (ORCHESTRATOR_RETRY_SECONDS), not a count: a server back within
it means the turn resumes and no agent fails. A 429 is backpressure: its Retry-After is
honoured. A run whose agent failed does not exit 0 from `launch_flow --wait`.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from devtools.testing import free_port
from runs.demo.faults import fault_plan
from runs.demo.server import ScriptedModelServer
from runs.engine.agent.backends.base import (
    BackendError,
    EndpointConfig,
    Retrying,
    RetryKind,
    TurnResult,
)
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from runs.models import AgentEvent, FlowStep, RunStatus, StepStatus
from runs.progress import step_state
from runs.services import launch_run

VALIDATOR = [
    {"role": "system", "content": "Step kind: validator\nAgent role: validator"},
    {"role": "user", "content": "## Findings\n- a `x.py:1`\n- b `y.py:2`"},
]


def stream(url: str, on_first_text: Any = None, **config: Any) -> list[Any]:
    async def go() -> list[Any]:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=url, model="scripted", **config))
        events: list[Any] = []
        try:
            async for event in backend.stream_turn(messages=VALIDATOR, tools=None, max_tokens=None):
                events.append(event)
                if on_first_text is not None and len(events) == 3:  # a little text streamed
                    on_first_text()
            return events
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_a_turn_cut_by_a_server_restart_resumes_once_the_server_has_loaded_again():
    """Dropped mid-stream, refused while down, 503 while loading, then the whole answer."""
    with ScriptedModelServer(token_rate=20.0) as server:
        restarts: list[threading.Thread] = []
        events = stream(
            server.url,
            on_first_text=lambda: restarts.append(server.restart(1.5, loading_seconds=1.0)),
        )
        restarts[0].join()
    retries = [e for e in events if isinstance(e, Retrying)]
    assert isinstance(events[-1], TurnResult)
    assert events[-1].content.startswith("Summary: ")
    assert retries[0].reason == "the model server dropped the connection mid-stream"
    unavailable = [r for r in retries if r.kind == RetryKind.UNAVAILABLE]
    assert any("refused the connection" in r.reason for r in unavailable)
    assert any("unavailable (503: Loading model)" in r.reason for r in unavailable)
    assert retries[0].discarded_tokens > 0, "the cut stream's tokens are counted as spent"
    assert all(r.budget_left > 0 for r in retries)
    print(f"restart ridden out with {len(retries)} retries: {[r.kind for r in retries]}")


def test_a_429_is_backpressure_and_its_retry_after_is_honoured():
    with ScriptedModelServer() as server:
        server.faults = fault_plan("http_429:times=2")
        events = stream(server.url)
    retries = [e for e in events if isinstance(e, Retrying)]
    assert [(r.kind, r.delay) for r in retries] == [(RetryKind.BUSY, 1.0), (RetryKind.BUSY, 1.0)]
    assert isinstance(events[-1], TurnResult)


def test_retries_stop_when_the_time_budget_is_spent_and_the_error_says_how_long():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(BackendError) as error:
        stream(url, retry_seconds=1.2, backoff_base=0.2, max_backoff=0.4)
    waited = time.monotonic() - started
    message = str(error.value)
    assert message.startswith(f"the model server refused the connection (model server at {url}")
    attempts = int(message.split(", ")[-1].split()[0])
    assert attempts >= 4, message  # 0.2 + 0.4 + 0.4 + ... until 1.2 s have passed
    assert waited >= 1.2, "the whole budget was given to the server"


def test_the_budget_is_the_default_and_long_enough_for_a_model_load(settings: Any):
    """llama-swap waits up to 120 s for a model to load; the default waits longer."""
    from runs.engine.agent.modelconfig import resolve_model

    settings.ORCHESTRATOR_MODEL = "llama-swap/some-model"
    assert resolve_model().endpoint.retry_seconds >= 120
    settings.ORCHESTRATOR_RETRY_SECONDS = 300.0
    assert resolve_model().endpoint.retry_seconds == 300.0
    assert resolve_model().endpoint.max_retries is None


@pytest.mark.django_db(transaction=True)
def test_a_model_server_restart_during_a_run_fails_no_agent(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """The server goes away for 2 s and loads for 1 s while agents stream: the run succeeds,
    every agent too, and the steps said "server unavailable" meanwhile."""
    scripted_model.token_rate = 30.0
    run = launch_run(flow="code-review", target=str(target_dir))
    seen: set[str] = set()

    def restart_while_streaming() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if FlowStep.objects.filter(run=run, status=StepStatus.RUNNING).exists():
                break
            time.sleep(0.05)
        restart = scripted_model.restart(2.0, loading_seconds=1.0)
        back: float | None = None
        while back is None or time.monotonic() < back + 2.0:  # through the loading time
            seen.update(step_state(step).label for step in FlowStep.objects.filter(run=run))
            if back is None and not restart.is_alive():
                back = time.monotonic()
            time.sleep(0.1)
        connection.close()

    watcher = threading.Thread(target=restart_while_streaming)
    watcher.start()
    run = run_to_end(run, timeout=120)
    watcher.join()
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert set(run.steps.values_list("status", flat=True)) == {StepStatus.SUCCEEDED}
    outages = AgentEvent.objects.filter(step__run=run, kind="status", payload__state="unavailable")
    assert outages.exists()
    assert "server unavailable" in seen, seen
    print(f"states seen during the restart: {sorted(seen)}")


@pytest.mark.django_db(transaction=True)
def test_launch_flow_does_not_exit_0_when_an_agent_failed(
    settings: Any, scripted_model: Any, target_dir: Path
):
    """The report is written, but a lens is missing: the run finished with failures, exit 3."""
    settings.ORCHESTRATOR_RETRY_SECONDS = 0.5
    scripted_model.faults = fault_plan("http_500:role=security")
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(
            "launch_flow", "code-review", target=str(target_dir), wait=True, stdout=out, stderr=err
        )
    assert exited.value.code == 3
    assert "run finished with failures (1 agent failed): security (failed)" in err.getvalue()
    assert "## Summary" in out.getvalue()
