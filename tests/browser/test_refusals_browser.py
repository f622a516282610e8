"""An action the server refuses says why, beside its control, in Debian's Chromium against the
real server: the citation, Send to chat and Re-run of a run whose directory was taken back."""

from __future__ import annotations

import pytest

from runs.models import FlowRun
from runs.services import launch_run
from runs.targets import RUN_REFUSAL
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_refused_pane_actions_show_the_servers_sentence_beside_the_control(
    server, browser, alice, target_dir, tmp_path
):
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator("[data-testid=report]").wait_for(timeout=90_000)
    # The run's directory is no longer one alice may analyse (outside the allowed roots).
    elsewhere = str(tmp_path.parent / "elsewhere")
    FlowRun.objects.filter(id=run.id).update(target=elsewhere, target_real_path=elsewhere)

    page.locator("[data-testid=cite-check]").first.click()
    refusal = page.locator("[data-testid=report] [data-testid=action-error]")
    refusal.wait_for()
    assert refusal.inner_text() == RUN_REFUSAL
    assert refusal.get_attribute("aria-live") == "polite"
    assert page.locator("[data-testid=citation-excerpt]").count() == 0

    page.locator("[data-testid=send-to-chat]").click()
    sent = page.locator("[data-testid=send-to-chat] ~ [data-testid=action-error]")
    sent.wait_for()
    assert sent.inner_text() == RUN_REFUSAL

    url = page.url
    page.locator("[data-testid=rerun]").click()
    again = page.locator("[data-testid=rerun-form] + [data-testid=action-error]")
    again.wait_for()
    assert again.inner_text().startswith("This run cannot be launched again: ")
    assert page.url == url and FlowRun.objects.count() == 1
