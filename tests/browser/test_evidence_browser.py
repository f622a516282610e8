"""Checking a citation and comparing runs, in Debian's Chromium against the real server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runs.models import FlowRun
from runs.services import launch_run
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def wait_finished(run: FlowRun, seconds: float = 90) -> FlowRun:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.finished_at is not None:
            return run
        time.sleep(0.3)
    raise AssertionError(f"run {run.id} did not finish: {run.status}")


def test_a_citation_opens_inline_from_the_pane_with_the_quoted_lines(
    server, browser, alice, target_dir
):
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{run.id}/")
    page.locator("[data-testid=report]").wait_for(timeout=90_000)
    check = page.locator("[data-testid=cite-check]").first
    check.wait_for()
    url = page.url
    check.click()
    excerpt = page.locator("[data-testid=cite-lines] [data-testid=citation-excerpt]").first
    excerpt.wait_for(timeout=10_000)
    assert page.url == url, "opened inline, not by leaving the pane"
    quoted = excerpt.locator("mark").first.inner_text()
    assert quoted.strip(), "the quote is highlighted"
    assert excerpt.locator("tr.cited").count() >= 1
    kept = FlowRun.objects.get(id=run.id).report_data["checked_lines"][0]
    assert quoted in "\n".join(kept["lines"])
    # Without JavaScript the same link is a page of its own.
    href = check.get_attribute("href")
    plain = page.context.new_page()
    plain.goto(f"{server}{href}")
    assert plain.locator("[data-testid=citation-excerpt] mark").first.inner_text() == quoted


def test_clicking_a_citation_at_560_px_opens_its_lines_under_its_finding(
    server, browser, alice, target_dir
):
    """The whole citation is the link (not a 10 px mark), it says what was checked, and its
    lines open inside the finding it belongs to, at a narrow width too."""
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.set_viewport_size({"width": 560, "height": 900})
    page.goto(f"{server}/runs/{run.id}/")
    page.locator("[data-testid=report]").wait_for(timeout=90_000)
    citation = page.locator("li [data-testid=cite-check]").first
    citation.wait_for()
    assert "verified" in (citation.get_attribute("title") or "")
    assert "show the checked lines" in (citation.get_attribute("aria-label") or "")
    assert citation.locator("code").count() >= 1, "the citation itself is inside the link"
    box = citation.bounding_box()
    assert box is not None and box["width"] > 40
    citation.locator("code").first.click()
    finding = citation.locator("xpath=ancestor::li[1]")
    excerpt = finding.locator("[data-testid=cite-lines] [data-testid=citation-excerpt]")
    excerpt.wait_for(timeout=10_000)
    assert excerpt.locator("tr.cited").count() >= 1
    assert excerpt.bounding_box()["x"] >= 0  # type: ignore[index]
    assert "Verified" in excerpt.locator("[data-testid=cite-checked]").inner_text()


def test_a_rerun_shows_what_is_new_still_present_and_resolved(
    server, browser, alice, target_dir: Path
):
    first = wait_finished(launch_run(flow="code-review", target=str(target_dir), owner=alice))
    assert first.status == "succeeded"
    # Between the runs the TODO is done and new code raises an error.
    views = target_dir / "app/views.py"
    views.write_text(views.read_text().replace("    # TODO: validate the command", "    #"))
    (target_dir / "app/jobs.py").write_text("def job():\n    raise ValueError('no job')\n")
    second = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/runs/{second.id}/")
    page.locator("[data-testid=compare-note]").wait_for(timeout=90_000)
    report = page.locator("[data-testid=report]")
    assert report.locator(".finding-change.change-new").count() >= 1
    assert report.locator(".finding-change.change-still-present").count() >= 1
    assert report.locator(".finding-change.change-resolved").count() >= 1
    assert "Since the previous run" in report.inner_text()
    counts = FlowRun.objects.get(id=second.id).report_data["comparison"]["counts"]
    assert counts["new"] >= 1 and counts["still_present"] >= 1 and counts["resolved"] >= 1
    page.click("[data-testid=compare-note] a")
    page.wait_for_url(f"{server}/runs/{first.id}/")
    page.goto(f"{server}/runs/")
    assert (
        f"{counts['resolved']} resolved"
        in page.locator("[data-testid=since-previous]").first.inner_text()
    )
