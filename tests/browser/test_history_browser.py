"""The history's filters live in the address, in Debian's Chromium against the real server."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from runs.models import FlowRun, RunStatus
from runs.services import launch_run
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_history_filters_are_in_the_address_and_survive_reload_and_back(
    server, browser, alice, target_dir
):
    old = launch_run(flow="code-review", target=str(target_dir), owner=alice, focus="auth")
    FlowRun.objects.filter(id=old.id).update(
        status=RunStatus.CANCELLED, created_at=timezone.now() - timedelta(days=40)
    )
    page = log_in(browser, server, "alice", "alice-pass-123", timezone_id="UTC")
    page.goto(f"{server}/runs/")
    page.locator("[data-testid=history-run]").first.wait_for()
    # An older run shows its date, not a bare clock time.
    shown = page.locator("[data-testid=history-run] time").first.inner_text()
    assert re.search(r"\d{4}", shown), shown

    page.select_option("select[name=status]", "cancelled")
    page.wait_for_url(re.compile(r"/runs/\?.*status=cancelled"))
    page.locator("input[name=q]").fill("auth")
    page.wait_for_url(re.compile(r"/runs/\?.*q=auth"))
    page.reload()
    assert page.locator("select[name=status]").input_value() == "cancelled"
    assert page.locator("input[name=q]").input_value() == "auth"
    assert page.locator("[data-testid=history-run]").count() == 1
    page.go_back()
    page.wait_for_url(re.compile(r"/runs/\?.*status=cancelled"))
    assert "q=auth" not in page.url
    # Enter in a field filters in place too, and the address says so.
    page.locator("input[name=target]").fill("shop")
    page.locator("input[name=target]").press("Enter")
    page.wait_for_url(re.compile(r"/runs/\?.*target=shop"))
    assert page.locator("[data-testid=history-run]").count() == 1
