"""What a real llama.cpp server can reuse of a run's prompts (issue 22, part 2 "Cut it").

First turns: every agent's first prompt is rendered by the server's own template
(`/apply-template`, exactly what the chat endpoint renders, tools included) and tokenized by its
own tokenizer (`/tokenize`); the share of the later agents' first-turn tokens that a prefix
already in the slot can cover is measured for the layout the engine sends and for the old one
(each agent's part at the end of the system message, before the tools).

Later turns: the engine builds turn 2 from turn 1's answer as the server streamed it; the
server's `cache_n` on turn 2 must cover the whole of turn 1's prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.llamacpp.server import LlamaServer
from devtools.testing import write_project
from flows.models import Band, StepDef
from flows.prompts import RunBrief, UpstreamOutput, agent_part, opening_messages, system_prompt
from flows.registry import get_flow
from runs.engine.agent.backends.base import ToolCall, TurnResult
from runs.engine.agent.turn import assistant_message
from runs.engine.target.tools import ReadOnlyTools
from tests.realserver.chat import READ_FILE, steer_to_a_tool_call, stream_chat
from tests.realserver.facts import Observations

# Measured with the tiny Qwen3 vocabulary and Qwen3's template: 88.5% (medium) and 89.6%
# (large) against 43.7% and 44.3% for the old layout.
NEW_LAYOUT_FLOOR = 0.85


def _rendered_tokens(server: LlamaServer, messages: list[dict[str, Any]], tools: Any) -> list[int]:
    with httpx.Client(timeout=30) as client:
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        prompt = client.post(f"{server.url}/apply-template", json=body).json()["prompt"]
        tokens = client.post(f"{server.url}/tokenize", json={"content": prompt}).json()["tokens"]
    return list(tokens)


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _upstream(step: StepDef) -> list[UpstreamOutput]:
    """Each dependency's output as a short findings list, as a specialist writes one."""
    return [
        UpstreamOutput(
            key=key,
            role=key,
            succeeded=True,
            text=f"- **A {key} finding** (codebase) `app/views.py:3` — `eval(x)`: it matters.",
        )
        for key in step.depends_on
    ]


def _old_layout(brief: RunBrief, step: StepDef) -> list[dict[str, Any]]:
    """Before issue 22: the agent's part closed the system message, before the tools."""
    depth = brief.flow.depth.normal
    _, user = opening_messages(brief, step, depth, _upstream(step))
    part = agent_part(brief, step, depth)
    return [
        {"role": "system", "content": system_prompt(brief) + "\n\n" + part},
        {"role": "user", "content": user["content"].replace(part + "\n\n", "")},
    ]


def _shared_share(prompts: list[list[int]]) -> float:
    """Of the first-turn tokens of every agent after the first, the share a prompt sent
    before it (what a slot may hold) already covers."""
    later = prompts[1:]
    covered = sum(max(_common(p, q) for q in prompts[:i]) for i, p in enumerate(later, start=1))
    return covered / sum(len(p) for p in later)


@pytest.mark.parametrize("band", ["medium", "large"])
def test_the_agents_of_a_code_review_share_most_of_their_first_prompt(
    one_slot: LlamaServer, observed: Observations, tmp_path: Path, band: Band
) -> None:
    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band=band, fast=False, focus="auth", target_name="shop")
    tools = ReadOnlyTools(write_project(tmp_path)).specs()
    roster = flow.roster(band)
    depth = flow.depth.normal
    new = [
        _rendered_tokens(one_slot, opening_messages(brief, s, depth, _upstream(s)), tools)
        for s in roster
    ]
    old = [_rendered_tokens(one_slot, _old_layout(brief, s), tools) for s in roster]
    new_share, old_share = _shared_share(new), _shared_share(old)
    observed.note(
        f"first-turn shared prefix ({band})",
        f"{len(roster)} agents, first prompts {min(map(len, new))}-{max(map(len, new))} tokens: "
        f"{new_share:.1%} of the later agents' first-turn tokens are a prefix sent before "
        f"(old layout, part before the tools: {old_share:.1%})",
    )
    assert new_share >= NEW_LAYOUT_FLOOR > old_share


