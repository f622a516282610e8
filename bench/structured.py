"""Schema-shaped answers on the real llama.cpp server (tiny random-weight Qwen3): does the
server enforce the schema, what it costs in tokens and time against prose, how an answer cut
at max_tokens fails, and what a schema does to tools sent in the same request.

Random weights make quality meaningless; what is measured is the server's behaviour.

    .venv/bin/python bench/structured.py [--seeds 10] [--smoke]

`--smoke` (one seed) is what the real-server tier runs (tests/realserver/test_bench_smoke.py);
it exits 1 when the server answered nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT  # noqa: F401 (puts the project on sys.path)

from devtools.llamacpp.build import ensure_server
from devtools.llamacpp.model import ensure_model
from devtools.llamacpp.server import LlamaServer
from devtools.testing import free_port
from flows.structured import Shape, Unusable, parse, response_format

PROMPT = [
    {"role": "system", "content": "You review code. Cite path:line for every finding."},
    {"role": "user", "content": "Review app/db.py and report your findings."},
]
NO_THINKING = {"chat_template_kwargs": {"enable_thinking": False}}
READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file of the project.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string", "pattern": "^[a-z_./]{1,12}$"}},
            "required": ["path"],
        },
    },
}


def ask(server: LlamaServer, **body: Any) -> tuple[dict[str, Any], float]:
    began = time.perf_counter()
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "tiny", "messages": PROMPT, **body},
        timeout=300,
    )
    seconds = time.perf_counter() - began
    if response.status_code != 200:  # llama.cpp answers 500 when it cannot continue the grammar
        message = response.json().get("error", {}).get("message", "")[:80]
        failed = {"message": {"content": ""}, "finish_reason": f"HTTP {response.status_code}"}
        return {"choices": [failed], "usage": {"completion_tokens": 0}, "error": message}, seconds
    return response.json(), seconds


def content(answer: dict[str, Any]) -> str:
    return answer["choices"][0]["message"].get("content") or ""


def finish(answer: dict[str, Any]) -> str:
    return answer["choices"][0]["finish_reason"]


def measure(server: LlamaServer, seeds: int) -> list[str]:
    lines = []
    errors: set[str] = set()
    for shape in Shape:
        for label, extra in (("no thinking", NO_THINKING), ("thinking", {})):
            rows: list[tuple[bool | None, int, float, str]] = []
            for seed in range(seeds):
                answer, seconds = ask(
                    server,
                    seed=seed,
                    max_tokens=1500,
                    response_format=response_format(shape),
                    **extra,
                )
                try:
                    parse(shape, content(answer))
                    valid = True
                except Unusable as exc:
                    valid = False
                    if "error" not in answer:
                        errors.add(f"unusable: {str(exc)[:70]}")
                rows.append((valid, answer["usage"]["completion_tokens"], seconds, finish(answer)))
                if "error" in answer:
                    errors.add(answer["error"])
            lines.append(_row(f"{shape.value} schema, {label}", rows))
    prose: list[tuple[bool | None, int, float, str]] = []
    for seed in range(seeds):
        answer, seconds = ask(server, seed=seed, max_tokens=1500, **NO_THINKING)
        prose.append((None, answer["usage"]["completion_tokens"], seconds, finish(answer)))
    lines.append(_row("prose, no thinking (nothing to enforce)", prose))
    lines += [f"server error seen: {message}" for message in sorted(errors)]
    cut, _ = ask(
        server,
        seed=1,
        max_tokens=20,
        response_format=response_format(Shape.FINDINGS),
        **NO_THINKING,
    )
    try:
        parse(Shape.FINDINGS, content(cut))
        why = "parsed (unexpected)"
    except Unusable as exc:
        why = str(exc)
    lines.append(f"cut at max_tokens 20: finish_reason {finish(cut)!r}, {why}")
    called = 0
    for seed in range(seeds):
        token = httpx.post(f"{server.url}/tokenize", json={"content": "<tool_call>"}).json()
        bias = {str(token["tokens"][0]): 30}
        both, _ = ask(
            server,
            seed=seed,
            max_tokens=300,
            tools=[READ_FILE],
            tool_choice="required",
            logit_bias=bias,
            response_format=response_format(Shape.VERDICT),
            **NO_THINKING,
        )
        called += bool(both["choices"][0]["message"].get("tool_calls"))
    lines.append(
        f"tools (tool_choice required, sampler steered to <tool_call>) + response_format: "
        f"{called}/{seeds} answers called a tool; the schema's grammar wins"
    )
    return lines


def _row(label: str, rows: list[tuple[bool | None, int, float, str]]) -> str:
    valid = [r[0] for r in rows if r[0] is not None]
    refused = sum(r[3].startswith("HTTP") for r in rows)
    share = f"{sum(valid)}/{len(valid)} valid ({refused} HTTP errors)" if valid else "n/a"
    answered = [r for r in rows if not r[3].startswith("HTTP")] or rows
    tokens = statistics.median(r[1] for r in answered)
    seconds = statistics.median(r[2] for r in answered)
    finishes = sorted({r[3] for r in rows})
    return (
        f"{label}: {share}, median {tokens:.0f} tokens, {seconds * 1000:.0f} ms "
        f"({tokens / seconds:.0f} tok/s), finish {finishes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="one seed; sanity only")
    args = parser.parse_args()
    if args.smoke:
        args.seeds = 1
    logs = Path(tempfile.mkdtemp(prefix="bench-structured-"))
    server = LlamaServer(
        binary=ensure_server(),
        model=ensure_model(),
        port=free_port(),
        log_path=logs / "llama-server.log",
        slots=1,
        context=8192,
    )
    server.start()
    try:
        lines = measure(server, args.seeds)
    finally:
        server.stop()
    for line in lines:
        print(line)
    prose = [line for line in lines if line.startswith("prose")]
    if len(prose) != 1 or " median 0 tokens" in prose[0]:
        raise SystemExit("the server streamed no prose answer")


if __name__ == "__main__":
    main()
