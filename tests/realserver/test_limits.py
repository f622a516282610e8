"""The context limit: a prompt that does not fit is refused with a 400 sentence; an answer that
runs into the end of the context is cut with `finish_reason: "length"`."""

from __future__ import annotations

import httpx

from devtools.llamacpp.server import LlamaServer
from tests.realserver.chat import chat_body, stream_chat
from tests.realserver.facts import Observations

FILLER = "review the code "


def prompt_tokens(server: LlamaServer, repeats: int) -> int:
    stream = stream_chat(server, messages=filler(repeats), max_tokens=1, ignore_eos=True)
    return int(stream.usage["prompt_tokens"])


def filler(repeats: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": FILLER * repeats}]


def test_a_prompt_larger_than_the_context_is_refused_with_a_400_sentence(
    one_slot: LlamaServer, observed: Observations
) -> None:
    streamed = stream_chat(one_slot, messages=filler(2000), max_tokens=8)
    assert streamed.status == 400
    error = streamed.error["error"]
    assert error["type"] == "exceed_context_size_error"
    assert error["code"] == 400
    assert "exceeds the available context size (2048 tokens)" in error["message"]
    plain = httpx.post(
        f"{one_slot.base_url}/chat/completions",
        json=chat_body(messages=filler(2000), max_tokens=8, stream=False),
        timeout=60,
    )
    assert plain.status_code == 400
    assert plain.json()["error"]["message"] == error["message"]
    observed.note(
        "context overflow",
        f"HTTP 400 before any chunk, streamed or not: {streamed.error}",
    )


def test_an_answer_that_reaches_the_end_of_the_context_is_cut_with_length(
    one_slot: LlamaServer, observed: Observations
) -> None:
    small, large = prompt_tokens(one_slot, 10), prompt_tokens(one_slot, 110)
    per_repeat = (large - small) / 100
    room = 30
    repeats = int(10 + (2048 - room - small) / per_repeat)
    stream = stream_chat(one_slot, messages=filler(repeats), max_tokens=200, ignore_eos=True)
    assert stream.status == 200
    assert stream.finish_reasons == ["length"]
    used = stream.usage["prompt_tokens"] + stream.usage["completion_tokens"]
    assert stream.usage["completion_tokens"] < 200
    assert used >= 2046
    observed.note(
        "context full while answering",
        f"prompt {stream.usage['prompt_tokens']} tokens, max_tokens 200: cut after "
        f"{stream.usage['completion_tokens']} tokens at {used}/2048 with finish_reason "
        f"'length' (the same word as max_tokens; no error)",
    )
