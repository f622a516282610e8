"""The pane people watch all day, in Chromium at 1440x900, in the workspace's pane (about
550 px) and at 390x844: metrics at every width, progress, the timeline, a workspace that
remembers, chat, phones, the theme and the friendly edges."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from runs.models import FlowRun
from tests.browser.conftest import (
    DESKTOP,
    PHONE,
    ServeProcess,
    log_in,
    metrics_shown,
    screenshot_dir,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def one_slot(tmp_path: Path, settings: Any):  # type: ignore[no-untyped-def]
    """The server with a one-slot model, so agents queue for it."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    process = ServeProcess(tmp_path, token_rate="30", ORCHESTRATOR_SLOTS="1")
    yield process
    process.stop()


def wait_until(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def one_line(page: Any) -> bool:
    """The first agent's metrics sit on its name's line (wide) rather than under it (narrow)."""
    # Looked up and measured in one go: live updates replace rows.
    return bool(
        page.locator("body").evaluate(
            """() => {
                const row = document.querySelector(".agent-row");
                const name = row.querySelector(".role").getBoundingClientRect();
                const metrics = row.querySelector(".metrics").getBoundingClientRect();
                return Math.abs(name.top - metrics.top) < name.height;
            }"""
        )
    )


def test_the_pane_shows_every_metric_and_its_progress_at_every_width(
    one_slot, browser, alice, target_dir
):
    """Launched from the workspace: in its ~550 px pane every metric shows on a second line,
    the queue reads in words, elapsed ticks by tenths and the timeline moves; the full page
    at 1440 is one line per agent; at 390 nothing is hidden and nothing overflows; times are
    the reader's local time."""
    server = one_slot.url
    page = log_in(browser, server, "alice", "alice-pass-123", timezone_id="Asia/Kolkata", **DESKTOP)
    page.goto(f"{server}/workspace/")
    page.locator("[data-testid=chat-target]").fill(str(target_dir))
    box = page.locator("[data-testid=chat-pane] textarea")
    box.fill("/code-review the views")
    box.press("Enter")
    pane = page.locator(".orchestrator-pane").first
    pane.wait_for()
    frame = page.frame_locator(".orchestrator-pane iframe").first
    frame_box = pane.locator("iframe").bounding_box()
    width = frame_box["width"]
    assert 480 <= width <= 620, f"the workspace pane is {width} px wide"
    # The queue in words: one slot, two specialists.
    frame.locator(
        "[data-testid=step-words]",
        has_text=re.compile(r"\d+(st|nd|rd|th) in line"),
    ).first.wait_for(timeout=20_000)
    metrics_shown(frame, width)
    assert not one_line(frame), "two lines in a narrow pane"
    # Progress at a glance, and live numbers.
    counts = frame.locator("[data-testid=progress] .counts").inner_text()
    assert re.search(r"\d+ done.*\d+ running.*\d+ queued.*\d+ failed.*of 4 agents", counts, re.S)
    elapsed = frame.locator("[data-testid=run-elapsed]")
    first = elapsed.inner_text()
    time.sleep(0.6)
    second = elapsed.inner_text()
    assert re.fullmatch(r"\d+\.\d s", first) and first != second, (first, second)
    timeline = frame.locator("[data-testid=timeline]")
    assert "live" in (timeline.get_attribute("class") or "")
    # The live timeline (looked up inside: a redraw replaces it) and where its now line is.
    live_now = """() => {
        const t = document.getElementById("run-timeline");
        const span = Number(t.dataset.span);
        const now = Number(t.querySelector(".tl-now").style.getPropertyValue("--at")) * span;
        const ends = [...t.querySelectorAll(".seg[data-open]")].map(
            s => Number(s.dataset.start) + parseFloat(s.style.width) / 100 * span);
        return [now, ends];
    }"""
    before, ends = frame.locator("body").evaluate(live_now)
    assert ends and all(abs(end - before) < 0.3 for end in ends), (before, ends)
    time.sleep(0.6)
    after, _ = frame.locator("body").evaluate(live_now)
    assert 0.3 < after - before < 2.0, (before, after)
    assert timeline.locator("[data-testid=lane]").count() == 4
    page.screenshot(path=str(screenshot_dir() / "glance-workspace-running.png"))
    # Finished: the timeline stays, with its critical path.
    frame.locator("[data-testid=report]").wait_for(timeout=90_000)
    run = FlowRun.objects.get()
    assert "live" not in (timeline.get_attribute("class") or "")
    assert frame.locator("[data-testid=critical-path]").inner_text().startswith("Critical path")
    assert frame.locator(".tl-lane.critical").count() >= 2
    # Local time: the run started at this clock time in Kolkata; the full date on hover.
    started = frame.locator("[data-testid=run-started]")
    local = run.started_at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%H:%M:%S")
    assert started.inner_text() == local
    assert str(run.started_at.astimezone(ZoneInfo("Asia/Kolkata")).year) in started.get_attribute(
        "title"
    )
    # The full page at 1440: one line per agent, every metric.
    page.goto(f"{server}/runs/{run.id}/")
    metrics_shown(page, DESKTOP["width"])
    assert one_line(page)
    assert page.locator("[data-testid=lane]").count() == 4
    # A phone: all metrics still there, nothing wider than the screen.
    phone = page.context.new_page()
    phone.set_viewport_size(PHONE)
    phone.goto(f"{server}/runs/{run.id}/")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    metrics_shown(phone, PHONE["width"])
    assert phone.locator("[data-testid=lane]").count() == 4
    phone.screenshot(path=str(screenshot_dir() / "glance-pane-phone.png"), full_page=True)


def test_the_workspace_remembers_its_panes_and_projects_across_reloads_and_devices(
    serve, browser, alice, target_dir
):
    """On a phone the new pane scrolls into view; a reload and another device show the same
    panes and projects; closing a pane leaves its run going to the end."""
    server = serve.url
    phone = log_in(browser, server, "alice", "alice-pass-123", **PHONE)
    phone.goto(f"{server}/workspace/")
    phone.locator("[data-testid=coder-target]").fill(str(target_dir))
    phone.wait_for_timeout(700)  # the project is saved a moment after typing
    composer = phone.locator("[data-testid=coder-pane] textarea")
    composer.fill("/research what does it do")
    composer.press("Enter")
    pane = phone.locator(".orchestrator-pane").first
    pane.wait_for()
    wait_until(
        lambda: pane.evaluate(
            "e => { const r = e.getBoundingClientRect(); return r.top >= -1 && r.top < innerHeight / 2; }"
        ),
        5,
    )
    run = FlowRun.objects.get()
    phone.reload()
    assert phone.locator(f".orchestrator-pane[data-run='{run.id}']").count() == 1
    assert phone.locator("[data-testid=coder-target]").input_value() == str(target_dir)
    # Another device: the same workspace.
    desk = log_in(browser, server, "alice", "alice-pass-123", **DESKTOP)
    desk.goto(f"{server}/workspace/")
    assert desk.locator(f".orchestrator-pane[data-run='{run.id}']").count() == 1
    assert desk.locator("[data-testid=coder-target]").input_value() == str(target_dir)
    # Closing it does not stop it.
    desk.locator(f".orchestrator-pane[data-run='{run.id}'] [data-close]").click()
    assert desk.locator(".orchestrator-pane").count() == 0
    wait_until(lambda: FlowRun.objects.get(id=run.id).status == "succeeded", 90)
    desk.reload()
    assert desk.locator(".orchestrator-pane").count() == 0


def test_send_to_chat_shows_the_whole_report_at_once_and_the_composer_helps(
    serve, browser, alice, target_dir
):
    """From the pane in the workspace, Send to chat: the Chat pane shows it rendered, whole
    and linked, without a reload. Plain text gets a hint; `/` and Ctrl+K reach the composer;
    the slash menu matches loosely."""
    server = serve.url
    page = log_in(browser, server, "alice", "alice-pass-123", **DESKTOP)
    page.goto(f"{server}/workspace/")
    chat = page.locator("[data-testid=chat-pane]")
    chat.locator("[data-testid=chat-target]").fill(str(target_dir))
    box = chat.locator("textarea")
    box.fill("please review my code")
    box.press("Enter")
    hint = chat.locator("[data-testid=composer-hint]")
    assert hint.is_visible() and "start with /" in hint.inner_text()
    assert FlowRun.objects.count() == 0
    box.fill("/cr")
    assert chat.locator(".slash-item strong").first.inner_text() == "/code-review"
    box.fill("/sr")
    assert chat.locator(".slash-item strong").first.inner_text() == "/security-review"
    box.fill("")
    page.locator(".host-pane-head h2").first.click()
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Chat message"
    assert box.input_value() == "/" and chat.locator("[data-testid=slash-menu]").is_visible()
    box.fill("/code-review the views")
    box.press("Enter")
    frame = page.frame_locator(".orchestrator-pane iframe").first
    frame.locator("[data-testid=report]").wait_for(timeout=90_000)
    run = FlowRun.objects.get()
    frame.locator("[data-testid=send-to-chat]").click()
    message = chat.locator("[data-testid=chat-message]").last
    message.wait_for(timeout=5_000)
    assert message.locator("h2").first.inner_text() == "Summary"
    last_line = run.report.strip().splitlines()[-1]
    assert last_line.split("|")[1].strip() in message.inner_text(), "the report is whole"
    assert "…" not in message.inner_text()
    assert (
        message.locator("[data-testid=chat-run-link]").get_attribute("href") == f"/runs/{run.id}/"
    )
    # Ctrl+K from anywhere goes back to the composer last used.
    page.locator(".host-pane-head h2").nth(1).click()
    page.keyboard.press("Control+k")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Chat message"
    page.screenshot(path=str(screenshot_dir() / "glance-chat.png"))


def test_phones_read_every_page_and_the_theme_follows_the_system_with_a_toggle(
    serve, browser, alice, django_user_model, finished_run
):
    """390x844, the system asking for light: history as cards, a top bar that wraps, light
    colours; the toggle makes it dark everywhere, the admin included, across reloads. The
    admin run page has no Save button; a 404 is the app's own; an empty search says so."""
    server = serve.url
    FlowRun.objects.filter(id=finished_run.id).update(model="demo/scripted", confidence="high")
    alice.is_staff = alice.is_superuser = True
    alice.save()
    page = log_in(browser, server, "alice", "alice-pass-123", color_scheme="light", **PHONE)
    page.goto(f"{server}/runs/")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    card = page.locator("[data-testid=history-run]").first
    for label in ("status", "confidence", "target"):
        cell = card.locator(f"td[data-label={label}]")
        # The value sits on its label's line, right of it, and inside the screen.
        label_box, value = cell.evaluate(
            """e => { const r = document.createRange(); r.selectNodeContents(e);
                const v = r.getBoundingClientRect(), c = e.getBoundingClientRect();
                return [[c.left, c.top], [v.left, v.top, v.right, v.width]]; }"""
        )
        assert value[3] > 0, label
        assert value[0] >= label_box[0] + 80 and abs(value[1] - label_box[1]) < 8, (label, value)
        assert value[2] <= PHONE["width"], (label, value)
    assert card.locator(".chip-demo").is_visible()
    brand = page.locator(".brand").bounding_box()
    first_link = page.locator(".topbar nav a").first.bounding_box()
    assert (
        brand["x"] + brand["width"] <= first_link["x"]
        or first_link["y"] >= brand["y"] + brand["height"]
    )
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert brightness(background) > 200, background
    page.screenshot(path=str(screenshot_dir() / "glance-history-phone.png"), full_page=True)
    # The toggle: auto -> light -> dark; kept across a reload and shared with the admin.
    toggle = page.locator("[data-testid=theme-toggle]")
    toggle.click()
    toggle.click()
    assert "dark" in toggle.inner_text()
    page.reload()
    assert brightness(page.evaluate("getComputedStyle(document.body).backgroundColor")) < 60
    page.goto(f"{server}/admin/runs/flowrun/{finished_run.id}/change/")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.locator("input[name=_save]").count() == 0
    headings = page.locator("h2").evaluate_all("els => els.map(e => e.textContent.trim())")
    assert headings.index("Flow steps") < headings.index("Outcome")
    # Friendly edges.
    page.goto(f"{server}/runs/?q=no-such-thing")
    assert "No runs match these filters" in page.locator("[data-testid=history-empty]").inner_text()
    response = page.goto(f"{server}/nowhere/")
    assert response.status == 404 and page.locator("[data-testid=error-page]").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_cancelled_run_reads_calmly_and_retries_its_cancelled_agents(
    serve, browser, alice, target_dir
):
    """No strikethrough on the cancelled badge; its button reruns the cancelled agents to a
    report."""
    from runs.services import launch_run

    server = serve.url
    run = launch_run(flow="research", target=str(target_dir), owner=alice)
    page = log_in(browser, server, "alice", "alice-pass-123", **DESKTOP)
    page.goto(f"{server}/runs/{run.id}/")
    page.locator(".badge-running").first.wait_for(timeout=20_000)
    page.click("[data-testid=cancel]")
    page.locator("[data-testid=run-status]", has_text="Cancelled").wait_for(timeout=5_000)
    page.locator(".agent-row .badge-cancelled").first.wait_for()
    # Looked up and measured in one go: a live redraw may replace the row meanwhile.
    decorations = page.evaluate(
        "[...document.querySelectorAll('.badge-cancelled')]"
        ".map(e => getComputedStyle(e).getPropertyValue('text-decoration-line'))"
    )
    assert decorations and set(decorations) == {"none"}, decorations
    page.locator("[data-testid=retry-cancelled]").click()
    page.locator("[data-testid=run-status]", has_text="Succeeded").wait_for(timeout=90_000)
    assert FlowRun.objects.get(id=run.id).status == "succeeded"
    assert page.locator("[data-testid=retry-cancelled]").count() == 0


def brightness(css_color: str) -> float:
    """0 (black) to 255 (white), from `rgb(r, g, b)`."""
    r, g, b = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b
