"""The scripted model server: llama.cpp-shaped SSE over real sockets, fault rules, and the
deterministic scripts for specialists (driving a local tool stub), synthesizer and validator."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runs.demo.faults import FaultKind, FaultPlan, fault_plan, parse_rule
from runs.demo.scripts import reply_for
from runs.engine.agent.backends.base import EndpointConfig, FirstByte, TurnResult
from runs.engine.agent.backends.openai import OpenAICompatibleBackend

ROOT = Path(__file__).resolve().parent.parent
TOOL_NAMES = ("list_dir", "read_file", "grep", "glob", "file_info")
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in TOOL_NAMES
]
TREE = {
    "app/settings.py": 'DEBUG = True\nSECRET = "not-a-real-secret"\npassword = "hunter2"\n',
    "app/views.py": (
        "import subprocess\n\n\ndef run(cmd):\n    # TODO: validate the command first\n"
        "    return subprocess.run(cmd, shell=True)\n"
    ),
    "README.md": "# Shop\n",
}


def system(kind: str, role: str) -> dict[str, str]:
    return {
        "role": "system",
        "content": f"You are an agent.\n\nStep kind: {kind}\nAgent role: {role}",
    }


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in TREE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def raw_stream(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[Any]]:
    """POST and split the SSE body into decoded `data:` payloads (`[DONE]` kept as a string)."""
    response = httpx.post(f"{url}/chat/completions", json=body, timeout=10)
    payloads: list[Any] = []
    for line in response.text.split("\n\n"):
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            payloads.append(data if data == "[DONE]" else json.loads(data))
    return response, payloads


def deltas(payloads: list[Any]) -> list[dict[str, Any]]:
    return [p["choices"][0]["delta"] for p in payloads if isinstance(p, dict) and p["choices"]]


# --- a local tool stub producing the documented result formats ---------------------------------


def run_tool(root: Path, name: str, args: dict[str, Any]) -> str:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    rel = {p: p.relative_to(root).as_posix() for p in files}
    if name == "list_dir":
        return "\n".join(
            f"{p.relative_to(root).as_posix()}/"
            if p.is_dir()
            else f"{rel[p]}  ({p.stat().st_size} bytes)"
            for p in sorted(root.rglob("*"))
        )
    if name == "grep":
        regex = re.compile(args["pattern"])
        hits = [
            f"{rel[p]}:{n}:{line.strip()}"
            for p in files
            for n, line in enumerate(p.read_text().splitlines(), start=1)
            if regex.search(line)
        ][: args.get("max_results", 50)]
        return "\n".join([*hits, f"[{len(hits)} matches]"])
    if name == "read_file":
        lines = (root / args["path"]).read_text().splitlines()
        start, end = args["start_line"], min(args["end_line"], len(lines))
        body = [f"{n:>6}\t{lines[n - 1]}" for n in range(start, end + 1)]
        return "\n".join([f"{args['path']} (lines {start}-{end} of {len(lines)})", *body])
    if name == "glob":
        return "\n".join(r for r in rel.values() if fnmatch.fnmatch(r, args["pattern"]))
    return f"{args.get('path')}: file"


def converse(url: str, root: Path, role: str, *, refuse: str = "") -> list[dict[str, Any]]:
    """Run a specialist to its final answer through the real backend and the tool stub."""
    messages = [system("specialist", role), user("Target: shop\nFocus: ")]

    async def go() -> None:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=url, model="scripted"))
        try:
            for _ in range(6):
                result = None
                async for event in backend.stream_turn(
                    messages=messages, tools=TOOLS, max_tokens=None
                ):
                    result = event if isinstance(event, TurnResult) else result
                assert result is not None
                calls = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in result.tool_calls
                ]
                messages.append(
                    {"role": "assistant", "content": result.content, "tool_calls": calls}
                )
                if not calls:
                    return
                for call in result.tool_calls:
                    args = json.loads(call.arguments)
                    out = (
                        "refused: not allowed"
                        if call.name == refuse
                        else run_tool(root, call.name, args)
                    )
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": out})
        finally:
            await backend.aclose()

    asyncio.run(go())
    return messages


def tool_calls(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for m in messages
        if m["role"] == "assistant"
        for c in m["tool_calls"]
    ]


# --- the HTTP surface ---------------------------------------------------------------------------


def test_the_models_endpoint_lists_the_scripted_model(server):
    """GET /v1/models answers like an OpenAI-compatible server."""
    response = httpx.get(f"{server.url}/models")
    assert response.json() == {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
    assert server.url == f"http://127.0.0.1:{server.port}/v1"


def test_the_stream_is_shaped_like_llama_cpps(server):
    """role first, reasoning pieces, one word per content chunk, finish, usage, then [DONE]."""
    body = {
        "messages": [system("validator", "validator"), user("nothing cited")],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response, payloads = raw_stream(server.url, body)
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["connection"] == "close"
    parts = deltas(payloads)
    assert parts[0] == {"role": "assistant", "content": None}
    reasoning = [d["reasoning_content"] for d in parts if "reasoning_content" in d]
    content = [d["content"] for d in parts[1:] if d.get("content")]
    assert "".join(reasoning) == "Checking each finding against the checklist. "
    assert all(re.fullmatch(r"\S+\s*", piece) for piece in content)
    assert "".join(content).startswith("Summary: The report lists 0 cited findings")
    finish, usage, done = payloads[-3:]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(reasoning) + len(content)
    assert usage["usage"]["prompt_tokens"] == 12
    assert done == "[DONE]"


def test_tool_calls_stream_the_name_first_and_the_arguments_in_fragments(server):
    """First fragment: index, id, type, name and empty arguments; then 2+ argument pieces."""
    body = {
        "messages": [system("specialist", "tests"), user("Focus: ")],
        "tools": TOOLS,
        "stream": True,
    }
    _, payloads = raw_stream(server.url, body)
    calls = [d["tool_calls"][0] for d in deltas(payloads) if "tool_calls" in d]
    first, *rest = calls
    assert first["index"] == 0 and first["id"].startswith("call_") and first["type"] == "function"
    assert first["function"] == {"name": "list_dir", "arguments": ""}
    assert len(rest) >= 2 and all("name" not in c["function"] for c in rest)
    assert json.loads("".join(c["function"]["arguments"] for c in rest)) == {
        "path": ".",
        "depth": 2,
    }
    assert payloads[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert "usage" not in payloads[-2], "no usage chunk unless include_usage was asked for"


def test_a_non_streaming_request_gets_a_plain_json_completion(server):
    """stream false: one chat.completion object with the whole message."""
    body = {"messages": [system("specialist", "tests"), user("Focus: ")], "tools": TOOLS}
    answer = httpx.post(f"{server.url}/chat/completions", json=body).json()
    [choice] = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "list_dir"


def test_the_token_rate_and_first_byte_delay_pace_the_stream(server):
    """A slow prefill and a slow model are both reproducible."""
    server.first_byte_delay = 0.3
    server.token_rate = 100.0

    async def go() -> tuple[float, float, int]:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.url, model="scripted"))
        started, first = time.monotonic(), 0.0
        async for event in backend.stream_turn(
            messages=[system("validator", "validator"), user("x")], tools=None, max_tokens=None
        ):
            if isinstance(event, FirstByte):
                first = time.monotonic() - started
            if isinstance(event, TurnResult):
                await backend.aclose()
                return first, time.monotonic() - started, event.usage.completion_tokens
        raise AssertionError("no result")

    first, total, pieces = asyncio.run(go())
    assert first >= 0.3
    assert total >= 0.3 + (pieces - 1) / 100.0


def test_sixty_four_concurrent_streams_are_served(server):
    """Every agent of a big run may stream at once."""
    server.token_rate = 200.0
    body = {"messages": [system("validator", "validator"), user("x")], "stream": True}

    async def go() -> list[str]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            responses = await asyncio.gather(
                *(client.post(f"{server.url}/chat/completions", json=body) for _ in range(64))
            )
        return [r.text for r in responses]

    texts = asyncio.run(go())
    assert len(texts) == 64 and all(t.endswith("data: [DONE]\n\n") for t in texts)
    assert len(server.requests) == 64


def test_main_serves_until_interrupted_and_prints_its_url():
    """`python -m devtools.fakemodel --port 0 ...` prints the URL and answers there."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devtools.fakemodel",
            "--port",
            "0",
            "--token-rate",
            "50",
            "--first-byte-delay",
            "0.1",
            "--fault",
            "http_500:role=security:times=2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://\S+/v1", line)
        assert url, line
        assert "http_500:role=security:times=2" in line
        assert httpx.get(f"{url.group(0)}/models").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C
        assert proc.wait(timeout=5) == 0


