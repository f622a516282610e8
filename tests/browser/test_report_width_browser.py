"""A report's wide tables in a narrow pane, in Debian's Chromium against the real server: at
550 px (a pane beside an editor) and 375 px the Method table scrolls inside its own frame, never
the whole report, and every column of it can still be reached; long paths and URLs in a table
wrap. At 1280 px the same report reads as it did: every table whole, every Method row one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.report import AgentLine, MethodFacts, render_method
from runs.models import FlowRun
from tests.browser.conftest import log_in, screenshot_dir

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

COLUMNS = [
    "agent",
    "status",
    "attempts",
    "tokens in/out",
    "spent in/out",
    "cache reuse",
    "decode tok/s",
    "tool calls",
    "citations ok/broken",
    "time",
]
PATH = "src/orchestrator/engine/report/some_really_long_module_name_for_reports.py:123"
URL = "https://example.com/a/very/long/url/that/keeps/going/without/any/spaces?with=query&and=more"


def agent(key: str, status: str, **numbers: Any) -> AgentLine:
    values: dict[str, Any] = dict(
        attempts=1,
        tokens_in=18_432,
        tokens_out=2_917,
        tool_calls=14,
        seconds=96.4,
        spent_in=24_100,
        spent_out=3_310,
        cache_reuse=0.71,
        decode_rate=38.25,
        citations_verified=12,
    )
    values.update(numbers)
    return AgentLine(key=key, role=key, status=status, **values)


def wide_report() -> str:
    """A model's table of long paths and URLs, a long code line, then a Method table with the
    numbers of a real large run: about 950 px wide when nothing in it wraps."""
    method = render_method(
        MethodFacts(
            flow="code-review",
            band="large",
            fast=False,
            model="qwen3-coder-30b-a3b-instruct-q4_k_m",
            endpoint="http://127.0.0.1:8080/v1, http://gpu-box.internal.example:8081/v1",
            slots="2 slots (the server has 1)",
            cache_saved="112,400 prompt tokens reused from the server's cache (71%)",
            agents=[
                agent("correctness", "succeeded"),
                agent("maintainability", "succeeded", attempts=3, citations_broken=2),
                agent("security", "failed", error="model server failed", tokens_out=0),
                agent("synthesis", "succeeded", truncated=True, tokens_in=123_456, seconds=1234.5),
                agent("validation", "succeeded", cache_reuse=1.0),
            ],
        )
    )
    return (
        "## Summary\nTwo real problems.\n\n## Findings\n"
        "| where | what |\n|---|---|\n"
        f"| `{PATH}` | shell=True |\n| {URL} | fetched without a timeout |\n\n"
        "```\nresult = subprocess.run(" + ", ".join(f"arg{i}" for i in range(40)) + ")\n```\n\n"
        f"{method}\n"
    )


@pytest.fixture
def wide_run(run_with: Any, target_dir: Path, alice: Any) -> FlowRun:
    """A finished review whose report (as the pane shows it) is the wide one above."""
    run = run_with(target_dir, alice)
    report = wide_report()
    FlowRun.objects.filter(id=run.id).update(
        report=report, report_data={**run.report_data, "linked_report": report}
    )
    return run


# Measured in one evaluation, elements looked up fresh; the Method frame is then scrolled to
# its end and measured again: its last column in view, its first one still at its left edge.
MEASURE = """() => {
  const block = document.querySelector("[data-testid=report]");
  const frames = [...block.querySelectorAll(".table-scroll")].map(frame => {
    const heads = [...frame.querySelectorAll("th")];
    const before = {scroll: frame.scrollWidth, client: frame.clientWidth,
      heads: heads.map(th => th.innerText.replace(/\\s+/g, " ").trim()),
      cells: [...frame.querySelectorAll("td")].map(td => td.innerText),
      heights: [...frame.querySelectorAll("th, td")].map(c => c.getBoundingClientRect().height)};
    frame.scrollLeft = frame.scrollWidth;
    const box = frame.getBoundingClientRect();
    const first = heads[0].getBoundingClientRect(), last = heads.at(-1).getBoundingClientRect();
    before.scrolled = frame.scrollLeft;
    before.first = [first.left - box.left, first.right - box.left];
    before.last = [last.left - box.left, last.right - box.left];
    before.box = box.width;
    before.background = getComputedStyle(frame).backgroundImage;
    frame.scrollLeft = 0;
    return before;
  });
  return {block: [block.scrollWidth, block.clientWidth], page: document.documentElement.scrollWidth,
    frames};
}"""


def measured(page: Any) -> dict[str, Any]:
    page.locator("[data-testid=report] .table-scroll").first.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=report] .table-scroll')?.clientWidth > 0"
    )
    result: dict[str, Any] = page.evaluate(MEASURE)
    print(page.viewport_size["width"], {k: v for k, v in result.items() if k != "frames"})
    for frame in result["frames"]:
        print("  frame", frame["scroll"], frame["client"], frame["heads"][:2])
    return result


@pytest.mark.parametrize("width", [550, 375])
def test_in_a_narrow_pane_the_method_table_scrolls_in_its_frame_not_the_report(
    server, browser, alice, wide_run, width
):
    """The report block never scrolls sideways; the Method table does, inside its frame (with
    a shadow at the edge that has more), every column's header is there, its last column comes
    into view and its agent column stays; the table of paths and URLs fits, wrapped."""
    page = log_in(browser, server, "alice", "alice-pass-123", width=width, height=900)
    page.goto(f"{server}/runs/{wide_run.id}/?embed=1")
    result = measured(page)
    scroll_width, client_width = result["block"]
    assert scroll_width <= client_width, result["block"]
    assert result["page"] <= width
    found, method = result["frames"]
    assert method["heads"] == COLUMNS
    assert method["scroll"] > method["client"], "the Method table scrolls in its frame"
    assert method["client"] <= client_width
    assert "gradient" in method["background"], "the edge with more of the table is shaded"
    assert method["scrolled"] == method["scroll"] - method["client"]
    assert method["last"][0] >= 0 and method["last"][1] <= method["box"] + 0.5, method
    assert abs(method["first"][0]) < 1, "the agent column stays while the table scrolls"
    assert found["scroll"] <= found["client"], "long paths and URLs wrap instead"
    assert found["cells"][0] == PATH and found["cells"][2] == URL  # whole, as text
    page.screenshot(path=str(screenshot_dir() / f"report-tables-{width}.png"), full_page=True)


def test_at_1280_px_the_report_and_its_tables_read_as_before(server, browser, alice, wide_run):
    """Nothing scrolls, and every cell of the Method table holds one line."""
    page = log_in(browser, server, "alice", "alice-pass-123", width=1280, height=900)
    page.goto(f"{server}/runs/{wide_run.id}/")
    result = measured(page)
    scroll_width, client_width = result["block"]
    assert scroll_width <= client_width, result["block"]
    for frame in result["frames"]:
        assert frame["scroll"] <= frame["client"], frame["heads"]
    method = result["frames"][1]
    assert method["heads"] == COLUMNS
    # One line in every cell (a second line would add some 15 px; the top row draws the line
    # above the table, 1 px).
    assert max(method["heights"]) - min(method["heights"]) <= 1, method["heights"]
