"""Scheduler benchmark: dependants' latency after a step finishes, and slot utilisation.

    .venv/bin/python bench/scheduler.py [--runs 6] [--slots 2] [--rate 200] [--rounds 1] [--smoke]

1. Hand-off latency: from the moment the last dependency finished (flow_steps.finished_at) to
   the moment the dependant's first request reached the model server. Target p50 <= 20 ms.
   One large code-review run has two hand-offs (specialists -> synthesizer -> validator), so
   use --rounds for a sample worth a percentile.
2. Utilisation: K model slots, R concurrent large code-review runs. The bound is total model
   busy time / K; the ratio of the model's span (first request to last answer) to it shows
   slots left idle. Target <= 1.1x.

Each round launches R runs, runs one engine until they are all finished, and measures them;
the model server is shared by the rounds, each run is told apart by its focus text.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import bench_database, describe, make_target

FOCUS = re.compile(r"^Focus: (?P<tag>bench-\S+)", re.M)


@dataclass(frozen=True)
class Stream:
    """One answer the model streamed: which run and agent asked, when it arrived and ended."""

    tag: str
    role: str
    start: float
    end: float


@dataclass(frozen=True)
class Round:
    wall: float
    streams: list[Stream]
    handoffs: list[float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="tokens/s per stream")
    parser.add_argument("--rounds", type=int, default=1, help="repeat, pooling the hand-offs")
    parser.add_argument(
        "--smoke", action="store_true", help="2 runs on 2 slots, fast; exits 1 if insane"
    )
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.slots, args.rate, args.rounds = 2, 2, 2000.0, 1
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        rounds = measure(Path(tmp), args.runs, args.slots, args.rate, args.rounds)
    report(rounds, args.runs, args.slots, args.rate)
    if args.smoke:
        check(rounds, args.runs, args.slots)


def check(rounds: list[Round], runs: int, slots: int) -> None:
    """What the measures rest on: two hand-offs per run, and never more streams than slots."""
    for result in rounds:
        if len(result.handoffs) != 2 * runs or not result.streams:
            raise SystemExit(f"{len(result.handoffs)} hand-offs for {runs} runs")
        if max_overlap(result.streams) > slots:
            raise SystemExit(f"{max_overlap(result.streams)} streams at once on {slots} slots")


def measure(tmp: Path, runs: int, slots: int, rate: float, rounds: int) -> list[Round]:
    from django.conf import settings

    from runs.demo.server import ScriptedModelServer
    from runs.engine.worker import Engine
    from runs.models import FlowRun
    from runs.services import launch_run

    class TaggedServer(ScriptedModelServer):
        """Also records which run each stream belongs to (by the focus text of its prompt)."""

        streams: list[Stream]

        def record_timing(self, body: dict[str, Any], started: float) -> None:
            super().record_timing(body, started)
            role, _, _, end = self.timings[-1]
            self.streams.append(Stream(run_tag(body), role, started, end))

    target = make_target(tmp)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp.resolve()]
    # the bench's users share its project, and its bursts wait uncapped
    settings.ORCHESTRATOR_SHARED_ROOTS = [tmp.resolve()]
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
    results = []
    server = TaggedServer(token_rate=rate)
    with server:
        server.streams = []
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = server.url
        settings.ORCHESTRATOR_SLOTS = slots
        for number in range(rounds):
            seen = len(server.streams)
            tags = [f"bench-{number}-{i}" for i in range(runs)]
            launched = {
                tag: launch_run(flow="code-review", target=str(target), band="large", focus=tag)
                for tag in tags
            }
            started = time.time()
            asyncio.run(Engine().run_until_idle())
            wall = time.time() - started
            streams = server.streams[seen:]
            finished = FlowRun.objects.filter(id__in=[r.id for r in launched.values()])
            assert {run.status for run in finished} == {"succeeded"}, [r.error for r in finished]
            handoffs = [
                latency
                for tag, run in launched.items()
                for latency in handoff_latencies(run.id, [s for s in streams if s.tag == tag])
            ]
            results.append(Round(wall=wall, streams=streams, handoffs=handoffs))
    return results


def run_tag(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if message.get("role") == "user" and (match := FOCUS.search(str(message["content"]))):
            return match["tag"]
    return "?"


def handoff_latencies(run_id: Any, streams: list[Stream]) -> list[float]:
    """Per dependant step of one run: its first request's arrival minus the moment its last
    dependency finished. Its streams are matched by run (tag) and role, both exact."""
    from runs.models import FlowStep

    steps = {s.key: s for s in FlowStep.objects.filter(run_id=run_id)}
    latencies = []
    for step in steps.values():
        if not step.depends_on:
            continue
        ready = max(finished(steps[d]) for d in step.depends_on)
        arrivals = [s.start for s in streams if s.role == step.role]
        latencies.append(min(arrivals) - ready)
    return latencies


def finished(step: Any) -> float:
    if step.finished_at is None:
        raise SystemExit(f"step {step.key} has no finish time")
    return float(step.finished_at.timestamp())


def report(rounds: list[Round], runs: int, slots: int, rate: float) -> None:
    print(f"runs={runs} slots={slots} rate={rate:g} tok/s rounds={len(rounds)}")
    handoffs = [h for r in rounds for h in r.handoffs]
    print(describe("hand-off latency (dependency finished -> dependant's request)", handoffs))
    for number, result in enumerate(rounds):
        print(f"round {number}: " + utilisation(result, slots))


def utilisation(result: Round, slots: int) -> str:
    streams = result.streams
    busy = sum(s.end - s.start for s in streams)
    bound = busy / slots
    first = min(s.start for s in streams)
    last = max(s.end for s in streams)
    return (
        f"model busy {busy:.2f}s over {slots} slots -> bound {bound:.2f}s; "
        f"model span {last - first:.2f}s (ratio {(last - first) / bound:.3f}x); "
        f"engine wall {result.wall:.2f}s (ratio {result.wall / bound:.3f}x); "
        f"max concurrent streams {max_overlap(streams)}; "
        f"idle slot-seconds {idle_slot_seconds(streams, slots):.2f}"
    )


def max_overlap(streams: list[Stream]) -> int:
    """The most streams the model served at once: never more than the slots, if the cap holds."""
    edges = sorted([(s.start, 1) for s in streams] + [(s.end, -1) for s in streams])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


def idle_slot_seconds(streams: list[Stream], slots: int) -> float:
    """Slot time the model spent idle between the first request and the last answer."""
    edges = sorted([(s.start, 1) for s in streams] + [(s.end, -1) for s in streams])
    idle = 0.0
    busy_now, previous = 0, edges[0][0]
    for at, change in edges:
        idle += max(0, slots - busy_now) * (at - previous)
        busy_now, previous = busy_now + change, at
    return idle


if __name__ == "__main__":
    main()
