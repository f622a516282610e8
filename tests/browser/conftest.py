"""Browser fixtures: the real server (`manage.py serve`) and Debian's Chromium."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import manage_env, start_manage

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API runs an event loop in this thread; the tests' own ORM calls are
    still plain blocking calls, so Django's async-safety guard does not apply to them."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(settings: Any, tmp_path: Path) -> Iterator[str]:
    """`manage.py serve` on the test database, with the scripted demo model inside."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"  # what runs launched here are stamped with
    port = free_port()
    env = manage_env(
        ORCHESTRATOR_MODEL="demo/scripted",
        ORCHESTRATOR_DEMO_TOKEN_RATE="25",
        ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path),
    )
    log = tmp_path / "serve.log"
    process = start_manage("serve", "--port", str(port), env=env, log=log)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is required: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def log_in(browser: Any, base: str, username: str, password: str, **viewport: int) -> Any:
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/runs/")
    return page
