"""Pane benchmark: a finished run with 20 agents and about 1M streamed tokens. Server render
time of the pane and of the WebSocket snapshot, and the bytes sent before any agent is
expanded (collapsed agents carry no stream).

    .venv/bin/python bench/pane_render.py [--agents 20] [--tokens 1000000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import bench_database, describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), args.agents, args.tokens, args.repeat)


def build_run(tmp: Path, agents: int, tokens: int):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep

    owner = get_user_model().objects.create_user("bench", password="bench-pass-123")
    run = FlowRun.objects.create(
        owner=owner,
        flow="code-review",
        band="large",
        target=str(tmp),
        model="demo/scripted",
        status="succeeded",
        report="## Summary\nBench.\n\n## Confidence: low\nr\n",
    )
    per_agent = tokens // agents
    per_event = 25  # tokens coalesced into one event (about 50 ms of a fast model)
    for i in range(agents):
        step = FlowStep.objects.create(
            run=run,
            key=f"agent-{i}",
            role="bench",
            title=f"Agent {i}",
            kind="specialist",
            position=i,
            status="succeeded",
            attempt=1,
            tokens_out=per_agent,
            output="done",
        )
        session = AgentSession.objects.create(
            step=step, attempt=1, worker="w", backend="b", model="m"
        )
        AgentEvent.objects.bulk_create(
            (
                AgentEvent(
                    session=session,
                    step=step,
                    seq=n + 1,
                    kind="text",
                    payload={"text": "token " * per_event},
                )
                for n in range(per_agent // per_event)
            ),
            batch_size=5000,
        )
    return run


def measure(tmp: Path, agents: int, tokens: int, repeat: int) -> None:
    from django.test import Client

    from runs.consumers import _snapshot
    from runs.models import AgentEvent

    started = time.monotonic()
    run = build_run(tmp, agents, tokens)
    print(
        f"built {agents} agents, {AgentEvent.objects.count()} events "
        f"(~{tokens} tokens) in {time.monotonic() - started:.1f}s"
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(run.owner)
    url = f"/runs/{run.id}/"
    page_times, sizes = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        response = client.get(url)
        assert response.status_code == 200, response.status_code
        page_times.append(time.perf_counter() - t)
        sizes.append(len(response.content))
    snap_times = []
    for _ in range(repeat):
        t = time.perf_counter()
        snapshot = _snapshot(run.id)
        snap_times.append(time.perf_counter() - t)
    print(describe("pane page render (full request)", page_times))
    print(describe("websocket snapshot render", snap_times))
    print(f"bytes before any agent is expanded: page {sizes[0]} + snapshot {len(snapshot)}")


if __name__ == "__main__":
    main()
