"""A run's state in Debian's Chromium against the real server: "finished with failures" where
an agent failed, and a pane that keeps focus while a run streams into it."""

from __future__ import annotations

import pytest

from runs.services import launch_run
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COUNT_SWAPS = """() => {
    window.swapped = [];
    document.body.addEventListener("htmx:oobAfterSwap", (e) => window.swapped.push(e.detail.target.id));
}"""


def test_a_run_with_one_failed_agent_says_finished_with_failures_in_the_pane_and_the_history(
    run_with_a_failed_agent, server, browser
):
    """Finished before the server starts, so no worker of its touches it."""
    run = run_with_a_failed_agent
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    badge = page.locator("[data-testid=run-status]")
    assert badge.inner_text() == "Finished with failures"
    assert page.locator("[data-testid=run-detail]").inner_text() == "1 agent failed"
    # Amber, the colour of a warning: not the green of a run whose agents all succeeded.
    # Looked up and measured in one task: the socket's first snapshot may replace the header
    # between a locator's lookup and its evaluation, and a detached badge has no colour.
    colour = page.evaluate(
        "() => getComputedStyle(document.querySelector('[data-testid=run-status]')).color"
    )
    warn = page.evaluate(
        """() => { const probe = document.createElement("span");
        probe.style.color = "var(--warn)"; document.body.append(probe);
        const colour = getComputedStyle(probe).color; probe.remove(); return colour; }"""
    )
    assert colour == warn
    page.goto(f"{server}/runs/")
    row = page.locator("[data-testid=history-run]")
    assert row.locator("[data-testid=history-status]").inner_text() == "finished with failures"
    page.select_option("select[name=status]", "finished_with_failures")
    page.wait_for_url("**status=finished_with_failures**")
    assert page.locator("[data-testid=history-run]").count() == 1
    page.select_option("select[name=status]", "succeeded")
    page.locator("[data-testid=history-empty]").wait_for()


def test_focus_stays_on_cancel_run_and_on_an_agent_row_while_the_run_streams(
    slow_server, browser, alice, target_dir
):
    """The header and the rows change part by part under the person's focus: the focused
    control is never replaced, so a pressed Enter still lands on it."""
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    security = run.steps.get(key="security").id
    page = log_in(browser, slow_server, "alice", "alice-pass-123")
    page.goto(f"{slow_server}/runs/{run.id}/")
    page.evaluate(COUNT_SWAPS)
    # An agent row: focused, opened with Enter, and still focused and open as it streams.
    row = page.locator(f"#agent-row-{security}")
    row.focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => window.swapped.filter(id => id === 'agent-metrics-{security}').length >= 3",
        timeout=60_000,
    )
    assert page.evaluate("document.activeElement.id") == f"agent-row-{security}"
    assert run.steps.get(id=security).status in ("queued", "running"), "it is still streaming"
    assert page.locator(f"#agent-{security} > details").get_attribute("open") is not None
    # Cancel run: focused while the header's numbers change many times over.
    page.locator("[data-testid=cancel]").focus()
    page.evaluate("window.swapped = []")
    page.wait_for_function(
        "() => window.swapped.filter(id => id === 'run-metrics').length >= 5", timeout=60_000
    )
    assert page.evaluate("document.activeElement.dataset.testid") == "cancel"
    assert page.locator("[data-testid=run-status]").inner_text() in (
        "Running",
        "Waiting for a model slot",
    )
    assert "run-header" not in page.evaluate("window.swapped")
    page.keyboard.press("Enter")
    page.locator("[data-testid=run-status]", has_text="Cancelled").wait_for(timeout=10_000)
