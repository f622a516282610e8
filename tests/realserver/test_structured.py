"""Structured output from random weights: a JSON schema, tool calls through Qwen's template with
`--jinja`, and reasoning split out of `<think>`.

Random weights never choose `<tool_call>` on their own, and llama.cpp's tool grammar lets free
text come first, so the tool-call tests steer the sampler: a bias towards `<tool_call>`, a
presence penalty on the last token so a newline follows it (entering the call), and a bias
towards `<|im_end|>` so the answer ends after one call. The grammar does the rest.
"""

from __future__ import annotations

import json
import re

from devtools.llamacpp.server import LlamaServer
from tests.realserver.chat import (
    PATH_PATTERN,
    READ_ANYTHING,
    READ_FILE,
    steer_to_a_tool_call,
    stream_chat,
)
from tests.realserver.facts import Observations

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["ok", "bad"]},
        "line": {"type": "integer", "minimum": 1, "maximum": 999},
    },
    "required": ["verdict", "line"],
    "additionalProperties": False,
}


def test_a_json_schema_response_format_yields_json_that_fits_it(
    one_slot: LlamaServer, observed: Observations
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": VERDICT_SCHEMA},
    }
    stream = stream_chat(one_slot, max_tokens=400, response_format=response_format)
    assert stream.finish_reasons == ["stop"]
    answer = json.loads(stream.content)
    assert answer["verdict"] in {"ok", "bad"}
    assert 1 <= answer["line"] <= 999
    observed.note(
        "response_format json_schema",
        f"random weights answer {stream.content!r} ({stream.usage['completion_tokens']} "
        f"tokens, whitespace included), finish_reason 'stop'",
    )


def test_a_required_tool_call_streams_as_tool_call_deltas(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(
        one_slot,
        max_tokens=120,
        tools=[READ_FILE],
        tool_choice="required",
        **steer_to_a_tool_call(one_slot),
    )
    assert stream.finish_reasons == ["tool_calls"]
    assert stream.done
    calls = list(stream.tool_calls.values())
    assert calls  # usually one; the sampler may open a second before it ends
    for call in calls:
        assert call["name"] == "read_file"
        assert call["id"]
        assert re.fullmatch(PATH_PATTERN, json.loads(call["arguments"])["path"])
    assert stream.content == ""
    first = next(d["tool_calls"][0] for d in stream.deltas if d.get("tool_calls"))
    pieces = sum(1 for d in stream.deltas if d.get("tool_calls"))
    observed.note(
        "tool call",
        f"first fragment {json.dumps(first)}; then fragments of arguments only (index, no id "
        f"or name): {pieces} fragments for {len(calls)} call(s), first joined "
        f"{calls[0]['arguments']!r}; finish_reason 'tool_calls'; content empty",
    )


def test_a_tool_call_cut_by_max_tokens_ends_with_length_and_broken_arguments(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(
        one_slot,
        max_tokens=12,
        tools=[READ_FILE],
        tool_choice="required",
        **steer_to_a_tool_call(one_slot),
    )
    assert stream.finish_reasons == ["length"]
    [call] = stream.tool_calls.values()
    assert call["name"] == "read_file"
    try:
        json.loads(call["arguments"])
        raise AssertionError(f"12 tokens should not finish the call: {call['arguments']!r}")
    except json.JSONDecodeError:
        pass
    observed.note(
        "tool call cut at max_tokens",
        f"finish_reason 'length' with a named call (id {bool(call['id'])}) whose arguments "
        f"stop at {call['arguments']!r}: not JSON",
    )


def test_parallel_tool_calls_false_does_not_stop_a_second_call(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(
        one_slot,
        max_tokens=120,
        tools=[READ_FILE],
        tool_choice="required",
        parallel_tool_calls=False,
        **steer_to_a_tool_call(one_slot, then_stop=False),
    )
    assert len(stream.tool_calls) >= 2
    observed.note(
        "parallel_tool_calls false",
        f"not enforced by the grammar: {len(stream.tool_calls)} calls, finish_reason "
        f"{stream.finish_reasons} at max_tokens 120",
    )


def test_a_tool_call_marker_inside_the_arguments_fails_the_stream_with_a_500(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(
        one_slot,
        max_tokens=120,
        tools=[READ_ANYTHING],
        tool_choice="required",
        **steer_to_a_tool_call(one_slot, then_stop=False),
    )
    assert stream.status == 200
    [error] = stream.errors
    assert error["code"] == 500
    assert "does not match the expected" in error["message"]
    assert not stream.done
    assert stream.finish_reasons == []
    observed.note(
        "tool-call marker in arguments",
        f"the stream (HTTP 200) ends with data: {json.dumps({'error': error})} and no [DONE]; "
        f"arguments so far {stream.tool_calls[0]['arguments']!r}",
    )


def test_an_auto_tool_choice_with_random_weights_answers_in_text(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(one_slot, max_tokens=40, tools=[READ_FILE], seed=11)
    assert not stream.tool_calls
    assert stream.finish_reasons
    observed.note(
        "tool_choice auto",
        f"unsteered random weights answer in text; finish_reason {stream.finish_reasons}",
    )


def test_think_tags_come_back_as_reasoning_content(
    one_slot: LlamaServer, observed: Observations
) -> None:
    grammar = 'root ::= "<think>\\n" [a-z ]{4,12} "\\n</think>\\n\\n" [a-z ]{4,12}'
    stream = stream_chat(one_slot, max_tokens=60, grammar=grammar)
    assert stream.reasoning.strip()
    assert "<think>" not in stream.content
    assert "</think>" not in stream.content
    observed.note(
        "reasoning_content",
        f"'<think>…</think>' forced by a grammar streams as delta.reasoning_content "
        f"{stream.reasoning!r}, then delta.content {stream.content!r}",
    )
