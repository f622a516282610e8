"""Untrusted text never runs in the browser: script and HTML payloads in file names, file
contents (so in tool results and in the model's cited findings and report) and the focus
text, all through a real run in Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runs.services import launch_run
from tests.browser.conftest import ServeProcess, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# Each payload sets window.pwned (or opens a dialog) if it ever becomes markup.
FILE_NAME = "<img src=x onerror=\"window.pwned='file name'\">.py"
CONTENT_PAYLOADS = [
    "<script>window.pwned='tool result'</script>",
    "<img src=x onerror=\"window.pwned='grep hit'\">",
    "[click](javascript:window.pwned='markdown link')",
    "<svg onload=alert('svg')>",
]
FOCUS = "<iframe srcdoc=\"<script>parent.pwned='focus'</script>\"></iframe> why?"


def hostile_project(base: Path) -> Path:
    root = base / "hostile"
    root.mkdir()
    # Every line matches the scripted specialists' grep (def / class / TODO), so each payload
    # travels as a tool result, a cited quote in a finding, and into the report.
    lines = [f"def handler_{i}():  # TODO {payload}" for i, payload in enumerate(CONTENT_PAYLOADS)]
    (root / FILE_NAME).write_text("\n".join(lines) + "\n")
    (root / "app.py").write_text(f"class App:  # TODO {CONTENT_PAYLOADS[0]}\n    pass\n")
    return root


@pytest.fixture
def quick_serve(settings: Any, tmp_path: Path) -> Iterator[ServeProcess]:
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    process = ServeProcess(tmp_path, token_rate="400")
    yield process
    process.stop()


def test_payloads_in_file_names_tool_results_model_output_and_focus_never_execute(
    quick_serve, browser, alice, tmp_path
):
    server = quick_serve.url
    run = launch_run(
        flow="code-review", target=str(hostile_project(tmp_path)), owner=alice, focus=FOCUS
    )
    page = log_in(browser, server, "alice", "alice-pass-123")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server}/runs/{run.id}/")
    for step in run.steps.all():  # expand every agent: its tool results and text stream in
        page.locator(f"#agent-row-{step.id}").click()
    page.locator("[data-testid=report]").wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    text = page.locator("body").inner_text()
    executed = {"live pane": page.evaluate("window.pwned")}
    for path in (f"/runs/{run.id}/", "/runs/", f"/runs/?q={run.focus[:20]}", "/workspace/"):
        page.goto(f"{server}{path}")
        page.wait_for_timeout(300)
        executed[path] = page.evaluate("window.pwned")
        text += page.locator("body").inner_text()
        assert page.locator("a[href^='javascript:']").count() == 0, path

    assert set(executed.values()) == {None}, executed
    assert dialogs == []
    # The payloads were really there, shown as text: a file name, tool results, quotes.
    shown = [p for p in [FILE_NAME, *CONTENT_PAYLOADS, FOCUS] if p in text]
    assert len(shown) >= 5, shown
    missing = [p for p in [FILE_NAME, *CONTENT_PAYLOADS, FOCUS] if p not in shown]
    print(
        f"{len(shown)} payloads shown as text on {len(executed)} page loads and "
        f"{run.steps.count()} agents; 0 executed, 0 dialogs; not shown verbatim: {missing}"
    )
