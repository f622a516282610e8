"""What the client does so a llama.cpp server's prompt cache can reuse the most: every agent of
a run opens with the same system message and tools, and every later request of an agent starts
with exactly what its previous request sent plus what the model answered (append-only).

The real server's side of this (token prefixes, `cache_n`) is in tests/realserver/.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from runs.demo.faults import fault_plan
from runs.demo.scripts import marker
from runs.engine.agent.backends.base import Timings, ToolCall, TurnResult
from runs.engine.agent.events import EventSink
from runs.engine.agent.loop import BUDGET_SPENT, _offer, _say_budget_spent
from runs.engine.agent.turn import TurnState, assistant_message, count_turn
from runs.engine.target.tools import ReadOnlyTools
from runs.services import launch_run

pytestmark = pytest.mark.django_db(transaction=True)


def _by_agent(requests: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    agents: dict[str, list[dict[str, Any]]] = {}
    for body in requests:
        agents.setdefault(marker(body, "Agent role") or "?", []).append(body)
    return agents


def test_every_agent_of_a_run_opens_with_the_same_system_message_and_tools(
    run_to_end, scripted_model, target_dir: Path
):
    """The system message and the tools are the run's, byte for byte; each agent's own part
    is in its user message."""
    run_to_end(launch_run(flow="code-review", target=str(target_dir), band="large"))
    firsts = [bodies[0] for bodies in _by_agent(scripted_model.requests).values()]
    assert len(firsts) == 8  # six lenses, the synthesizer, the validator
    assert len({repr(body["messages"][0]) for body in firsts}) == 1
    assert len({repr(body.get("tools")) for body in firsts}) == 1
    assert len({body["messages"][1]["content"] for body in firsts}) == len(firsts)


def test_every_later_request_of_an_agent_extends_its_previous_one(
    run_to_end, scripted_model, target_dir: Path
):
    """Nothing sent is rewritten on a later turn; the model's turn comes back as it streamed,
    its reasoning included."""
    run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    checked = 0
    for role, bodies in _by_agent(scripted_model.requests).items():
        for earlier, later in itertools.pairwise(bodies):
            sent = earlier["messages"]
            assert later["messages"][: len(sent)] == sent, role
            answer = later["messages"][len(sent)]
            assert answer["role"] == "assistant" and answer["reasoning_content"], role
            checked += 1
    assert checked >= 6  # two specialists, three tool rounds each


def test_the_last_turn_is_announced_in_the_tool_result_not_in_a_new_user_message(
    run_to_end, scripted_model, target_dir: Path
):
    """A user message after the tool rounds would make Qwen's template drop every earlier
    turn's reasoning, so the server's cache would stop at the first of them."""
    scripted_model.faults = fault_plan("loop_tool:role=security")
    run_to_end(launch_run(flow="code-review", target=str(target_dir), fast=True))
    bodies = _by_agent(scripted_model.requests)["security"]
    last = bodies[-1]["messages"]
    assert [m["role"] for m in last].count("user") == 1
    assert last[-1]["role"] == "tool" and last[-1]["content"].endswith(BUDGET_SPENT)
    for earlier, later in itertools.pairwise(bodies):
        assert later["messages"][: len(earlier["messages"])] == earlier["messages"]


def test_the_budget_note_is_added_once_and_only_to_an_unread_tool_result():
    messages: list[dict[str, Any]] = [{"role": "system", "content": "s"}, {"role": "user"}]
    _say_budget_spent(messages)
    assert messages == [{"role": "system", "content": "s"}, {"role": "user"}]
    messages.append({"role": "tool", "tool_call_id": "a", "content": "file text"})
    _say_budget_spent(messages)
    _say_budget_spent(messages)  # a resumed attempt says it again: still once
    assert messages[-1]["content"] == f"file text\n\n{BUDGET_SPENT}"


def test_an_assistant_turn_goes_back_with_its_reasoning_and_its_arguments_as_streamed():
    arguments = '{"path":  "a.py" , "start_line":1}'  # odd spacing kept: the server made it
    result = TurnResult(
        content="",
        reasoning="\nLooking first.\n",
        tool_calls=(ToolCall(id="c1", name="read_file", arguments=arguments),),
        usage=None,
        finish_reason="tool_calls",
    )
    message = assistant_message(result)
    assert message["reasoning_content"] == "\nLooking first.\n"
    assert message["tool_calls"][0]["function"]["arguments"] == arguments
    plain = assistant_message(
        TurnResult(content="done", reasoning="", tool_calls=(), usage=None, finish_reason="stop")
    )
    assert plain == {"role": "assistant", "content": "done"}


def test_a_turn_that_must_answer_keeps_the_tools_only_on_a_server_that_shows_it_is_llama_cpp(
    tmp_path: Path,
):
    """tool_choice "none" keeps the prompt's prefix (the tools render before the conversation);
    a server that never sent llama.cpp's timings may not honour it, so it gets no tools."""
    toolbox = ReadOnlyTools(tmp_path)
    other = TurnState(messages=[], turns=1, tool_calls=0, tokens_in=0, tokens_out=0)
    assert _offer(toolbox, other, answer_only=False) == (toolbox.specs(), "auto")
    assert _offer(toolbox, other, answer_only=True) == (None, "auto")
    llama = TurnState(messages=[], turns=1, tool_calls=0, tokens_in=0, tokens_out=0)
    count_turn(EventSink(uuid4(), 0, 0), llama, _timed_turn())
    assert llama.llama_cpp
    assert _offer(toolbox, llama, answer_only=True) == (toolbox.specs(), "none")


def _timed_turn() -> TurnResult:
    timings = Timings(
        prompt_n=10, cache_n=90, predicted_n=5, predicted_ms=50.0, predicted_per_second=100.0
    )
    return TurnResult(
        content="done",
        reasoning="",
        tool_calls=(),
        usage=None,
        finish_reason="stop",
        timings=timings,
    )


def test_an_exploring_demo_model_shows_what_fast_mode_cuts(
    run_to_end, scripted_model, target_dir: Path
):
    """The demo's specialists stop within fast mode's caps; told to keep reading (the demo's
    --explore), normal mode reads on past fast mode's 6 tool calls and fast mode stops at its
    caps: fewer tool calls and prompt tokens for the same flow and band."""
    scripted_model.explore = 24
    calls: dict[bool, list[int]] = {}
    tokens_in: dict[bool, int] = {}
    for fast in (False, True):
        run = run_to_end(launch_run(flow="code-review", target=str(target_dir), fast=fast))
        assert {s.status for s in run.steps.all()} == {"succeeded"}, fast
        specialists = [s for s in run.steps.all() if not s.depends_on]
        calls[fast] = [s.tool_calls for s in specialists]
        tokens_in[fast] = sum(s.tokens_in for s in specialists)
    print(f"\nexplore 24: tool calls {calls}, prompt tokens {tokens_in}")
    assert all(n > 6 for n in calls[False]), calls
    assert all(n <= 6 for n in calls[True]), calls
    assert tokens_in[True] < tokens_in[False], tokens_in