def test_main_rejects_an_unknown_fault_with_the_valid_kinds(capsys):
    """A typo in --fault is a usage error that lists what exists."""
    from runs.demo.server import main

    with pytest.raises(SystemExit) as exit_:
        main(["--port", "0", "--fault", "explode"])
    assert exit_.value.code == 2
    assert "unknown fault 'explode'; valid faults: refuse, http_429" in capsys.readouterr().err


# --- faults ----------------------------------------------------------------------------------


def test_fault_specs_parse_from_the_compact_cli_form():
    """kind[:role=X][:times=N][:seconds=S], and clear errors for anything else."""
    rule = parse_rule("stall_mid_stream:role=security:times=2:seconds=1.5")
    assert (rule.kind, rule.role, rule.times, rule.seconds) == (
        FaultKind.STALL_MID_STREAM,
        "security",
        2,
        1.5,
    )
    assert parse_rule("http_500").describe() == "http_500"
    assert rule.describe() == "stall_mid_stream:role=security:times=2:seconds=1.5"
    for bad, message in [
        ("nope", "unknown fault"),
        ("http_500:times=0", "times needs a whole number"),
        ("http_500:seconds=soon", "seconds needs a number"),
        ("http_500:colour=red", "bad fault option"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_rule(bad)


def test_fault_counters_hold_under_many_threads():
    """times=N means exactly N requests, however many arrive at once."""
    plan = FaultPlan.parse(["http_500:times=10"])
    taken: list[Any] = []
    threads = [threading.Thread(target=lambda: taken.append(plan.take(None))) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(rule is not None for rule in taken) == 10
    assert plan.hits() == {"http_500:times=10": 10}


def test_a_role_filtered_fault_hits_only_that_agent(server):
    """`http_500:role=security` fails the security agent and nobody else."""
    server.faults = fault_plan("http_500:role=security")

    def post(role: str) -> httpx.Response:
        body = {"messages": [system("specialist", role), user("Focus: ")], "stream": True}
        return httpx.post(f"{server.url}/chat/completions", json=body)

    assert post("security").status_code == 500
    assert post("correctness").status_code == 200


def test_refuse_closes_the_connection_without_a_response(server):
    """The client sees a disconnect, not an HTTP status."""
    server.faults = fault_plan("refuse:times=1")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.post(f"{server.url}/chat/completions", json={"messages": [], "stream": True})


def test_bad_tool_args_send_arguments_that_are_not_json(server):
    """The model asks for its tool with arguments nobody can parse."""
    server.faults = fault_plan("bad_tool_args:times=1")
    body = {
        "messages": [system("specialist", "tests"), user("Focus: ")],
        "tools": TOOLS,
        "stream": True,
    }
    _, payloads = raw_stream(server.url, body)
    calls = [d["tool_calls"][0] for d in deltas(payloads) if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "grep"
    with pytest.raises(json.JSONDecodeError):
        json.loads("".join(c["function"]["arguments"] for c in calls))


def test_loop_tool_asks_for_the_same_tool_forever(server):
    """Even a final turn offered no tools gets the same call back, never an answer."""
    server.faults = fault_plan("loop_tool")
    bodies = [
        {"messages": [system("specialist", "tests"), user("Focus: ")], "tools": TOOLS},
        {"messages": [system("validator", "validator"), user("report")]},
    ]
    answers = [httpx.post(f"{server.url}/chat/completions", json=b).json() for b in bodies]
    calls = [a["choices"][0]["message"]["tool_calls"] for a in answers]
    assert calls[0] == calls[1] and calls[0][0]["function"]["name"] == "grep"


# --- scripts ---------------------------------------------------------------------------------


def test_a_specialist_lists_greps_reads_then_cites_real_lines(server, tree):
    """list_dir -> grep -> read_file -> 2-4 findings citing real lines with their real text."""
    messages = converse(server.url, tree, "security")
    calls = tool_calls(messages)
    assert [name for name, _ in calls] == ["list_dir", "grep", "read_file"]
    assert calls[0][1] == {"path": ".", "depth": 2}
    assert (
        calls[1][1]["pattern"] == r"password|secret|token|eval\(|exec\(|subprocess|pickle|md5|sha1"
    )
    assert calls[2][1] == {"path": "app/settings.py", "start_line": 1, "end_line": 10}
    answer = messages[-1]["content"]
    cited = re.findall(r"`([^`\s]+):(\d+)` — `([^`]+)`", answer)
    assert 2 <= len(cited) <= 4
    for path, line, quote in cited:
        assert (tree / path).read_text().splitlines()[int(line) - 1].strip() == quote
    assert "**Hard-coded credential** (codebase) `app/settings.py:2`" in answer
    assert "**Shell command execution** (codebase) `app/views.py:1`" in answer
    assert {path for path, _, _ in cited} == {"app/settings.py", "app/views.py"}


def test_each_turn_streams_reasoning_and_a_resumed_conversation_continues_the_same(server, tree):
    """The answer depends only on the messages: replaying any prefix gives the same reply."""
    messages = converse(server.url, tree, "correctness")
    assert "TODO" in tool_calls(messages)[1][1]["pattern"]
    for cut in range(2, len(messages) + 1):
        body = {"messages": messages[:cut], "tools": TOOLS}
        first, again = reply_for(body), reply_for(json.loads(json.dumps(body)))
        assert first == again and first.reasoning
    final = reply_for({"messages": messages[:-1], "tools": TOOLS})
    assert final.content == messages[-1]["content"]
    assert final.reasoning.startswith("Looking at the files that match")


def test_a_refused_tool_does_not_stop_the_specialist(server, tree):
    """An error result still counts as a round: the script moves on to the next tool."""
    messages = converse(server.url, tree, "security", refuse="list_dir")
    assert [name for name, _ in tool_calls(messages)] == ["list_dir", "grep", "read_file"]
    assert "`app/settings.py:2`" in messages[-1]["content"]


def test_a_lens_with_no_matches_says_no_evidence_was_found(server, tmp_path):
    """No grep hits: no read_file, and the answer says so instead of inventing findings."""
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    messages = converse(server.url, tmp_path, "tests")
    assert [name for name, _ in tool_calls(messages)] == ["list_dir", "grep"]
    assert messages[-1]["content"].startswith("No evidence found for this lens.")


def test_the_synthesizer_merges_cited_findings_and_names_a_failed_agent():
    """Every cited finding once, the upstream keys listed, a failed lens called uncovered."""
    finding = '- **Hard-coded credential** (codebase) `app/settings.py:2` — `SECRET = "x"`: bad.'
    upstream = "\n".join(
        [
            "Target: shop",
            "Focus: ",
            "",
            "### Output of security (security)",
            "### Security findings",
            "",
            finding,
            "- **Shell** (codebase) `app/views.py:1` — `import subprocess`: risky.",
            "",
            "### Output of secrets (secrets)",
            finding,
            "Uncited musing.",
            "",
            "### Output of performance (performance) (failed)",
            "This agent failed; no output.",
        ]
    )
    content = reply_for(
        {"messages": [system("synthesizer", "synthesizer"), user(upstream)]}
    ).content
    findings, agents = content.split("## Agents")
    assert findings.count("app/settings.py:2") == 1 and "`app/views.py:1`" in findings
    assert "Uncited musing" not in findings
    assert "- security\n- secrets\n" in agents
    assert "Agent performance failed; its lens is not covered." in agents


def test_the_synthesizer_of_a_draft_flow_writes_a_draft_document_with_a_cut_list():
    """Sections from the flow's prompt, a few cited proposals, the rest cut with reopen triggers."""
    from flows.prompts import RunBrief, opening_messages
    from flows.registry import get_flow

    flow = get_flow("feature-specification")
    brief = RunBrief(flow=flow, band="small", fast=False, focus="totals", target_name="shop")
    step = flow.step("synthesis")
    findings = [
        f"- **Finding {n}** (codebase) `app/views.py:{n}` — `line {n}`: why {n}." for n in range(5)
    ]
    upstream = "\n".join(
        ["Target: shop", "Focus: totals", "", "### Output of context (context)", *findings]
    )
    # The agent's part (which names the document) comes first, as the engine sends it.
    request = {"messages": opening_messages(brief, step, flow.depth.normal, [])}
    request["messages"][1]["content"] += "\n\n" + upstream
    content = reply_for(request).content
    assert content.startswith("**Draft feature specification**")
    headings = [line for line in content.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Problem",
        "## Behaviour",
        "## Scope",
        "## Cut list (YAGNI)",
        "## Open questions",
        "## Agents",
    ]
    proposed, cut = content.split("## Cut list (YAGNI)")
    assert proposed.count("**Account for the finding") == 3
    assert all(f"`app/views.py:{n}`" in proposed for n in range(3))
    cut_items = [line for line in cut.split("## Open questions")[0].splitlines() if line]
    assert len(cut_items) == 4  # two findings beyond the proposals, two parts always cut
    assert all("Reopen trigger:" in item for item in cut_items)
    assert "`app/views.py:4`" in cut and "Focus: totals" in proposed


def test_the_synthesizer_of_a_review_flow_writes_findings_not_a_draft():
    from flows.prompts import RunBrief, opening_messages
    from flows.registry import get_flow

    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band="small", fast=False, focus="", target_name="shop")
    request = {"messages": opening_messages(brief, flow.step("synthesis"), flow.depth.normal, [])}
    content = reply_for(request).content
    assert content.startswith("## Findings") and "Cut list" not in content


@pytest.mark.parametrize(
    ("report", "confidence", "summary"),
    [
        (
            "- a `a.py:1` — `x`\n- b `b.py:2` — `y`\n- c `b.py:3` — `z`",
            "high",
            "3 cited findings across 2 files",
        ),
        ("- a `a.py:1` — `x`", "medium", "1 cited finding across 1 file"),
        (
            "- a `a.py:1`\n- b `b.py:1`\n- c `c.py:1`\n- Agent tests failed; its lens is not covered.",
            "medium",
            "but agent tests failed",
        ),
        ("No cited findings were reported.", "low", "0 cited findings across 0 files"),
    ],
    ids=["high", "medium", "failed-agent", "low"],
)
def test_the_validator_answers_in_the_three_line_format(report, confidence, summary):
    """Summary, Confidence and Reasons lines; confidence from the cited findings and failures."""
    body = {
        "messages": [
            system("validator", "validator"),
            user("### Output of synthesis (synthesizer)\n" + report),
        ]
    }
    lines = reply_for(body).content.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Summary: The report lists ") and summary in lines[0]
    assert lines[0].endswith(".") and lines[0].count(". ") == 0, "one sentence"
    assert lines[1] == f"Confidence: {confidence}"
    assert lines[2].startswith("Reasons: ") and "cite path:line evidence" in lines[2]


def test_max_tokens_stops_the_content_with_finish_reason_length(server):
    """Content stops after max_tokens pieces."""
    body = {
        "messages": [system("validator", "validator"), user("x")],
        "stream": True,
        "max_tokens": 2,
    }
    _, payloads = raw_stream(server.url, body)
    content = [d["content"] for d in deltas(payloads)[1:] if d.get("content")]
    assert content == ["Summary: ", "The "]
    assert payloads[-2]["choices"][0]["finish_reason"] == "length"
