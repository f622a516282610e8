"""The report's Method table stays as narrow as its numbers: a status cell holds the word, and
why an agent failed, was skipped or was cut off is a short list under the table."""

from __future__ import annotations

from flows.report import AgentLine, MethodFacts, render_method

LONG = (
    "model server failed: 9 tries over 62.0s, the last one: connection refused by "
    "http://127.0.0.1:8080/v1/chat/completions while reading the response headers"
)


def line(key: str, status: str, **extra) -> AgentLine:
    values = dict(attempts=1, tokens_in=1200, tokens_out=300, tool_calls=2, seconds=12.5)
    values.update(extra)
    return AgentLine(key=key, role=key, status=status, **values)


def method(agents: list[AgentLine] | None = None) -> str:
    if agents is None:
        agents = [
            line("correctness", "succeeded", decode_rate=42.46),
            line("tests", "failed", error=LONG, tokens_out=0, decode_rate=0.0),
            line("security", "skipped", error="# depends on tests, which failed"),
            line("synthesis", "succeeded", truncated=True),
        ]
    facts = MethodFacts(flow="code-review", band="small", fast=False, model="m", agents=agents)
    return render_method(facts)


def test_a_failed_agents_reason_is_under_the_table_not_in_its_cell():
    text = method()
    rows = [row for row in text.splitlines() if row.startswith("|")]
    assert len(rows) == 6
    assert all("connection refused" not in row and "depends" not in row for row in rows)
    assert max(len(row) for row in rows[2:]) < 100, rows  # no wider than the header
    by_key = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows[2:]}
    assert by_key == {
        "correctness": "succeeded",
        "tests": "failed",
        "security": "skipped",
        "synthesis": "succeeded (cut off)",
    }
    reasons = text.split(rows[-1] + "\n", 1)[1].splitlines()
    assert reasons == [
        "",
        f"- tests: {LONG}",
        "- security: \\# depends on tests, which failed",  # model-ish text cannot start a heading
        "- synthesis: answer cut off at the output limit",
    ]


def test_an_agent_that_generated_nothing_has_no_decode_speed():
    rows = {row.split("|")[1].strip(): row for row in method().splitlines() if row.startswith("|")}
    decode = {key: row.split("|")[7].strip() for key, row in rows.items()}
    assert decode["agent"] == "decode tok/s"  # the unit is said once, in the header
    assert decode["correctness"] == "42.5"
    assert decode["tests"] == "-"


def test_a_run_without_failures_has_no_list_under_the_table():
    text = render_method(
        MethodFacts(flow="f", band="small", fast=False, model="m", agents=[line("a", "succeeded")])
    )
    assert text.splitlines()[-1].startswith("| a | succeeded |")


def test_the_decode_speed_reads_as_the_pane_and_the_cli_say_it():
    """One rule for a speed (flows.report.rate): a demo model's 76,977 tok/s is 77k here as
    in the pane and the CLI, a real model's 42.46 is 42.5, and nothing generated is a dash."""
    text = method(
        [
            line("correctness", "succeeded", decode_rate=76_976.9),
            line("security", "succeeded", decode_rate=42.46),
            line("tests", "failed", error="boom", tokens_out=0, decode_rate=0.0),
        ]
    )
    cells = {
        row.split("|")[1].strip(): row.split("|")[7].strip()
        for row in text.splitlines()
        if row.startswith("| ") and not row.startswith("| agent")
    }
    assert cells == {"correctness": "77k", "security": "42.5", "tests": "-"}, cells
