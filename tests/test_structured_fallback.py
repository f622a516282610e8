"""Schema-shaped answers through the engine, over real HTTP: a server in front of the scripted
model that either refuses `response_format` (HTTP 400) or answers it with JSON derived from the
agent's own prose answer."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from flows.citation_scan import scan
from runs.demo.server import ScriptedModelServer
from runs.engine.agent.backends.base import BackendError, EndpointConfig, StructuredOutputRejected
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from runs.engine.worker import Engine
from runs.models import AgentEvent, FlowRun, RunStatus
from runs.services import launch_run

pytestmark = pytest.mark.django_db(transaction=True)


class FrontServer:
    """Forwards chat requests to the scripted model; `response_format` requests it refuses
    (`refuse`) or answers itself with JSON made from the prose answer being restated."""

    def __init__(self, upstream: str, *, refuse: bool, error: str = "") -> None:
        self.upstream, self.refuse = upstream, refuse
        self.error = error or "response_format is not supported"
        self.structured_requests: list[dict[str, Any]] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if "response_format" in body:
                    front.structured_requests.append(body)
                    front.answer_structured(self, body)
                    return
                with httpx.stream(
                    "POST", f"{front.upstream}/chat/completions", json=body, timeout=60
                ) as response:
                    payload = response.read()
                self.send_response(response.status_code)
                self.send_header("Content-Type", response.headers["content-type"])
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def answer_structured(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        if self.refuse:
            payload = json.dumps({"error": {"code": 400, "message": self.error}}).encode()
            handler.send_response(400)
        else:
            name = body["response_format"]["json_schema"]["name"]
            prose = body["messages"][-2]["content"]
            content = json.dumps(_findings(prose) if name.endswith("findings") else _verdict())
            chunks = [
                {"choices": [{"index": 0, "delta": {"content": content}}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 40}},
            ]
            payload = (
                "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            ).encode()
            handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _findings(prose: str) -> dict[str, Any]:
    """One finding per citation of the prose answer, its fields filled from the citation."""
    findings = [
        {
            "claim": f"Structured finding {number}",
            "trust": "codebase",
            "severity": "medium",
            "citations": [
                {"path": c.path, "start_line": c.start, "end_line": c.end, "quote": c.quote or ""}
            ],
            "why": "restated as fields",
        }
        for number, c in enumerate(scan(prose), 1)
    ]
    return {"findings": findings, "no_evidence": [], "conflicts": [], "not_covered": []}


def _verdict() -> dict[str, Any]:
    return {
        "summary": "Structured verdict from the validator.",
        "confidence": "high",
        "reasons": "fields, not prose",
        "failed_checks": [],
    }


@pytest.fixture
def front(settings: Any, request: pytest.FixtureRequest) -> Iterator[FrontServer]:
    with ScriptedModelServer() as scripted:
        server = FrontServer(scripted.url.rstrip("/"), refuse=request.param)
        settings.ORCHESTRATOR_PROVIDERS = {
            "strict": {"base_url": server.url, "slots": 4, "structured_output": True}
        }
        settings.ORCHESTRATOR_MODEL = "strict/scripted"
        settings.ORCHESTRATOR_BASE_URL = ""
        try:
            yield server
        finally:
            server.close()


def run_to_end(run: FlowRun) -> FlowRun:
    asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 60))
    run.refresh_from_db()
    return run


def _states(run: FlowRun, key: str) -> list[str]:
    events = AgentEvent.objects.filter(session__step__run=run, session__step__key=key)
    return [e.payload.get("state", "") for e in events.filter(kind="status")]


@pytest.mark.parametrize("front", [False], indirect=True)
def test_the_synthesizer_and_validator_answer_schema_shaped_and_the_report_checks_it(
    front: FrontServer, target_dir: Path
):
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    names = [r["response_format"]["json_schema"]["name"] for r in front.structured_requests]
    assert names == ["orchestrator_findings", "orchestrator_verdict"]
    # No tool may be called with a schema; the tools stay in the prompt for the server's cache.
    assert all(r["tool_choice"] == "none" and r["tools"] for r in front.structured_requests)
    assert "**Structured finding 1** (codebase, severity medium)" in run.report
    assert "Structured verdict from the validator." in run.report
    assert run.report_data["evidence"]["verified"] >= 1
    assert "structured" in _states(run, "synthesis")
    assert "structured" in _states(run, "validation")


@pytest.mark.parametrize("front", [True], indirect=True)
def test_a_server_refusing_response_format_gets_prose_once_and_is_remembered(
    front: FrontServer, target_dir: Path
):
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert len(front.structured_requests) == 1  # the validator did not ask again
    assert "structured_refused" in _states(run, "synthesis")
    validation = _states(run, "validation")
    assert "succeeded" in validation and "structured_refused" not in validation
    assert "Structured finding" not in run.report
    assert run.confidence in {"low", "medium", "high"}


def test_a_refused_response_format_is_a_distinct_error_and_the_backend_remembers():
    server = FrontServer("http://127.0.0.1:9", refuse=True)
    try:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.url, model="m"))
        with pytest.raises(StructuredOutputRejected, match="refused response_format"):
            asyncio.run(_drain(backend, {"type": "json_schema"}))
        assert backend.accepts_response_format is False
    finally:
        server.close()


def test_a_context_overflow_with_response_format_is_not_taken_for_a_refusal():
    server = FrontServer(
        "http://127.0.0.1:9", refuse=True, error="the request exceeds the available context size"
    )
    try:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=server.url, model="m"))
        with pytest.raises(BackendError) as failure:
            asyncio.run(_drain(backend, {"type": "json_schema"}))
        assert not isinstance(failure.value, StructuredOutputRejected)
        assert backend.accepts_response_format is True
    finally:
        server.close()


async def _drain(backend: OpenAICompatibleBackend, response_format: dict[str, Any]) -> None:
    try:
        stream = backend.stream_turn(
            messages=[{"role": "user", "content": "hi"}],
            tools=None,
            max_tokens=8,
            response_format=response_format,
        )
        async for _ in stream:
            pass
    finally:
        await backend.aclose()
