"""What llama-server streams for a chat completion: chunk shapes, usage, timings, cut-offs, and
the bytes a model can put in `content` (NUL and control characters included)."""

from __future__ import annotations

import json

from devtools.llamacpp.server import LlamaServer
from devtools.llamacpp.vocab import build_vocabulary, byte_to_unicode
from tests.realserver.chat import stream_chat, token_id
from tests.realserver.facts import Observations


def test_a_stream_sends_a_role_then_text_then_the_finish_then_usage_with_timings(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(one_slot, max_tokens=12, ignore_eos=True)
    assert stream.status == 200
    assert stream.done  # `data: [DONE]` closes the stream
    first, *middle, finish, last = stream.chunks
    assert first["choices"][0]["delta"].get("role") == "assistant"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in stream.chunks)
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in middle)
    assert finish["choices"][0]["finish_reason"] == "length"
    assert finish["choices"][0]["delta"] == {}
    # With include_usage the usage comes alone, in a chunk whose choices are empty.
    assert last["choices"] == []
    assert last["usage"]["completion_tokens"] == 12
    assert last["usage"]["total_tokens"] == (
        last["usage"]["prompt_tokens"] + last["usage"]["completion_tokens"]
    )
    timings = last["timings"]
    assert timings["predicted_n"] == 12
    assert timings["prompt_n"] + timings["cache_n"] == last["usage"]["prompt_tokens"]
    assert timings["predicted_per_second"] > 0
    assert "timings" not in finish
    observed.note(
        "stream shape",
        f"first delta {first['choices'][0]['delta']}; {len(middle)} content chunks; finish chunk "
        f"delta {{}} finish_reason 'length'; then choices [] + usage {last['usage']} "
        f"+ timings keys {sorted(timings)}; then [DONE]",
    )
    observed.note(
        "decode speed",
        f"{timings['predicted_per_second']:.0f} tokens/s decode, "
        f"{timings['prompt_per_second']:.0f} tokens/s prompt (tiny model, 1 thread)",
    )


def test_a_repeated_prompt_is_served_from_the_slot_cache(
    one_slot: LlamaServer, observed: Observations
) -> None:
    messages = [{"role": "user", "content": "A prompt long enough to be worth caching. " * 8}]
    first = stream_chat(one_slot, messages=messages, max_tokens=4, ignore_eos=True)
    second = stream_chat(one_slot, messages=messages, max_tokens=4, ignore_eos=True)
    assert first.usage["prompt_tokens"] == second.usage["prompt_tokens"]
    assert second.timings["cache_n"] > 0
    assert second.timings["prompt_n"] < first.timings["prompt_n"]
    observed.note(
        "prompt cache",
        f"same prompt twice: prompt_n {first.timings['prompt_n']} then "
        f"{second.timings['prompt_n']}, cache_n {first.timings['cache_n']} then "
        f"{second.timings['cache_n']} (prompt_tokens {second.usage['prompt_tokens']} both times)",
    )


def test_an_answer_cut_at_max_tokens_says_length(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(one_slot, max_tokens=3, ignore_eos=True)
    assert stream.finish_reasons == ["length"]
    assert stream.usage["completion_tokens"] == 3
    natural = stream_chat(one_slot, max_tokens=400, seed=1)
    observed.note(
        "finish_reason",
        f"max_tokens=3 -> 'length' after 3 tokens; unforced, seed 1, max 400 -> "
        f"{natural.finish_reasons} after {natural.usage['completion_tokens']} tokens",
    )


def test_the_model_can_put_nul_and_control_bytes_in_content(
    one_slot: LlamaServer, observed: Observations
) -> None:
    nul, escape, bell = (token_id(one_slot, text) for text in ("\x00", "\x1b", "\x07"))
    bias = {str(nul): 30, str(escape): 30, str(bell): 30}
    stream = stream_chat(one_slot, max_tokens=24, ignore_eos=True, logit_bias=bias)
    assert "\x00" in stream.content
    assert {"\x1b", "\x07"} & set(stream.content)
    observed.note(
        "NUL and control bytes",
        f"a logit bias on the byte tokens for 0x00/0x1b/0x07 streams them in delta.content "
        f"as JSON escapes (\\u0000...): {json.dumps(stream.content[:24])}",
    )


def test_unbiased_gibberish_already_carries_control_bytes(
    one_slot: LlamaServer, observed: Observations
) -> None:
    stream = stream_chat(one_slot, max_tokens=300, ignore_eos=True, seed=3, temperature=1.5)
    controls = sorted({c for c in stream.content if ord(c) < 0x20 and c not in "\n\t"})
    assert controls
    replaced = stream.content.count("\ufffd")
    observed.note(
        "unforced bytes",
        f"300 sampled tokens (seed 3, temperature 1.5) carried control characters "
        f"{[hex(ord(c)) for c in controls]}, NUL {'present' if '\x00' in controls else 'absent'}, "
        f"{replaced} U+FFFD replacement characters for broken UTF-8",
    )


def test_a_lone_invalid_utf8_byte_reaches_the_client_as_a_replacement_character(
    one_slot: LlamaServer, observed: Observations
) -> None:
    # /tokenize cannot be asked for a lone 0xFF (not UTF-8), so the id comes from the vocabulary.
    byte_ff = build_vocabulary().token_id(byte_to_unicode()[0xFF])
    stream = stream_chat(one_slot, max_tokens=6, ignore_eos=True, logit_bias={str(byte_ff): 100})
    assert stream.content == "\ufffd" * 6  # one U+FFFD per broken byte, never the raw byte
    observed.note(
        "invalid UTF-8",
        f"6 tokens of the lone byte 0xFF stream as {json.dumps(stream.content)} "
        f"(completion_tokens {stream.usage['completion_tokens']})",
    )
