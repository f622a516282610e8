"""Plain-httpx helpers for talking to llama-server: one streamed chat completion, read whole."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from devtools.llamacpp.server import LlamaServer

HELLO = [{"role": "user", "content": "Say something about the code."}]


@dataclass
class Stream:
    """Everything one streamed request produced, as the server sent it."""

    status: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False  # `data: [DONE]` arrived
    error: Any = None  # the JSON body of a non-200 answer

    @property
    def content(self) -> str:
        return "".join(delta.get("content") or "" for delta in self.deltas)

    @property
    def reasoning(self) -> str:
        return "".join(delta.get("reasoning_content") or "" for delta in self.deltas)

    @property
    def deltas(self) -> list[dict[str, Any]]:
        return [choice["delta"] for chunk in self.chunks for choice in chunk.get("choices", [])]

    @property
    def finish_reasons(self) -> list[str]:
        return [
            choice["finish_reason"]
            for chunk in self.chunks
            for choice in chunk.get("choices", [])
            if choice.get("finish_reason")
        ]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Errors sent inside the stream (`data: {"error": ...}`) after a 200."""
        return [chunk["error"] for chunk in self.chunks if "error" in chunk]

    @property
    def tool_calls(self) -> dict[int, dict[str, str]]:
        """Tool-call fragments joined by index: id, name and the arguments text."""
        calls: dict[int, dict[str, str]] = {}
        for delta in self.deltas:
            for fragment in delta.get("tool_calls") or []:
                call = calls.setdefault(fragment["index"], {"id": "", "name": "", "arguments": ""})
                call["id"] += fragment.get("id") or ""
                call["name"] += fragment["function"].get("name") or ""
                call["arguments"] += fragment["function"].get("arguments") or ""
        return calls

    @property
    def usage(self) -> dict[str, Any]:
        [usage] = [chunk["usage"] for chunk in self.chunks if chunk.get("usage")]
        return usage

    @property
    def timings(self) -> dict[str, Any]:
        return self.chunks[-1]["timings"]


def chat_body(**overrides: Any) -> dict[str, Any]:
    """A streamed chat request with usage on; a fixed seed keeps the gibberish repeatable."""
    return {
        "model": "tiny",
        "messages": HELLO,
        "stream": True,
        "stream_options": {"include_usage": True},
        "seed": 7,
        **overrides,
    }


def stream_chat(server: LlamaServer, timeout: float = 120.0, **overrides: Any) -> Stream:
    """Send one streamed chat completion and read it to the end."""
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "POST", f"{server.base_url}/chat/completions", json=chat_body(**overrides)
        ) as response,
    ):
        if response.status_code != 200:
            return Stream(status=response.status_code, error=json.loads(response.read()))
        stream = Stream(status=200)
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                stream.done = True
                continue
            stream.chunks.append(json.loads(data))
        return stream


def token_id(server: LlamaServer, text: str) -> int:
    """The single token the server's tokenizer makes of `text`."""
    response = httpx.post(f"{server.url}/tokenize", json={"content": text}, timeout=10)
    [token] = response.json()["tokens"]
    return int(token)


def slots(server: LlamaServer) -> list[dict[str, Any]]:
    return list(httpx.get(f"{server.url}/slots", timeout=10).json())


def metric(server: LlamaServer, name: str) -> float:
    """One value from the Prometheus `/metrics` page (e.g. `llamacpp:tokens_predicted_total`)."""
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def read_file_tool(path_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file of the project.",
            "parameters": {
                "type": "object",
                "properties": {"path": path_schema},
                "required": ["path"],
                "additionalProperties": False,
            },
        },
    }


PATH_PATTERN = "^[a-z_./]{1,12}$"
READ_FILE = read_file_tool({"type": "string", "pattern": PATH_PATTERN})
# Any 12 characters: the model may write its own `<tool_call>` marker inside the argument.
READ_ANYTHING = read_file_tool({"type": "string", "maxLength": 12})


def steer_to_a_tool_call(server: LlamaServer, *, then_stop: bool = True) -> dict[str, Any]:
    """Sampling settings that make random weights open a tool call at once."""
    bias = {token_id(server, "<tool_call>"): 30, token_id(server, "\n"): 20}
    if then_stop:
        bias[token_id(server, "<|im_end|>")] = 40  # allowed by the grammar only after a call
    return {
        "logit_bias": {str(token): value for token, value in bias.items()},
        "presence_penalty": 20,
        "repeat_last_n": 1,
    }
