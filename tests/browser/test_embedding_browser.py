"""In Chromium: docs/example-host.html, served from another local port listed in
ORCHESTRATOR_EMBED_ORIGINS, frames the pane of a run launched through the API, watches it
stream, hears "report ready" and "send to chat", and commands the pane; the same page on a
port that is not listed cannot frame it at all."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.testing import ROOT, free_port
from runs.api_tokens import create_token
from runs.models import FlowRun
from tests.browser.conftest import CSP_REFUSALS, ServeProcess, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXAMPLE_HOST = (ROOT / "docs" / "example-host.html").read_text()


@pytest.fixture
def host_port() -> int:
    return free_port()


@pytest.fixture
def embedding_server(settings: Any, tmp_path: Path, host_port: int) -> Iterator[ServeProcess]:
    """The server with one allowed host origin: another port of 127.0.0.1."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    process = ServeProcess(
        tmp_path, token_rate="60", ORCHESTRATOR_EMBED_ORIGINS=f"http://127.0.0.1:{host_port}"
    )
    yield process
    process.stop()


def api_launch(server: ServeProcess, owner: Any, target: Path) -> dict[str, Any]:
    """What a host app's back end does: launch with its person's token over HTTP."""
    _, token = create_token(owner, "example host")
    response = httpx.post(
        f"{server.url}/api/v1/runs",
        headers={"Authorization": f"Bearer {token}"},
        json={"flow": "code-review", "target": str(target), "focus": "auth"},
    )
    assert response.status_code == 201, response.text
    launched: dict[str, Any] = response.json()
    return launched


def received(page: Any, kind: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate(
        "(kind) => window.received.filter((m) => m.type === kind)", kind
    )
    return found


def wait_for_message(page: Any, kind: str, timeout: float = 120_000) -> dict[str, Any]:
    page.wait_for_function(
        "(kind) => window.received.some((m) => m.type === kind)", arg=kind, timeout=timeout
    )
    return received(page, kind)[0]


def test_a_host_on_an_allowed_origin_frames_a_pane_and_hears_its_events(
    browser, alice, target_dir: Path, embedding_server: ServeProcess, host_port: int, page_on_port
):
    launched = api_launch(embedding_server, alice, target_dir)
    run_id = launched["id"]
    page = log_in(browser, embedding_server.url, "alice", "alice-pass-123")
    host = page_on_port(host_port, EXAMPLE_HOST)
    page.goto(f"{host}?pane={embedding_server.url}{launched['pane_url']}")
    pane = page.frame_locator("#pane")

    # The first event says where the run is; the host shows it.
    first = wait_for_message(page, "run.status", timeout=30_000)
    assert (first["protocol"], first["version"], first["run"]) == ("orchestrator-pane", 1, run_id)
    assert first["status"] in {"pending", "running"} and first["finished"] is False

    # The host asks the pane to expand an agent; its stream arrives live in the frame.
    page.locator("#expand").click()
    security = pane.locator("details[data-key=security]")
    security.locator(".stream .ev").first.wait_for(timeout=60_000)
    assert security.get_attribute("open") is not None

    ready = wait_for_message(page, "report.ready")
    run = FlowRun.objects.get(id=run_id)
    assert ready["summary"] == run.summary and ready["summary"]
    assert ready["confidence"] == run.confidence and ready["confidence"] in {
        "high",
        "medium",
        "low",
    }
    statuses = received(page, "run.status")
    assert statuses[-1]["finished"] is True and statuses[-1]["status"] == run.status
    told = [(s["status"], s["label"], s["finished"]) for s in statuses]
    assert all(a != b for a, b in itertools.pairwise(told)), "each change is told once"

    # Send to chat: the report reaches the host's own chat as Markdown.
    pane.locator("[data-testid=send-to-chat]").click()
    sent = wait_for_message(page, "report.send-to-chat", timeout=30_000)
    assert sent["markdown"] == run.report and sent["summary"] == run.summary
    assert page.locator("#chat [data-testid=chat-message]").count() == 1
    assert run.report.splitlines()[0] in page.locator("#chat pre").inner_text()

    # The host scrolls the pane to its report; the report lands in the frame's view.
    pane.locator("[data-testid=report]").evaluate("el => window.scrollTo(0, 0)")
    page.locator("#scroll").click()
    pane.locator("[data-testid=report]").wait_for()
    frame = page.frame(url=lambda url: url.startswith(embedding_server.url))
    assert frame is not None
    frame.wait_for_function("() => window.scrollY > 0", timeout=10_000)


def test_the_host_can_cancel_its_pane_run(
    browser, alice, target_dir: Path, embedding_server: ServeProcess, host_port: int, page_on_port
):
    launched = api_launch(embedding_server, alice, target_dir)
    page = log_in(browser, embedding_server.url, "alice", "alice-pass-123")
    page.goto(
        f"{page_on_port(host_port, EXAMPLE_HOST)}?pane={embedding_server.url}/runs/"
        f"{launched['id']}/"
    )
    wait_for_message(page, "run.status", timeout=30_000)
    page.locator("#cancel").click()
    page.wait_for_function(
        "() => window.received.some((m) => m.type === 'run.status' && m.status === 'cancelled')",
        timeout=30_000,
    )
    assert FlowRun.objects.get(id=launched["id"]).status == "cancelled"


def test_a_host_origin_not_listed_cannot_frame_the_pane(
    browser, alice, target_dir: Path, embedding_server: ServeProcess, host_port: int, page_on_port
):
    launched = api_launch(embedding_server, alice, target_dir)
    page = log_in(browser, embedding_server.url, "alice", "alice-pass-123")
    stranger = page_on_port(free_port(), EXAMPLE_HOST)
    with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refusal:
        page.goto(f"{stranger}?pane={embedding_server.url}{launched['pane_url']}")
    assert "has been blocked" in refusal.value.text
    assert f"frame-ancestors 'self' http://127.0.0.1:{host_port}\"" in refusal.value.text
    # Chromium refused it: the frame holds its own error page, none of the pane, and nothing
    # was posted.
    [frame] = page.main_frame.child_frames
    assert frame.url.startswith("chrome-error://") and frame.locator(".pane").count() == 0
    assert page.evaluate("window.received") == []
    # The refusal is the point of this test, not a page broken by the policy.
    assert CSP_REFUSALS and all("frame-ancestors" in text for text in CSP_REFUSALS)
    CSP_REFUSALS.clear()
