"""The pane in Debian's Chromium against the real server: daphne + engine + scripted model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runs.models import FlowRun
from runs.services import launch_run
from tests.browser.conftest import log_in, screenshot_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_run_streams_live_and_ends_with_the_report_on_top(
    server, browser, alice, django_user_model, target_dir
):
    """Status moves live, an expanded agent streams, the report lands on top, exports work;
    an outsider is refused; the phone layout stacks."""
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice, focus="<i>x</i>")
    security = run.steps.get(key="security").id
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator(f"#agent-row-{security}").click()
    stream = page.locator(f"#stream-{security}")
    stream.locator(".tool-call").first.wait_for(timeout=20_000)
    assert "list_dir" in stream.inner_text()
    page.locator("[data-testid=report]").wait_for(timeout=60_000)
    assert page.locator("[data-testid=run-status]").inner_text() == "Succeeded"
    html = page.content()
    assert html.index('data-testid="report"') < html.index('class="agents"')
    assert page.locator("[data-testid=report] h2").first.inner_text() == "Summary"
    page.screenshot(path=str(screenshot_dir() / "pane-run.png"), full_page=True)
    # Nothing from the model or the focus text became markup.
    assert page.locator("i", has_text="x").count() == 0
    # The stream shown equals what the database holds: nothing lost, nothing doubled.
    shown = [
        int(i)
        for i in stream.locator("[data-id]").evaluate_all("els => els.map(e => e.dataset.id)")
    ]
    stored = list(run.steps.get(key="security").events.order_by("id").values_list("id", flat=True))
    assert shown == stored
    # Exports.
    with page.expect_download() as download:
        page.click("[data-testid=download-md]")
    assert Path(download.value.path()).read_text().startswith("## Summary")
    page.click("[data-testid=copy]")
    assert page.evaluate("navigator.clipboard.readText()").startswith("## Summary")
    page.click("[data-testid=send-to-chat]")
    page.locator("#chat-result", has_text="sent").wait_for()
    # Phone width: one column, the pane still readable.
    phone = page.context.new_page()
    phone.set_viewport_size({"width": 375, "height": 812})
    phone.goto(f"{server}/runs/{run.id}/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.screenshot(path=str(screenshot_dir() / "pane-run-phone.png"))
    # The history lists it and reopens its pane.
    page.goto(f"{server}/runs/")
    page.locator(f"a[href='/runs/{run.id}/']").first.click()
    page.locator("[data-testid=report]").wait_for()
    assert page.url.endswith(f"/runs/{run.id}/")
    # An outsider gets a 404.
    django_user_model.objects.create_user("charlie", password="charlie-pass-123")
    outsider = log_in(browser, server, "charlie", "charlie-pass-123")
    assert outsider.goto(f"{server}/runs/{run.id}/").status == 404


def test_cancel_from_the_pane_stops_the_run(server, browser, alice, target_dir):
    """The Cancel button stops live agents and the header says cancelled."""
    run = launch_run(flow="research", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator(".badge-running").first.wait_for(timeout=20_000)
    page.click("[data-testid=cancel]")
    page.locator("[data-testid=run-status]", has_text="Cancelled").wait_for(timeout=5_000)
    assert FlowRun.objects.get(id=run.id).status == "cancelled"


def test_after_a_server_crash_the_pane_reconnects_and_misses_or_doubles_nothing(
    serve, browser, alice, target_dir
):
    """The server is killed mid-stream and restarted: the run resumes on the new server, the
    pane reconnects by itself, and its stream equals the database's."""
    server = serve.url
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    security = run.steps.get(key="security").id
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator(f"#agent-row-{security}").click()
    stream = page.locator(f"#stream-{security}")
    stream.locator(".tool-call").first.wait_for(timeout=20_000)
    serve.crash_and_restart()
    page.locator("[data-testid=report]").wait_for(timeout=90_000)
    assert int(page.locator(".pane").get_attribute("data-connections")) >= 2, "it reconnected"
    time.sleep(1)
    shown = [
        int(i)
        for i in stream.locator("[data-id]").evaluate_all("els => els.map(e => e.dataset.id)")
    ]
    stored = list(run.steps.get(key="security").events.order_by("id").values_list("id", flat=True))
    assert shown == stored


def test_retry_from_the_pane_reruns_the_failed_agent_to_a_new_report(
    server, browser, alice, target_dir
):
    """A failed agent's Retry button: it and the spine run again; the others keep their work."""
    from devtools.testing import finish_step
    from runs.engine.queue import scheduler
    from runs.models import FlowStep

    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    # Finish it here, by hand, before the server's worker looks: security fails.
    for step_id in scheduler.claim_steps("test", 10, run_id=run.id):
        key = FlowStep.objects.get(id=step_id).key
        finish_step(
            step_id,
            "test",
            succeeded=key != "security",
            output="- **kept** (codebase) `app/views.py:6`",
            error="model down",
        )
    for _ in range(2):
        for step_id in scheduler.claim_steps("test", 10, run_id=run.id):
            finish_step(
                step_id, "test", succeeded=True, output="Summary: s\nConfidence: low\nReasons: r"
            )
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    security = run.steps.get(key="security").id
    assert run.steps.get(key="security").status == "failed"
    page.locator("[data-testid=retry]").first.click()
    page.locator(f"#agent-row-{security} [data-testid=step-status]", has_text="succeeded").wait_for(
        timeout=60_000
    )
    page.locator("[data-testid=run-status]", has_text="Succeeded").wait_for(timeout=30_000)
    steps = {s.key: s for s in run.steps.all()}
    assert steps["security"].status == "succeeded" and steps["security"].attempt == 2
    assert steps["correctness"].attempt == 1, "the successful sibling was not rerun"
