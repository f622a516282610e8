"""Re-run in Chromium against the real server: a finished run opens a new pane, or the launcher."""

from __future__ import annotations

import re

import pytest

from runs.models import FlowRun
from runs.services import launch_run
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_re_run_opens_a_new_pane_and_re_run_with_changes_fills_the_launcher(
    server, browser, alice, target_dir
):
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice, focus="auth")
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator("[data-testid=report]").wait_for(timeout=60_000)

    page.click("[data-testid=rerun]")
    page.wait_for_url(re.compile(rf"{re.escape(server)}/runs/(?!{run.id})[0-9a-f-]+/$"))
    new = FlowRun.objects.exclude(id=run.id).get()
    assert page.url == f"{server}/runs/{new.id}/"
    assert (new.flow, new.band, new.target, new.focus) == (run.flow, run.band, run.target, "auth")
    # The new pane is live: it streams its own run to its own report.
    page.locator("[data-testid=report]").wait_for(timeout=60_000)
    assert page.locator("[data-testid=run-status]").inner_text() != "Running"

    page.goto(f"{server}/runs/")
    page.locator("[data-testid=history-run]").first.wait_for()
    page.locator("[data-testid=rerun-with-changes]").first.click()
    page.wait_for_url(re.compile(r"/workspace/\?from="))
    launcher = page.locator("[data-testid=launcher]")
    launcher.wait_for(state="visible")
    assert page.locator("[data-testid=launcher-flow]").input_value() == "code-review"
    assert page.locator("[data-testid=launcher-focus]").input_value() == "auth"
    assert page.locator("[data-testid=launcher-target]").input_value() == run.target
    assert FlowRun.objects.count() == 2  # nothing launched until Launch is pressed
