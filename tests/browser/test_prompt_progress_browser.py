"""A prompt being read shows on its agent's row, live, with a rising percentage."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from runs.services import launch_run
from tests.browser.conftest import ServeProcess, log_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
PERCENT = re.compile(r"^(\d+)%: [\d,]+ of [\d,]+ tokens")


def test_the_row_says_reading_the_prompt_with_a_rising_percentage(
    settings: Any, tmp_path: Path, browser: Any, alice: Any, target_dir: Path
):
    """The demo model reads 60 prompt tokens a second, so an agent's first prompt (about 450
    words) takes several seconds: its row's badge says "reading the prompt" and its words a
    percentage that rises as the pushes arrive, without a reload."""
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    serve = ServeProcess(tmp_path, ORCHESTRATOR_DEMO_PREFILL_RATE="60")
    try:
        run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
        page = log_in(browser, serve.url, "alice", "alice-pass-123")
        page.goto(f"{serve.url}/runs/{run.id}/")
        reading = page.locator("[data-testid=step-status]", has_text="reading the prompt")
        reading.first.wait_for(timeout=30_000)
        seen: dict[str, list[int]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and max(map(len, seen.values()), default=0) < 3:
            for row in page.locator(".who").all():
                badge = row.locator("[data-testid=step-status]").inner_text()
                words = row.locator("[data-testid=step-words]")
                if badge != "reading the prompt" or not words.count():
                    continue
                match = PERCENT.match(words.inner_text())
                if match:
                    percents = seen.setdefault(row.get_attribute("id") or "", [])
                    if not percents or percents[-1] != int(match[1]):
                        percents.append(int(match[1]))
            time.sleep(0.1)
        longest = max(seen.values(), key=len)
        assert len(longest) >= 3, seen
        assert longest == sorted(longest) and all(0 <= p <= 100 for p in longest), seen
    finally:
        serve.stop()
