"""Both doors from both panes, in Chromium: the slash menu and the Orchestrator launcher."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runs.models import FlowRun
from tests.browser.conftest import log_in, screenshot_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def frame_status(page, index: int = 0) -> str:  # type: ignore[no-untyped-def]
    frame = page.frame_locator(".orchestrator-pane iframe").nth(index)
    return frame.locator("[data-testid=run-status]").inner_text()


def test_slash_commands_launch_from_both_panes_with_their_projects(
    server,
    browser,
    alice,
    target_dir: Path,
    tmp_path: Path,
):
    """`/` lists the 11 read-only flows, filters, navigates by keyboard and launches at once."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "main.py").write_text("def main():\n    return 1\n")
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/workspace/")
    chat = page.locator("[data-testid=chat-pane]")
    chat.locator("[data-testid=chat-target]").fill(str(target_dir))
    box = chat.locator("textarea")
    box.fill("/")
    menu = chat.locator("[data-testid=slash-menu]")
    assert menu.locator(".slash-item").count() == 11
    box.type("co")
    assert menu.locator(".slash-item").all_inner_texts()[0].startswith("/code-review")
    box.press("Escape")
    assert menu.is_hidden()
    box.fill("/inv")
    box.press("ArrowDown")  # a single match stays selected
    box.press("Enter")
    assert box.input_value() == "/investigate "
    box.type("totals are wrong")
    box.press("Enter")
    page.locator(".orchestrator-pane").first.wait_for()
    coder = page.locator("[data-testid=coder-pane]")
    coder.locator("[data-testid=coder-target]").fill(str(other))
    coder.locator("textarea").fill("/code-review look at main")
    coder.locator("textarea").press("Enter")
    page.locator(".orchestrator-pane").nth(1).wait_for()
    runs = {r.host_pane: r for r in FlowRun.objects.all()}
    assert runs["chat"].flow == "investigate" and runs["chat"].focus == "totals are wrong"
    assert runs["chat"].target == str(target_dir.resolve()) and runs["chat"].origin == "slash"
    assert runs["coder"].flow == "code-review" and runs["coder"].target == str(other.resolve())
    assert runs["coder"].band == "small"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and FlowRun.objects.exclude(status="succeeded").exists():
        time.sleep(0.5)
    page.frame_locator(".orchestrator-pane iframe").first.locator("[data-testid=report]").wait_for(
        timeout=10_000
    )
    page.screenshot(path=str(screenshot_dir() / "workspace-slash.png"))
    # A bad command says what is wrong, in the composer.
    box.fill("/nope")
    box.press("Enter")
    error = chat.locator(".composer-error")
    error.wait_for()
    assert "unknown flow 'nope'" in error.inner_text()


def test_the_orchestrator_button_opens_the_launcher_over_the_whole_catalog(
    server,
    browser,
    alice,
    target_dir: Path,
):
    """All 22 flows, grouped; band, fast, target and focus; launches into a pane."""
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/workspace/")
    coder = page.locator("[data-testid=coder-pane]")
    coder.locator("[data-testid=coder-target]").fill(str(target_dir))
    coder.locator("[data-testid=orchestrator-button]").click()
    launcher = page.locator("[data-testid=launcher]")
    assert launcher.locator("option").count() == 22
    assert launcher.locator("optgroup").evaluate_all("gs => gs.map(g => g.label)") == [
        "Analysis",
        "Drafts",
    ]
    assert launcher.locator("[data-testid=launcher-target]").input_value() == str(target_dir)
    launcher.locator("[data-testid=launcher-flow]").select_option("refactor-plan")
    launcher.locator("input[name=band][value=medium]").check()
    launcher.locator("input[name=fast]").check()
    launcher.locator("[data-testid=launcher-focus]").fill("split the views")
    launcher.locator("[data-testid=launch]").click()
    page.locator(".orchestrator-pane").first.wait_for()
    run = FlowRun.objects.get()
    assert (run.flow, run.band, run.fast, run.origin, run.host_pane) == (
        "refactor-plan",
        "medium",
        True,
        "button",
        "coder",
    )
    # Bad input in the launcher is shown there, and nothing is created.
    coder.locator("[data-testid=orchestrator-button]").click()
    launcher.locator("[data-testid=launcher-target]").fill("/definitely/missing")
    launcher.locator("[data-testid=launch]").click()
    problem = launcher.locator("[data-testid=launcher-error]")
    problem.wait_for()
    assert "does not exist" in problem.inner_text()
    assert FlowRun.objects.count() == 1


def test_on_a_phone_the_panes_stack_and_the_button_is_icon_only(
    server,
    browser,
    alice,
):
    """375 px wide: one column, the Orchestrator button shows only its icon."""
    page = log_in(browser, server, "alice", "alice-pass-123", width=375, height=812)
    page.goto(f"{server}/workspace/")
    chat = page.locator("[data-testid=chat-pane]").bounding_box()
    coder = page.locator("[data-testid=coder-pane]").bounding_box()
    assert coder["y"] > chat["y"] + chat["height"] - 1, "stacked, not side by side"
    button = page.locator("[data-testid=chat-pane] [data-testid=orchestrator-button]")
    assert button.locator(".label").is_hidden() and button.locator(".icon").is_visible()
    page.screenshot(path=str(screenshot_dir() / "workspace-stacked-phone.png"))
