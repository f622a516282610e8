"""Browser fixtures: the real server (`manage.py serve`) and Debian's Chromium."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import ROOT, free_port, manage_env, start_manage

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# What Chromium refused under the Content-Security-Policy during the current test.
CSP_REFUSALS: list[str] = []


@pytest.fixture(autouse=True)
def _nothing_refused_by_the_policy() -> Iterator[None]:
    """Every page the browser tests open works under the CSP: Chromium reports each script,
    style or connection the policy blocks on the console, and any one fails the test."""
    CSP_REFUSALS.clear()
    yield
    assert CSP_REFUSALS == []


def watch_policy(context: Any) -> Any:
    """Every page of this browser context (later ones too) reports its refusals."""
    context.on(
        "console",
        lambda message: (
            CSP_REFUSALS.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return context


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API runs an event loop in this thread; the tests' own ORM calls are
    still plain blocking calls, so Django's async-safety guard does not apply to them."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def screenshot_dir() -> Path:
    """Where screenshots go: build/screenshots, untracked, unless ORCHESTRATOR_SCREENSHOTS
    says otherwise (`make screenshots` points it at docs/screenshots for the README)."""
    chosen = Path(os.environ.get("ORCHESTRATOR_SCREENSHOTS") or "build/screenshots")
    folder = chosen if chosen.is_absolute() else ROOT / chosen
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class ServeProcess:
    """`manage.py serve` on the test database, with the scripted demo model inside; it can
    be killed and started again on the same port (a crash, as far as the browser can tell)."""

    def __init__(self, tmp_path: Path, *, token_rate: str = "25", **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = manage_env(
            ORCHESTRATOR_MODEL="demo/scripted",
            ORCHESTRATOR_DEMO_TOKEN_RATE=token_rate,
            ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path),
            ORCHESTRATOR_SHARED_ROOTS=str(tmp_path),
            ORCHESTRATOR_LEASE_SECONDS="2",
            **env,
        )
        self.log = tmp_path / "serve.log"
        self.process = self.start()

    def start(self) -> Any:
        process = start_manage("serve", "--port", str(self.port), env=self.env, log=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return process
            except OSError:
                alive = process.poll() is None and time.monotonic() < deadline
                assert alive, self.log.read_text()
                time.sleep(0.2)

    def crash_and_restart(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self.process = self.start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def serve(settings: Any, tmp_path: Path) -> Iterator[ServeProcess]:
    settings.ORCHESTRATOR_MODEL = "demo/scripted"  # what runs launched here are stamped with
    process = ServeProcess(tmp_path)
    yield process
    process.stop()


@pytest.fixture
def server(serve: ServeProcess) -> str:
    return serve.url


@pytest.fixture
def slow_server(settings: Any, tmp_path: Path) -> Iterator[str]:
    """The server with a scripted model slow enough (5 tokens a second) that a run streams
    for a minute: long enough to do things in the pane while it changes."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    process = ServeProcess(tmp_path, token_rate="5")
    yield process.url
    process.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is required: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def log_in(
    browser: Any,
    base: str,
    username: str,
    password: str,
    *,
    color_scheme: str = "dark",
    timezone_id: str | None = None,
    **viewport: int,
) -> Any:
    options: dict[str, Any] = {"color_scheme": color_scheme}
    if timezone_id:
        options["timezone_id"] = timezone_id
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800}, **options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = watch_policy(context).new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/workspace/")
    return page


@pytest.fixture
def page_on_port(tmp_path: Path) -> Iterator[Any]:
    """`page_on_port(port, html)`: serve one page from another local web server (a tiny
    http.server on 127.0.0.1:port, as any other local app or dev server would) and return
    its URL."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    servers: list[ThreadingHTTPServer] = []

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    def start(port: int, html: str) -> str:
        folder = tmp_path / f"site-{port}"
        folder.mkdir()
        (folder / "index.html").write_text(html)
        server = ThreadingHTTPServer(("127.0.0.1", port), partial(Quiet, directory=folder))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{port}/index.html"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# Shared by the glance and screenshot tests: the widths a pane is seen at, and its metrics.
METRICS = ("m-elapsed", "m-ttft", "m-in", "m-out", "m-rate", "m-tools")
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def metrics_shown(page: Any, width: float) -> None:
    """Every row's every metric is shown and inside its page's width. Rows are looked up and
    measured in one evaluation: a live redraw replaces them, and a replaced (detached) row
    measures nothing."""
    boxes = page.locator("body").evaluate(
        """(body, metrics) => [...document.querySelectorAll(".agent-row")].map(row =>
            metrics.map(m => {
                const cell = row.querySelector("." + m);
                const r = cell.getBoundingClientRect();
                const shown = getComputedStyle(cell).display !== "none" && r.width > 0;
                return [m, shown, r.left, r.right];
            }))""",
        list(METRICS),
    )
    assert len(boxes) >= 4
    for row in boxes:
        for metric, shown, cell_left, cell_right in row:
            assert shown, (metric, row)
            assert cell_left >= -0.5 and cell_right <= width + 0.5, (metric, row)
