"""The run owns its endpoint (issue 10, item 9): the base URL and model are recorded at launch,
and any worker runs the run's steps there, whatever its own configuration says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.demo.server import ScriptedModelServer
from runs.models import RunStatus
from runs.services import launch_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def other_model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


def test_the_endpoint_is_recorded_at_launch(settings: Any, scripted_model: Any, target_dir: Path):
    run = launch_run(flow="code-review", target=str(target_dir))
    assert (run.endpoint_url, run.endpoint_model) == (scripted_model.url, "scripted")
    settings.ORCHESTRATOR_BASE_URL = ""  # the demo model each worker starts itself
    run = launch_run(flow="code-review", target=str(target_dir))
    assert (run.endpoint_url, run.endpoint_model) == ("", "scripted")


def test_a_worker_configured_for_another_server_runs_the_run_where_it_was_launched(
    run_to_end,
    settings: Any,
    scripted_model: Any,
    other_model: ScriptedModelServer,
    target_dir: Path,
):
    run = launch_run(flow="code-review", target=str(target_dir))
    settings.ORCHESTRATOR_BASE_URL = other_model.url  # this worker's own setting now
    run = run_to_end(run)
    assert run.status == RunStatus.SUCCEEDED
    assert len(scripted_model.requests) >= 4
    assert other_model.requests == []
    assert f"at {scripted_model.url}" in run.report


def test_a_worker_that_does_not_know_the_runs_provider_still_runs_it_at_its_endpoint(
    run_to_end, settings: Any, scripted_model: Any, target_dir: Path
):
    settings.ORCHESTRATOR_PROVIDERS = {"elsewhere": {"base_url": scripted_model.url, "slots": 2}}
    settings.ORCHESTRATOR_MODEL = "elsewhere/scripted"
    settings.ORCHESTRATOR_BASE_URL = ""
    run = launch_run(flow="code-review", target=str(target_dir))
    settings.ORCHESTRATOR_PROVIDERS = {}  # this worker has never heard of "elsewhere"
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    run = run_to_end(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.model == "elsewhere/scripted"
    assert scripted_model.requests, "the run's turns reached the scripted model"
    assert all("Step kind" in str(r["messages"][1]) for r in scripted_model.requests)
