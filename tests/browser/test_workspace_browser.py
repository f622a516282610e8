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
    assert "'nope' is not a slash command" in error.inner_text()


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


def test_in_a_550px_pane_focus_stays_on_cancel_while_the_run_streams(
    server, browser, alice, target_dir: Path
):
    """A run launched from the workspace (through the API) streams into its frame; Cancel
    keeps the focus through every live update, and the status strip stays in view when the
    pane scrolls. The workspace hears the pane's status events."""
    page = log_in(browser, server, "alice", "alice-pass-123", width=550, height=900)
    page.goto(f"{server}/workspace/")
    chat = page.locator("[data-testid=chat-pane]")
    chat.locator("[data-testid=chat-target]").fill(str(target_dir))
    chat.locator("textarea").fill("/code-review auth")
    chat.locator("textarea").press("Enter")
    pane = page.locator(".orchestrator-pane").first
    pane.wait_for()
    assert FlowRun.objects.get().origin == "slash"
    frame = page.frame_locator(".orchestrator-pane iframe").first
    cancel = frame.locator("[data-testid=cancel]")
    cancel.wait_for()
    frame.locator("details[data-key=security] summary").click()  # stream one agent
    cancel.evaluate(
        "el => { window.swaps = 0;"
        " document.addEventListener('htmx:oobAfterSwap', () => { window.swaps += 1; }); }"
    )
    cancel.focus()
    for swaps in (10, 40):
        cancel.evaluate(
            f"el => new Promise((done) => {{ const t = setInterval(() => {{"
            f" if (window.swaps >= {swaps}) {{ clearInterval(t); done(); }} }}, 50); }})"
        )
        assert cancel.evaluate("el => document.activeElement === el"), f"after {swaps} updates"
        assert page.evaluate("() => document.activeElement.tagName") == "IFRAME"
    assert frame.locator("details[data-key=security] .stream .ev").count() > 0
    # The workspace shows what the pane told it (run.status events).
    assert pane.locator("[data-testid=pane-status]").inner_text() != ""
    # Scrolled to the end, the status strip is still at the top of the pane. A run that
    # finished fast may leave a page barely taller than the pane, scrolled less than the
    # strip's own offset; room is added at the end of the strip's container, so the strip has
    # somewhere to stick whatever the run printed.
    strip = frame.locator("[data-testid=status-strip]")
    strip.evaluate(
        "el => { const room = document.createElement('div');"
        " room.style.height = '2000px'; el.parentElement.appendChild(room); }"
    )
    cancel.evaluate("el => window.scrollTo(0, document.body.scrollHeight)")
    assert cancel.evaluate("el => window.scrollY") > 1000
    top = strip.evaluate("el => el.getBoundingClientRect().top")
    assert 0 <= top <= 1
    assert cancel.evaluate("el => document.activeElement === el")


def test_enter_in_the_launchers_target_launches_and_bands_say_what_they_run(
    server, browser, alice, target_dir: Path
):
    page = log_in(browser, server, "alice", "alice-pass-123", width=550, height=900)
    page.goto(f"{server}/workspace/")
    page.locator("[data-testid=chat-pane] [data-testid=orchestrator-button]").click()
    launcher = page.locator("[data-testid=launcher]")
    launcher.locator("[data-testid=launcher-flow]").select_option("code-review")
    small = launcher.locator("[data-testid=band-about-small]").inner_text()
    assert small == "— 4 agents: Correctness, Security, Synthesizer, Validator; no runs yet"
    target = launcher.locator("[data-testid=launcher-target]")
    target.fill(str(target_dir))
    target.press("Enter")
    page.locator(".orchestrator-pane").first.wait_for()
    assert launcher.is_hidden()
    run = FlowRun.objects.get()
    assert (run.flow, run.origin, run.host_pane, run.target) == (
        "code-review",
        "button",
        "chat",
        str(target_dir.resolve()),
    )


def test_slash_and_ctrl_k_inside_a_pane_reach_the_composer(
    server, browser, alice, target_dir: Path
):
    page = log_in(browser, server, "alice", "alice-pass-123", width=550, height=900)
    page.goto(f"{server}/workspace/")
    coder = page.locator("[data-testid=coder-pane]")
    coder.locator("[data-testid=coder-target]").fill(str(target_dir))
    box = coder.locator("textarea")
    box.fill("/code-review auth")
    box.press("Enter")
    frame = page.frame_locator(".orchestrator-pane iframe").first
    frame.locator("h1.flow").click()  # focus inside the pane, on nothing that takes text
    frame.locator("body").press("/")
    page.wait_for_function("() => document.activeElement.matches('[data-pane=coder] textarea')")
    assert box.input_value() == "/"
    box.fill("")
    frame.locator("h1.flow").click()
    frame.locator("body").press("Control+k")
    page.wait_for_function("() => document.activeElement.matches('[data-pane=coder] textarea')")
    assert box.input_value() == ""


def test_a_slash_menu_closes_when_focus_leaves_its_composer_but_not_on_its_own_items(
    server, browser, alice, target_dir: Path
):
    """Only one slash menu is ever open: moving to the other composer closes the first."""
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/workspace/")
    chat, coder = page.locator("[data-testid=chat-pane]"), page.locator("[data-testid=coder-pane]")
    chat_menu = chat.locator("[data-testid=slash-menu]")
    chat.locator("textarea").fill("/")
    assert chat_menu.is_visible()
    chat_menu.locator(".slash-item").first.click()  # choosing from the menu is not leaving it
    assert chat.locator("textarea").input_value().startswith("/")
    chat.locator("textarea").fill("/re")
    assert chat_menu.is_visible()
    coder.locator("textarea").click()
    page.wait_for_function(
        "() => document.querySelector('[data-pane=chat] [data-testid=slash-menu]').hidden"
    )
    coder.locator("textarea").fill("/re")
    assert coder.locator("[data-testid=slash-menu]").is_visible()
    assert page.locator("[data-testid=slash-menu]:visible").count() == 1


def test_re_run_inside_a_workspace_pane_opens_the_new_run_beside_it(
    server, browser, alice, target_dir: Path
):
    """The old pane keeps its run; the new run gets a pane of its own, and a reload shows
    the same two panes (the workspace remembered what it shows)."""
    page = log_in(browser, server, "alice", "alice-pass-123")
    page.goto(f"{server}/workspace/")
    coder = page.locator("[data-testid=coder-pane]")
    coder.locator("[data-testid=coder-target]").fill(str(target_dir))
    coder.locator("textarea").fill("/code-review auth")
    coder.locator("textarea").press("Enter")
    page.locator(".orchestrator-pane").first.wait_for()
    old = FlowRun.objects.get()
    frame = page.frame_locator(f".orchestrator-pane[data-run='{old.id}'] iframe")
    frame.locator("[data-testid=rerun]").click(timeout=60_000)
    page.locator(".orchestrator-pane").nth(1).wait_for()
    new = FlowRun.objects.exclude(id=old.id).get()
    shown = page.eval_on_selector_all(".orchestrator-pane", "(ps) => ps.map((p) => p.dataset.run)")
    assert shown == [str(new.id), str(old.id)]
    assert (
        page.frame_locator(f".orchestrator-pane[data-run='{old.id}'] iframe")
        .locator(f".pane[data-run='{old.id}']")
        .count()
        == 1
    )
    page.reload()
    page.locator(".orchestrator-pane").nth(1).wait_for()
    again = page.eval_on_selector_all(".orchestrator-pane", "(ps) => ps.map((p) => p.dataset.run)")
    assert again == shown
