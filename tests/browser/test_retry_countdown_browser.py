"""An agent waiting to retry: its row's "next try in N s" counts down in the page, between
the server's redraws, as the CLI's line and the API's words do on every read."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from runs.models import FlowRun, FlowStep, RunStatus, StepPhase, StepStatus
from runs.services import launch_run
from tests.browser.conftest import ServeProcess, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
NEXT_TRY = re.compile(r"^try 3: the model server refused the connection; next try in (\d+) s$")


def test_next_try_counts_down_without_a_redraw(
    settings: Any, tmp_path: Path, browser: Any, alice: Any, target_dir: Path
):
    """One agent of a run is 30 s from its next try and nothing else happens (its lease is
    another worker's, every other agent is done or waits for it), so no redraw comes: the
    same element's seconds go down as the page's clock runs."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    now = timezone.now()
    FlowRun.objects.filter(id=run.id).update(status=RunStatus.RUNNING, started_at=now)
    steps = list(run.steps.order_by("id"))
    waiting = next(step for step in steps if not step.depends_on)
    FlowStep.objects.filter(id=waiting.id).update(
        status=StepStatus.RUNNING,
        phase=StepPhase.UNAVAILABLE,
        phase_note="try 3: the model server refused the connection",
        phase_until=now + timedelta(seconds=30),
        started_at=now,
        lease_owner="another-worker",
        lease_expires_at=now + timedelta(hours=1),
    )
    others = [s.id for s in steps if s.id != waiting.id and not s.depends_on]
    FlowStep.objects.filter(id__in=others).update(
        status=StepStatus.SUCCEEDED, started_at=now, finished_at=now
    )
    serve = ServeProcess(tmp_path)  # started after the rows are set: no worker races them
    try:
        page = log_in(browser, serve.url, "alice", "alice-pass-123")
        page.goto(f"{serve.url}/runs/{run.id}/")
        words = page.locator(f"#agent-who-{waiting.id} [data-testid=step-words]")
        words.wait_for()
        first = NEXT_TRY.match(words.inner_text())
        assert first, words.inner_text()
        words.evaluate("el => { el.dataset.seen = 'yes'; }")  # a redraw would replace it
        seen = [int(first[1])]
        deadline = time.monotonic() + 15
        while len(set(seen)) < 3 and time.monotonic() < deadline:
            time.sleep(0.25)
            match = NEXT_TRY.match(words.inner_text())
            assert match, words.inner_text()
            seen.append(int(match[1]))
        assert len(set(seen)) >= 3, seen
        assert seen == sorted(seen, reverse=True), seen
        assert words.get_attribute("data-seen") == "yes", "the element was redrawn"
    finally:
        serve.stop()