def test_the_template_renders_the_reasoning_the_engine_sends_back(
    one_slot: LlamaServer, observed: Observations
) -> None:
    """An earlier assistant turn keeps its `<think>` block only when `reasoning_content` goes
    back (Qwen3's template): without it the prompt differs from what the model generated."""
    call = ToolCall(id="c1", name="read_file", arguments='{"path": "a.py"}')
    result = TurnResult(
        content="",
        reasoning="Reading a.py first.",
        tool_calls=(call,),
        usage=None,
        finish_reason="tool_calls",
    )
    sent = assistant_message(result)
    without = {k: v for k, v in sent.items() if k != "reasoning_content"}
    head = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    tool = {"role": "tool", "tool_call_id": "c1", "content": "print(1)"}
    with httpx.Client(timeout=30) as client:

        def render(message: dict[str, Any]) -> str:
            body = {"messages": [*head, message, tool], "tools": [READ_FILE]}
            return str(client.post(f"{one_slot.url}/apply-template", json=body).json()["prompt"])

        kept, dropped = render(sent), render(without)
    generated = "<think>\nReading a.py first.\n</think>\n\n<tool_call>"
    assert generated in kept
    assert "<think>" not in dropped
    observed.note(
        "reasoning sent back",
        f"with reasoning_content the earlier turn renders {generated!r}...; without it the "
        "think block is gone",
    )


def test_a_later_turn_finds_the_whole_earlier_prompt_in_the_cache(
    start_server: Any, observed: Observations, tmp_path: Path
) -> None:
    """Turn 2 = turn 1's prompt + turn 1's answer as the engine sends it back + a tool result:
    the server reuses all of turn 1's prompt, and says how much of its own answer."""
    server = start_server(slots=1, context=16384)
    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band="small", fast=False, focus="auth", target_name="shop")
    step = flow.roster("small")[0]
    messages = opening_messages(brief, step, flow.depth.normal, [])
    steer = {"tools": [READ_FILE], "tool_choice": "required", **steer_to_a_tool_call(server)}
    first = stream_chat(server, messages=messages, max_tokens=120, **steer)
    assert first.finish_reasons == ["tool_calls"], first.errors
    calls = tuple(
        ToolCall(id=c["id"], name=c["name"], arguments=c["arguments"])
        for _, c in sorted(first.tool_calls.items())
    )
    answer = TurnResult(
        content=first.content,
        reasoning=first.reasoning,
        tool_calls=calls,
        usage=None,
        finish_reason="tool_calls",
    )
    messages = [*messages, assistant_message(answer)]
    messages += [{"role": "tool", "tool_call_id": c.id, "content": "x = 1\n"} for c in calls]
    second = stream_chat(server, messages=messages, max_tokens=120, **steer)
    assert second.status == 200, second.error
    prompt_1 = first.usage["prompt_tokens"]
    generated_1 = first.usage["completion_tokens"]
    cached_2 = second.timings["cache_n"]
    assert cached_2 >= prompt_1  # nothing the first turn sent was rewritten
    reused = cached_2 - prompt_1
    # Where the rest differs: the server re-renders the arguments it parsed (its template takes
    # them as an object and writes them with `tojson`), not the text it streamed and got back.
    rendered = httpx.post(
        f"{server.url}/apply-template", json={"messages": messages, "tools": [READ_FILE]}
    ).json()["prompt"]
    back = rendered.rsplit('"arguments": ', 1)[1].split("}\n</tool_call>")[0]
    observed.note(
        "later turn cache",
        f"turn 2 cache_n {cached_2} = turn 1's prompt {prompt_1} + {reused} of its "
        f"{generated_1} generated tokens; arguments streamed {calls[0].arguments!r}, "
        f"rendered back {back!r}",
    )
