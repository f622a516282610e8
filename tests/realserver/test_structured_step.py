"""A step kind's schema through the project's own backend against the real server: the answer
the server lets through parses and renders; one cut at max_tokens is unusable, and says why."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from devtools.llamacpp.server import LlamaServer
from flows.models import FlowKind, StepKind
from flows.report import parse_verdict
from flows.structured import Unusable, parse, render, response_format, shape_for
from runs.engine.agent.backends.base import BackendError, EndpointConfig, TurnResult
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from tests.realserver.chat import HELLO
from tests.realserver.facts import Observations

SYNTHESIZER = shape_for(StepKind.SYNTHESIZER, FlowKind.ANALYSIS)


def structured_turn(server: LlamaServer, max_tokens: int) -> TurnResult:
    async def go() -> TurnResult:
        backend = OpenAICompatibleBackend(
            EndpointConfig(base_url=server.base_url, model="tiny", max_retries=0)
        )
        try:
            assert SYNTHESIZER is not None
            events: list[Any] = [
                event
                async for event in backend.stream_turn(
                    messages=HELLO,
                    tools=None,
                    max_tokens=max_tokens,
                    response_format=response_format(SYNTHESIZER),
                )
            ]
        finally:
            await backend.aclose()
        assert isinstance(events[-1], TurnResult)
        return events[-1]

    return asyncio.run(go())


def test_the_synthesizer_schema_comes_back_parseable_through_the_backend(
    one_slot: LlamaServer, observed: Observations
) -> None:
    assert SYNTHESIZER is not None
    answered, failed = [], []
    # The random model's JSON may run past the limit or trip the server's parser (a 500): on
    # this server a try parses about one time in three, so eight tries, until one stops.
    for _ in range(8):
        if answered:
            break
        try:
            result = structured_turn(one_slot, max_tokens=1200)
        except BackendError as exc:  # llama.cpp's chat parser may refuse random output (500)
            failed.append(str(exc))
            continue
        if result.finish_reason == "length":  # cut at the limit: not an answer (next test)
            failed.append(f"cut at max_tokens after {len(result.content)} characters")
            continue
        answered.append(result)
    assert answered, failed
    for result in answered:
        assert result.finish_reason == "stop"
        markdown = render(parse(SYNTHESIZER, result.content))  # every answer fits the schema
        assert markdown.startswith("## Findings")
    assert parse_verdict(markdown) is None  # a findings answer is not a verdict
    observed.note(
        "synthesizer schema through the backend",
        f"answer parsed and rendered after {len(failed)} refused tries: {failed[:1]}",
    )


def test_a_structured_answer_cut_at_max_tokens_is_unusable(
    one_slot: LlamaServer, observed: Observations
) -> None:
    assert SYNTHESIZER is not None
    try:
        result = structured_turn(one_slot, max_tokens=12)
    except BackendError as exc:
        pytest.fail(f"a cut answer should arrive as a result: {exc}")
    assert result.finish_reason == "length"
    with pytest.raises(Unusable) as unusable:
        parse(SYNTHESIZER, result.content)
    observed.note(
        "structured answer cut at max_tokens",
        f"finish_reason 'length', content {result.content[:60]!r}: {unusable.value}",
    )
