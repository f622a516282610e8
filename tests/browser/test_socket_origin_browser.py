"""In Chromium: a page from another local port cannot open a run's socket, although the
browser sends the logged-in user's cookie with the handshake (cookies do not tell ports
apart); the site's own page streams, and so does a page on an allowed embedding origin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools.testing import free_port
from runs.services import launch_run
from tests.browser.conftest import ServeProcess, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# What a hostile page would do: open the socket, count what it can read.
PROBE = """<!doctype html><meta charset="utf-8"><title>probe</title><script>
window.result = {opened: false, bytes: 0, closed: null};
const ws = new WebSocket(%s);
ws.onopen = () => { window.result.opened = true; };
ws.onmessage = (event) => { window.result.bytes += event.data.length; };
ws.onclose = (event) => { window.result.closed = event.code; };
</script>"""


def probe(page: Any, url: str) -> dict[str, Any]:
    """Open the probe page and wait until its socket has either read something or closed."""
    page.goto(url)
    page.wait_for_function("window.result.bytes > 0 || window.result.closed !== null")
    result: dict[str, Any] = page.evaluate("window.result")
    return result


def test_a_page_on_another_local_port_cannot_open_a_runs_socket(
    browser, alice, target_dir, tmp_path: Path, page_on_port, settings
):
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    other_port, embed_port = free_port(), free_port()
    serve = ServeProcess(tmp_path, ORCHESTRATOR_EMBED_ORIGINS=f"http://127.0.0.1:{embed_port}")
    try:
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        socket_url = json.dumps(f"ws://127.0.0.1:{serve.port}/ws/runs/{run.id}/")
        page = log_in(browser, serve.url, "alice", "alice-pass-123")

        # The site's own page: the socket opens and an expanded agent streams.
        page.goto(f"{serve.url}/runs/{run.id}/")
        security = run.steps.get(key="security").id
        page.locator(f"#agent-row-{security}").click()
        page.locator(f"#stream-{security} .ev").first.wait_for(timeout=30_000)

        # Another local web app, same browser, same cookie: refused at the handshake.
        other = probe(page.context.new_page(), page_on_port(other_port, PROBE % socket_url))
        assert other == {"opened": False, "bytes": 0, "closed": 1006}

        # The same page from the allowed embedding origin reads the pane: the refusal above
        # is the origin's, not the page's.
        embedder = probe(page.context.new_page(), page_on_port(embed_port, PROBE % socket_url))
        assert embedder["opened"] and embedder["bytes"] > 0
    finally:
        serve.stop()
