"""Two real llama-servers as one provider (issue 22, part 7): a large code review uses both,
neither ever gets more requests than its slots (llama.cpp's /metrics: nothing deferred), and
SIGKILLing one mid-stream loses no agent: its turn starts again on the other."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from devtools.llamacpp.server import LlamaServer
from runs.engine.worker import Engine
from runs.models import TERMINAL_STEP, AgentEvent, FlowRun, FlowStep, ModelEndpoint
from runs.server_slots import host_port
from runs.services import launch_run
from tests.realserver.engine_support import CONTEXT_PER_SLOT, SERVER_FAULTS, Metrics
from tests.realserver.facts import Observations

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_servers(start_server: Callable[..., LlamaServer]) -> Iterator[list[LlamaServer]]:
    servers = [start_server(slots=1, context=CONTEXT_PER_SLOT) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_a_large_run_uses_both_servers_within_their_slots_and_survives_losing_one(
    two_servers: list[LlamaServer],
    settings: Any,
    target_dir: Path,
    observed: Observations,
    short_turns: int,
):
    first, second = two_servers
    settings.ORCHESTRATOR_MODEL = "llama-cpp/tiny-qwen3"
    settings.ORCHESTRATOR_BASE_URL = f"{first.base_url},{second.base_url}"
    settings.ORCHESTRATOR_SLOTS = 0
    run = launch_run(flow="code-review", target=str(target_dir), band="large", fast=True)
    assert run.endpoint_url == f"{first.base_url},{second.base_url}"
    killed: dict[str, float] = {}

    def kill_first_mid_stream() -> None:
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline:
                on_first = FlowStep.objects.filter(
                    run=run, endpoint=first.base_url, phase="generating", holds_slot=True
                )
                served = FlowStep.objects.filter(run=run, endpoint=second.base_url).exists()
                if served and on_first.exists():
                    break
                time.sleep(0.01)
            killed["at"] = time.monotonic()
            first.kill()
        finally:
            connection.close()

    with Metrics(first) as first_metrics, Metrics(second) as second_metrics:
        chaos = threading.Thread(target=kill_first_mid_stream)
        chaos.start()
        started = time.monotonic()
        asyncio.run(asyncio.wait_for(Engine(run_id=run.id).run(), 600))
        chaos.join(10)
    run = FlowRun.objects.get(id=run.id)
    steps = list(run.steps.all())
    assert "at" in killed and killed["at"] - started < time.monotonic() - started
    assert all(step.status in TERMINAL_STEP for step in steps), [(s.key, s.status) for s in steps]
    lost = [s for s in steps if any(fault in s.error for fault in SERVER_FAULTS)]
    assert lost == [], [(s.key, s.error) for s in lost]
    assert first_metrics.processing == 1 and second_metrics.processing == 1, "both were used"
    assert first_metrics.deferred == 0 and second_metrics.deferred == 0, "never above a slot"
    down = ModelEndpoint.objects.get(url=first.base_url)
    assert down.down_until is not None, "the dead server is routed around"
    last_on = sorted({host_port(s.endpoint) for s in steps})
    turns = AgentEvent.objects.filter(step__run=run, kind="status", payload__state="turn")
    later = [e.payload for e in turns if (e.payload.get("turn") or 0) > 1]
    prompt = sum(p.get("prompt_tokens") or 0 for p in later)
    cached = sum(p.get("cached_tokens") or 0 for p in later)
    outcomes = Counter(s.status for s in steps)
    observed.note(
        "two servers",
        f"later turns' prompt from cache {cached}/{prompt}; large fast review on two 1-slot "
        f"servers, the first SIGKILLed mid-stream {killed['at'] - started:.1f}s in: "
        f"{dict(outcomes)} of {len(steps)}, none failed for it, nothing deferred on either; "
        f"last turns on {last_on}",
    )
