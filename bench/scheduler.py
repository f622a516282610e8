"""Scheduler benchmark: dependants' latency after a step finishes, and slot utilisation.

    .venv/bin/python bench/scheduler.py [--runs 6] [--slots 2] [--rate 150]

1. Hand-off latency: from the moment the last dependency finished (flow_steps.finished_at) to
   the moment the dependant's first request reached the model server. Target p50 <= 20 ms.
2. Utilisation: K model slots, R concurrent large code-review runs. The bound is total model
   busy time / K; the ratio wall time / bound shows slots left idle. Target <= 1.1x.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import bench_database, describe, make_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rate", type=float, default=150.0, help="tokens/s per stream")
    args = parser.parse_args()
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), args.runs, args.slots, args.rate)


def measure(tmp: Path, runs: int, slots: int, rate: float) -> None:
    from django.conf import settings

    from runs.fakemodel.server import ScriptedModelServer
    from runs.models import FlowRun
    from runs.services import launch_run
    from runs.worker import Engine

    target = make_target(tmp)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp.resolve()]
    with ScriptedModelServer(token_rate=rate) as server:
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = server.url
        settings.ORCHESTRATOR_SLOTS = slots
        launched = [
            launch_run(flow="code-review", target=str(target), band="large") for _ in range(runs)
        ]
        started = time.time()
        asyncio.run(Engine().run_until_idle())
        wall = time.time() - started
        handoffs = handoff_latencies([FlowRun.objects.get(id=r.id) for r in launched], server)
        busy = sum(end - start for _, _, start, end in server.timings)
        first = min(start for _, _, start, _ in server.timings)
        last = max(end for _, _, _, end in server.timings)
    statuses = set(FlowRun.objects.values_list("status", flat=True))
    print(f"runs={runs} slots={slots} rate={rate:g} tok/s statuses={sorted(statuses)}")
    print(describe("hand-off latency (dependency finished -> dependant's request)", handoffs))
    bound = busy / slots
    print(
        f"utilisation: model busy {busy:.2f}s over {slots} slots -> bound {bound:.2f}s; "
        f"model span {last - first:.2f}s (ratio {(last - first) / bound:.2f}x); "
        f"engine wall {wall:.2f}s (ratio {wall / bound:.2f}x)"
    )


def handoff_latencies(runs: list, server) -> list[float]:  # type: ignore[no-untyped-def]
    """Per dependant step: its first request time minus its last dependency's finish time."""
    from runs.models import FlowStep

    latencies = []
    arrivals: dict[str, list[float]] = {}
    for role, _, start, _ in server.timings:
        arrivals.setdefault(role, []).append(start)
    for run in runs:
        steps = {s.key: s for s in FlowStep.objects.filter(run=run)}
        for step in steps.values():
            if not step.depends_on or step.started_at is None:
                continue
            ready = max(steps[d].finished_at.timestamp() for d in step.depends_on)
            # The request that belongs to this step is the first one after its slot grant.
            granted = step.started_at.timestamp()
            mine = [t for t in arrivals.get(step.role, []) if t >= granted - 0.001]
            if mine and granted - ready < 1.0:  # skip steps that waited for a busy slot
                latencies.append(min(mine) - ready)
    return latencies


if __name__ == "__main__":
    main()
