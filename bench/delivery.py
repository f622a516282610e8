"""Delivery ratio: tokens/s that reach WebSocket clients through the orchestrator (engine,
PostgreSQL, Channels) over tokens/s a bare httpx client reads from the same scripted server.

    .venv/bin/python bench/delivery.py [--streams 1,4,16,64] [--rate 200] [--window 10]

For each stream count N, side by side so that machine noise hits both alike:
1. bare: N concurrent httpx streams straight from the scripted model, every chunk decoded;
2. orchestrator: a fresh `manage.py serve` with N model slots and N agents streaming at once
   (small code-review runs, 2 specialists each), one pane per run with every agent expanded.
Every answer is padded so that all N streams last past the window; tokens are counted in a
window of --window seconds that starts --warmup seconds after all N streams are flowing. Also
the serve process's CPU seconds (web + engine, from /proc) per 1,000 delivered tokens.
Target: ratio >= 0.95 at 64 streams (and >= 0.9 at 16). `--smoke` (2 streams, a 2 s
window) checks the setup, not the target: it exits 1 unless every stream flowed on both sides
and the ratio is a ratio (between 0 and 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import bench_database, make_target
from harness import ModelProcess, require_admitted, serve, session_cookie
from pane_client import Pane, stream_steps

FIRST_BYTE_DELAY = 3.0
SLACK_SECONDS = 12.0  # padding beyond warm-up + window: launching N agents takes a while
SMOKE_SLACK_SECONDS = 4.0


@dataclass(frozen=True)
class Throughput:
    tokens: int
    seconds: float
    cpu: float = float("nan")  # serve CPU seconds during the window (orchestrator only)

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu / self.tokens * 1000 if self.tokens else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,4,16,64", help="comma-separated stream counts")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens/s per stream")
    parser.add_argument("--window", type=float, default=10.0, help="seconds counted")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds skipped first")
    parser.add_argument("--smoke", action="store_true", help="2 streams, briefly")
    args = parser.parse_args()
    slack = SLACK_SECONDS
    args.first_byte_delay = FIRST_BYTE_DELAY
    if args.smoke:
        args.streams, args.window, args.warmup, args.first_byte_delay = "2", 2.0, 0.5, 1.0
        slack = SMOKE_SLACK_SECONDS
    counts = [int(n) for n in args.streams.split(",")]
    pad = int(args.rate * (args.warmup + args.window + slack))
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        from django.conf import settings

        settings.ORCHESTRATOR_ALLOWED_ROOTS = [Path(tmp).resolve()]
        # the bench's users share its project, and its bursts wait uncapped
        settings.ORCHESTRATOR_SHARED_ROOTS = [Path(tmp).resolve()]
        settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        _, cookie = session_cookie()
        model = ModelProcess(token_rate=args.rate, pad_reasoning=pad)
        try:
            rows = [measure(Path(tmp), model, cookie, n, args) for n in counts]
        finally:
            model.stop()
    print(f"\nrate={args.rate:g} tok/s per stream, window {args.window:g}s")
    print("streams  ideal tok/s  bare tok/s  orchestrator tok/s  ratio  serve CPU s/1k tok")
    for n, bare, orch in rows:
        print(
            f"{n:7d}  {n * args.rate:11.0f}  {bare.rate:10.0f}  {orch.rate:18.0f}  "
            f"{orch.rate / bare.rate:5.2f}  {orch.cpu_per_1k:18.3f}"
        )
    for count, floor in ((16, 0.9), (64, 0.95)):
        for n, bare, orch in rows:
            if n == count:
                met = orch.rate / bare.rate >= floor
                print(f"target ratio >= {floor} at {n} streams: {'met' if met else 'MISSED'}")
    if args.smoke and not all(
        bare.tokens and orch.tokens and 0 < orch.rate / bare.rate <= 1.5 for _, bare, orch in rows
    ):
        raise SystemExit("a side delivered nothing, or the ratio is not a ratio")


def measure(
    tmp: Path, model: ModelProcess, cookie: str, n: int, args: argparse.Namespace
) -> tuple[int, Throughput, Throughput]:
    model.set(first_byte_delay=0.0)
    bare = asyncio.run(bare_clients(model.url, n, args.warmup, args.window))
    # The agents wait a moment for their first byte, so the panes are open before the
    # streams start: a handshake under 64 streams can miss daphne's 5 s limit.
    model.set(first_byte_delay=args.first_byte_delay)
    orch = orchestrated(tmp, model.url, cookie, n, args.warmup, args.window)
    print(f"streams={n}: bare {bare.rate:.0f} tok/s, orchestrator {orch.rate:.0f} tok/s")
    return n, bare, orch


# --- bare httpx -------------------------------------------------------------------------------


async def bare_clients(url: str, n: int, warmup: float, window: float) -> Throughput:
    arrivals: list[float] = []  # one per token read
    flowing: set[int] = set()
    all_flowing = asyncio.Event()

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {
            "model": "scripted",
            "stream": True,
            "messages": [
                {"role": "system", "content": f"Step kind: specialist\nAgent role: bare{i}"},
                {"role": "user", "content": "Focus: delivery bench"},
            ],
        }
        async with client.stream("POST", f"{url}/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                for choice in json.loads(line[6:]).get("choices") or []:
                    delta = choice.get("delta") or {}
                    if delta.get("reasoning_content") or delta.get("content"):
                        arrivals.append(time.time())
                        flowing.add(i)
                        if len(flowing) == n:
                            all_flowing.set()

    limits = httpx.Limits(max_connections=n + 4)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(one(client, i)) for i in range(n)]
        try:
            await asyncio.wait_for(all_flowing.wait(), 60)
            start = time.time() + warmup
            await asyncio.sleep(warmup + window + 0.2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return Throughput(sum(1 for t in arrivals if start <= t < start + window), window)


# --- through the orchestrator -------------------------------------------------------------


def orchestrated(
    tmp: Path, model_url: str, cookie: str, n: int, warmup: float, window: float
) -> Throughput:
    from django.contrib.auth import get_user_model

    from runs.services import cancel_run, launch_run

    target = make_target(tmp)
    user = get_user_model().objects.get(username="bench")
    # Slots cap the streams at exactly n; small runs bring 2 specialists each.
    server, host = serve(
        model_url,
        tmp,
        tmp / f"serve-{n}.log",
        ORCHESTRATOR_SLOTS=str(n),
        ORCHESTRATOR_WORKER_CONCURRENCY=str(max(n, 16)),
        # One bench user stands for every viewer: a pane per run, all open at once.
        ORCHESTRATOR_MAX_SOCKETS_PER_USER=str(max(16, n)),
    )
    runs = [
        launch_run(flow="code-review", target=str(target), focus=f"delivery {n}", owner=user)
        for _ in range(math.ceil(n / 2))
    ]
    try:
        require_admitted([run.id for run in runs])
        steps = {str(run.id): stream_steps(run.id) for run in runs}
        return asyncio.run(watch(host, cookie, steps, n, warmup, window, server.cpu_seconds))
    finally:
        for run in runs:
            cancel_run(run.id)
        server.stop()


async def watch(
    host: str,
    cookie: str,
    steps: dict[str, list[int]],
    n: int,
    warmup: float,
    window: float,
    cpu_seconds: Callable[[], float],
) -> Throughput:
    """One pane per run, every agent expanded; tokens received within the window."""
    panes = [Pane(host, run_id, cookie) for run_id in steps]
    try:
        await asyncio.gather(*(pane.open(steps[pane.run_id]) for pane in panes))
        deadline = time.monotonic() + 120
        while streaming(panes) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {streaming(panes)} of {n} agents ever streamed")
            await asyncio.sleep(0.1)
        await asyncio.sleep(warmup)
        start, cpu = time.time(), cpu_seconds()
        await asyncio.sleep(window)
        cpu = cpu_seconds() - cpu
    finally:
        for pane in panes:
            await pane.close()
    tokens = sum(
        f.tokens for pane in panes for f in pane.fragments if start <= f.at < start + window
    )
    return Throughput(tokens, window, cpu)


def streaming(panes: list[Pane]) -> int:
    return len({f.step for pane in panes for f in pane.fragments if f.text})


if __name__ == "__main__":
    main()
