"""Socket flood: one user must not be able to slow another's pane or grow the server's memory.

Bob opens four sockets on his own run and sends `resume` messages with 256 and 64 step ids
his run does not have, as fast as the connection takes them, connecting again whenever the
server closes a socket. Meanwhile alice's pane, on her own run, asks for one agent's stream
five times a second (subscribe, and the replay it brings back: a database read and a render,
on the same thread bob's messages would use), and the server's resident memory is sampled.
Printed before, during and after the flood; the run fails (exit 1) when alice's round trip
during or after the flood leaves its baseline by more than a ratio with headroom for a
shared machine, or when the memory does not come back near its baseline.

    .venv/bin/python bench/socket_flood.py [--seconds 30] [--flooders 4] [--smoke]

`--smoke` (a few seconds a phase) is what tests/test_socket_flood_bench.py runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import bench_database, describe, make_target, percentile
from flood_client import flood_main
from harness import ManageProcess, orchestrator_env, session_cookie
from websockets.asyncio.client import connect

# Alice's median round trip may grow this much during the flood: two cores are shared by
# the server, the flooding client and everything else on the machine.
LATENCY_RATIO = 3.0
LATENCY_FLOOR_MS = 10.0  # ratios of a few milliseconds are noise
RSS_DURING_MB = 60.0  # the peak during the flood over the baseline
RSS_AFTER_MB = 30.0  # what is still held once the flooding sockets are gone


async def alice_round_trips(host: str, run_id: str, cookie: str, step: int, seconds: float):
    """(seconds per round trip) for `seconds`: subscribe, wait for the stream's replay."""
    timings: list[float] = []
    async with connect(
        f"ws://{host}/ws/runs/{run_id}/",
        origin=f"http://{host}",  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        max_size=None,
    ) as ws:
        await ws.recv()  # the snapshot
        until = time.monotonic() + seconds
        marker = f'beforeend:#stream-{step}"'
        while time.monotonic() < until:
            started = time.perf_counter()
            await ws.send(f'{{"type": "subscribe", "step": {step}, "after": 0}}')
            while marker not in str(await ws.recv()):
                pass
            timings.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 0.2 - (time.perf_counter() - started)))
    return timings


def rss_mb(server: ManageProcess) -> float:
    return server.rss_kib() / 1024


def phase(server: ManageProcess, measure: Any, seconds: float) -> tuple[list[float], list[float]]:
    """Alice's round trips for `seconds`, and the server's RSS sampled meanwhile."""
    samples: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(rss_mb(server))
            await asyncio.sleep(0.25)

    async def both() -> list[float]:
        sampler = asyncio.create_task(sample())
        try:
            return await measure(seconds)  # type: ignore[no-any-return]
        finally:
            sampler.cancel()

    timings = asyncio.run(both())
    samples.append(rss_mb(server))
    return timings, samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the flood lasts")
    parser.add_argument("--flooders", type=int, default=4, help="bob's flooding sockets")
    parser.add_argument("--smoke", action="store_true", help="a few seconds a phase")
    args = parser.parse_args()
    flood_seconds = 6.0 if args.smoke else args.seconds
    quiet_seconds = 4.0 if args.smoke else 10.0

    with tempfile.TemporaryDirectory() as tmp, bench_database():
        from tests.browser.fabricate import fabricate_run

        root = Path(tmp)
        target = make_target(root)
        alice, alice_cookie = session_cookie("alice")
        bob, bob_cookie = session_cookie("bob")
        alice_run = fabricate_run(alice, str(target), agents=8, tokens=16_000, per_event=20)
        bob_run = fabricate_run(bob, str(target), agents=8, tokens=16_000, per_event=20)
        step = alice_run.steps.order_by("id").values_list("id", flat=True)[0]
        from devtools.testing import free_port

        port = free_port()
        # No model is called (both runs are finished); the worker is not started.
        env = orchestrator_env("http://127.0.0.1:9/v1", root)
        server = ManageProcess(
            "serve", "--port", str(port), "--no-worker", env=env, log=root / "serve.log", port=port
        )
        host = f"127.0.0.1:{port}"
        try:
            measure = functools.partial(
                alice_round_trips, host, str(alice_run.id), alice_cookie, step
            )
            before, rss_before = phase(server, measure, quiet_seconds)
            ctx = multiprocessing.get_context("spawn")
            counts_queue = ctx.Queue()
            flooding = (host, str(bob_run.id), bob_cookie, args.flooders, flood_seconds)
            flood = ctx.Process(target=flood_main, args=(*flooding, counts_queue))
            flood.start()
            time.sleep(0.5)  # the flood is under way before alice measures
            during, rss_during = phase(server, measure, flood_seconds - 1.0)
            flood.join(flood_seconds + 30)
            counts = counts_queue.get(timeout=10)
            time.sleep(1.0)  # the flooding sockets' closes reach the server
            after, rss_after = phase(server, measure, quiet_seconds)
            alive = server.alive()
        finally:
            server.stop()
        return report(before, during, after, rss_before, rss_during, rss_after, counts, alive)


def report(
    before: list[float],
    during: list[float],
    after: list[float],
    rss_before: list[float],
    rss_during: list[float],
    rss_after: list[float],
    counts: dict[str, int],
    alive: bool,
) -> int:
    print(describe("alice's pane round trip, before the flood", before))
    print(describe("alice's pane round trip, during the flood", during))
    print(describe("alice's pane round trip, after the flood ", after))
    base_rss, peak_rss, end_rss = rss_before[-1], max(rss_during), rss_after[-1]
    print(
        f"server RSS: before {base_rss:.1f} MB, peak during {peak_rss:.1f} MB "
        f"(+{peak_rss - base_rss:.1f}), after {end_rss:.1f} MB (+{end_rss - base_rss:.1f})"
    )
    print(
        f"bob's flood: {counts['sent']} messages sent on {counts['connections']} connections, "
        f"{counts['closed_by_server']} closed by the server, {counts['refused']} refused"
    )
    base = max(percentile(before, 50) * 1000, LATENCY_FLOOR_MS)
    ratios = {
        "during": percentile(during, 50) * 1000 / base,
        "after": percentile(after, 50) * 1000 / base,
    }
    print(
        f"median round trip over baseline: during {ratios['during']:.2f}x, "
        f"after {ratios['after']:.2f}x (allowed {LATENCY_RATIO:.1f}x)"
    )
    problems = [
        f"alice's pane {name} the flood is {ratio:.2f}x its baseline"
        for name, ratio in ratios.items()
        if ratio > LATENCY_RATIO
    ]
    if peak_rss - base_rss > RSS_DURING_MB:
        problems.append(f"the server grew {peak_rss - base_rss:.1f} MB during the flood")
    if end_rss - base_rss > RSS_AFTER_MB:
        problems.append(f"the server still holds {end_rss - base_rss:.1f} MB after the flood")
    if counts["closed_by_server"] == 0:
        problems.append("no flooding socket was closed by the server")
    if not alive:
        problems.append("the server died")
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
