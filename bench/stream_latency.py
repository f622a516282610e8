"""Token-to-browser latency: when the scripted model flushed a chunk vs when a WebSocket client
of the pane received the text, through a real `manage.py serve` (engine, PostgreSQL, Channels).

    .venv/bin/python bench/stream_latency.py [--agents 8] [--rate 200] [--runs 4] [--smoke]

`--agents` is the model's slot count, so exactly that many agents stream at once; `--runs`
medium code-review runs (4 specialists each) keep the slots busy. Each answer is padded with
`--pad` filler words of reasoning so that streams last seconds, not a fraction of one.
Matching: per step, the cumulative count of streamed characters (reasoning + text); a chunk's
latency is the arrival of the first fragment that reaches its offset minus its flush time
(time.time() in both processes, one machine). Target p50 <= 30 ms, p99 <= 100 ms.
`--smoke` (2 agents, one small run, short answers) checks the matching, not the target: it
exits 1 unless chunks were matched, every step's text arrived whole, and the run finished.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from common import bench_database, describe, make_target, percentile
from harness import ModelProcess, cpu_seconds, require_admitted, serve, session_cookie
from pane_client import Pane, stream_steps, text_by_step

Emission = tuple[str, int, float]  # stream id, characters so far, flush time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=8, help="agents streaming at once")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens/s per stream")
    parser.add_argument("--runs", type=int, default=4, help="medium code-review runs")
    parser.add_argument("--pad", type=int, default=200, help="filler tokens per answer")
    parser.add_argument("--band", default="medium", help="medium: 4 specialists a run")
    parser.add_argument("--smoke", action="store_true", help="tiny and quick; sanity only")
    args = parser.parse_args()
    if args.smoke:
        args.agents, args.runs, args.pad, args.rate, args.band = 2, 1, 20, 400.0, "small"
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), args)


def measure(tmp: Path, args: argparse.Namespace) -> None:
    from django.conf import settings

    from runs.models import AgentEvent, FlowStep
    from runs.services import launch_run

    target = make_target(tmp)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp.resolve()]
    # the bench's users share its project, and its bursts wait uncapped
    settings.ORCHESTRATOR_SHARED_ROOTS = [tmp.resolve()]
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
    settings.ORCHESTRATOR_MODEL = "demo/scripted"
    model = ModelProcess(token_rate=args.rate, pad_reasoning=args.pad, record_emissions=True)
    server = None
    try:
        server, host = serve(
            model.url,
            tmp,
            tmp / "serve.log",
            ORCHESTRATOR_SLOTS=str(args.agents),
            ORCHESTRATOR_WORKER_CONCURRENCY=str(max(16, args.agents)),
        )
        user, cookie = session_cookie()
        runs = [
            launch_run(
                flow="code-review",
                target=str(target),
                band=args.band,
                focus=f"latency bench run {i}",
                owner=user,
            )
            for i in range(args.runs)
        ]
        require_admitted([run.id for run in runs])
        steps = {str(run.id): stream_steps(run.id) for run in runs}
        before = (server.cpu_seconds(), cpu_seconds(model.pid), own_cpu())
        started = time.time()
        panes, subscribed = asyncio.run(watch(host, cookie, steps))
        wall = time.time() - started
        after = (server.cpu_seconds(), cpu_seconds(model.pid), own_cpu())
        cpu = [b - a for a, b in zip(before, after, strict=True)]
        emissions, labels = model.collect()
    finally:
        if server is not None:
            server.stop()
        model.stop()

    step_of = {
        (run.focus, step.role): step.id
        for run in runs
        for step in FlowStep.objects.filter(run=run).select_related("run")
    }
    run_of_step = {step: run for run, ids in steps.items() for step in ids}
    fragments = [f for pane in panes for f in pane.fragments]
    emitted = per_step(emissions, labels, step_of)
    cutoff = {step: subscribed[run_of_step[step]] for step in emitted}
    written = dict(AgentEvent.objects.filter(step__run__in=runs).values_list("id", "created_at"))
    result = match(emitted, text_by_step(fragments), cutoff, written)
    statuses = sorted({pane.status for pane in panes})
    print(
        f"agents={args.agents} rate={args.rate:g} tok/s runs={args.runs} pad={args.pad} "
        f"statuses={statuses} wall={wall:.1f}s"
    )
    print(
        f"CPU seconds: serve {cpu[0]:.1f}, model server {cpu[1]:.1f}, bench clients {cpu[2]:.1f} "
        f"(machine: {os.cpu_count()} cores)"
    )
    print(
        f"chunks matched={len(result.total)} before subscription (skipped)={result.skipped} "
        f"steps whose text differs={result.mismatched}"
    )
    print(describe("token -> browser latency", result.total))
    print(describe("  flushed -> row stamped (coalescing, engine loop)", result.to_row))
    print(describe("  row stamped -> received (INSERT, publish, render, socket)", result.to_pane))
    p50, p99 = percentile(result.total, 50) * 1000, percentile(result.total, 99) * 1000
    verdict = "met" if p50 <= 30 and p99 <= 100 else "MISSED"
    print(f"target p50 <= 30 ms, p99 <= 100 ms: {verdict}")
    if not result.total or result.mismatched or statuses != ["succeeded"]:
        raise SystemExit("the bench measured nothing, or the streams or runs went wrong")


async def watch(
    host: str, cookie: str, steps: dict[str, list[int]]
) -> tuple[list[Pane], dict[str, float]]:
    """One pane per run, every step subscribed, until every run has finished."""
    panes = [Pane(host, run_id, cookie) for run_id in steps]
    subscribed: dict[str, float] = {}
    for pane in panes:
        await pane.open(steps[pane.run_id])
        subscribed[pane.run_id] = time.time()
    try:
        deadline = time.monotonic() + 600
        while not all(p.finished for p in panes):
            if time.monotonic() > deadline:
                raise SystemExit("a pane did not see its run finish within 600 s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # the last fragments trail the final status by a few ms
    finally:
        for pane in panes:
            await pane.close()
    return panes, subscribed


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def per_step(
    emissions: list[Emission],
    labels: dict[str, tuple[str, str]],
    step_of: dict[tuple[str, str], int],
) -> dict[int, list[tuple[int, float]]]:
    """Per step: (characters streamed by that step so far, flush time), its turns in order."""
    streams: dict[str, list[tuple[int, float]]] = {}
    for stream, chars, at in emissions:
        streams.setdefault(stream, []).append((chars, at))
    by_step: dict[int, list[list[tuple[int, float]]]] = {}
    for stream, points in streams.items():
        step = step_of.get(labels.get(stream, ("", "")))
        if step is not None:
            by_step.setdefault(step, []).append(points)
    result: dict[int, list[tuple[int, float]]] = {}
    for step, turns in by_step.items():
        offset, points = 0, []
        for turn in sorted(turns, key=lambda t: t[0][1]):  # one step streams one turn at a time
            points += [(offset + chars, at) for chars, at in turn]
            offset += turn[-1][0]
        result[step] = points
    return result


@dataclass
class Matched:
    total: list[float] = field(default_factory=list)  # flushed by the model -> received
    to_row: list[float] = field(default_factory=list)  # ... -> its event row was stamped
    to_pane: list[float] = field(default_factory=list)  # row stamped -> received
    skipped: int = 0
    mismatched: int = 0


def match(
    emitted: dict[int, list[tuple[int, float]]],
    received: dict[int, list[tuple[float, int, int]]],
    cutoff: dict[int, float],
    written: dict[int, datetime],
) -> Matched:
    """Latency per emitted chunk, split at the moment its event row was stamped (created_at,
    set in the engine just before the INSERT). Chunks flushed before the pane subscribed are
    replayed, not streamed, and are skipped; steps whose received text length differs from
    what the model streamed are counted and left out."""
    out = Matched()
    for step, points in emitted.items():
        arrivals = received.get(step, [])
        if not arrivals or arrivals[-1][1] != points[-1][0]:
            out.mismatched += 1
            continue
        j = 0
        for chars, at in points:
            while arrivals[j][1] < chars:
                j += 1
            if at < cutoff[step]:
                out.skipped += 1
                continue
            arrived, _, event_id = arrivals[j]
            stamped = written[event_id].timestamp()
            out.total.append(arrived - at)
            out.to_row.append(stamped - at)
            out.to_pane.append(arrived - stamped)
    return out


if __name__ == "__main__":
    main()
