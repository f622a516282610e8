"""Soak: many concurrent runs for minutes, with open panes; every run finishes, memory stays
flat, and no event is lost, neither in the database nor on a pane's socket.

    .venv/bin/python bench/soak.py [--runs 50] [--minutes 10] [--panes 20] [--band large]

`--smoke`: 2 small runs kept going for 4 s, 2 panes, fast tokens; the same checks, except
memory growth (meaningless over seconds). The bench exits 1 when a check fails.

`manage.py serve` (web + engine) and one `manage.py runworker orchestrator.dispatch` share the
work over Redis (--redis-url; without Redis, serve alone). New runs are launched whenever one
finishes, keeping --runs unfinished, until --minutes have passed; then they drain. --panes
panes are open at any time, each on its own run with every agent expanded; when its run
finishes the pane's event ids are compared with the database, and it moves to another run.
Checks: every run finished; VmRSS of both processes grows < 10% from the end of warm-up to
the end; per session, seq is gap-free 1..n; every pane got exactly the database's events.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common import bench_database, make_target
from common import describe as describe_latency
from harness import ManageProcess, ModelProcess, orchestrator_env, serve, session_cookie
from pane_client import Pane

SAMPLE_SECONDS = 5.0
DRAIN_SECONDS = 600.0  # after the last launch, how long the runs may take to finish
PANE_SETTLE_SECONDS = 60.0  # a finished run's last fragments may still be on their way


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="unfinished runs kept going")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--panes", type=int, default=20)
    parser.add_argument("--band", default="large", help="large: 6 specialists + 2 = 8 agents")
    parser.add_argument("--rate", type=float, default=200.0, help="tokens/s per stream")
    parser.add_argument("--concurrency", type=int, default=16, help="agents per engine")
    parser.add_argument("--warmup", type=float, default=None, help="seconds (default 20%%)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--logs", type=Path, help="keep the processes' logs in this folder")
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.minutes, args.panes, args.band, args.rate = 2, 4 / 60, 2, "small", 2000.0
        args.warmup = 0.0
    args.redis_url = args.redis_url if args.redis_url and reachable(args.redis_url) else ""
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url  # this process wakes the workers too
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        Soak(Path(tmp), args).run()


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 6379), timeout=0.5).close()
    except OSError:
        return False
    return True


@dataclass
class Verdict:
    panes_checked: int = 0
    # Seconds from noticing a run finished until its pane held every stored event.
    settle: list[float] = field(default_factory=list)
    pane_mismatches: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        self.tmp = tmp
        self.args = args
        self.duration = args.minutes * 60
        self.warmup = args.warmup if args.warmup is not None else 0.2 * self.duration
        self.orm = ThreadPoolExecutor(max_workers=1)  # all ORM calls, off the event loop
        self.launched: list[Any] = []
        self.unfinished: set[Any] = set()
        self.panes: dict[Any, Pane] = {}  # run id -> its pane
        self.watched: set[Any] = set()  # runs a pane has been on
        self.rss: list[tuple[float, list[int]]] = []  # (seconds in, KiB per process)
        self.verdict = Verdict()

    def run(self) -> None:
        from django.conf import settings

        settings.ORCHESTRATOR_ALLOWED_ROOTS = [self.tmp.resolve()]
        # the bench's users share its project, and its bursts wait uncapped
        settings.ORCHESTRATOR_SHARED_ROOTS = [self.tmp.resolve()]
        settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        self.target = make_target(self.tmp)
        self.user, self.cookie = session_cookie()
        model = ModelProcess(token_rate=self.args.rate)
        processes: list[ManageProcess] = []
        try:
            processes = self.start_orchestrator(model.url)
            cpu_before = [p.cpu_seconds() for p in processes]
            started = time.time()
            asyncio.run(self.drive(processes))
            wall = time.time() - started
            cpu = [
                p.cpu_seconds() - before for p, before in zip(processes, cpu_before, strict=True)
            ]
        finally:
            for process in processes:
                process.stop()
            model.stop()
            self.orm.submit(_close_connections).result()
            self.orm.shutdown()
        if self.args.logs:
            self.args.logs.mkdir(parents=True, exist_ok=True)
            for process in processes:
                shutil.copy(process.log, self.args.logs / process.log.name)
        self.report(processes, wall, cpu)

    def start_orchestrator(self, model_url: str) -> list[ManageProcess]:
        extra = {
            "ORCHESTRATOR_SLOTS": str(2 * self.args.concurrency),
            "ORCHESTRATOR_WORKER_CONCURRENCY": str(self.args.concurrency),
            # One bench user stands for every viewer: --panes open at once, and rotating.
            "ORCHESTRATOR_MAX_SOCKETS_PER_USER": str(max(16, self.args.panes + 4)),
        }
        if self.args.redis_url:
            extra["REDIS_URL"] = self.args.redis_url
        web, self.host = serve(model_url, self.tmp, self.tmp / "serve.log", **extra)
        if not self.args.redis_url:
            return [web]
        env = orchestrator_env(model_url, self.tmp, **extra)
        worker = ManageProcess(
            "runworker", "orchestrator.dispatch", env=env, log=self.tmp / "worker.log"
        )
        return [web, worker]

    async def orm_call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.orm, fn, *args)

    async def drive(self, processes: list[ManageProcess]) -> None:
        started = time.monotonic()
        next_sample = started
        while True:
            elapsed = time.monotonic() - started
            if elapsed < self.duration:
                await self.top_up()
            elif not self.unfinished:
                break
            elif elapsed > self.duration + DRAIN_SECONDS:
                print(f"gave up waiting for {len(self.unfinished)} runs to finish")
                break
            if not all(p.alive() for p in processes):
                raise RuntimeError("an orchestrator process died; see its log")
            done = await self.orm_call(_finished, list(self.unfinished))
            self.unfinished -= done
            await self.rotate_panes(done)
            if time.monotonic() >= next_sample:
                self.rss.append((elapsed, [p.rss_kib() for p in processes]))
                next_sample += SAMPLE_SECONDS
            await asyncio.sleep(0.5)
        for run_id in list(self.panes):
            await self.check_pane(run_id)
        self.rss.append((time.monotonic() - started, [p.rss_kib() for p in processes]))

    async def top_up(self) -> None:
        while len(self.unfinished) < self.args.runs:
            run = await self.orm_call(self.launch, len(self.launched))
            self.launched.append(run.id)
            self.unfinished.add(run.id)

    def launch(self, index: int) -> Any:
        from runs.services import launch_run

        return launch_run(
            flow="code-review",
            target=str(self.target),
            band=self.args.band,
            focus=f"soak run {index}",
            owner=self.user,
        )

    async def rotate_panes(self, done: set[Any]) -> None:
        for run_id in [r for r in self.panes if r in done]:
            await self.check_pane(run_id)
        candidates = [r for r in reversed(self.launched) if r in self.unfinished]
        for run_id in candidates:
            if len(self.panes) >= self.args.panes:
                break
            if run_id in self.watched:
                continue
            steps = await self.orm_call(_step_ids, run_id)
            self.panes[run_id] = await Pane(self.host, str(run_id), self.cookie).open(steps)
            self.watched.add(run_id)

    async def check_pane(self, run_id: Any) -> None:
        """The pane's event ids per step must be the database's, in order, nothing doubled."""
        pane = self.panes.pop(run_id)
        started = time.monotonic()
        while True:
            stored = await self.orm_call(_event_ids, run_id)
            received = pane.ids_by_step()
            if received == stored:
                self.verdict.settle.append(time.monotonic() - started)
                break
            if time.monotonic() > started + PANE_SETTLE_SECONDS:
                break
            await asyncio.sleep(0.25)
        early = pane.closed
        await pane.close()
        self.verdict.panes_checked += 1
        if received != stored:
            details = await self.orm_call(_event_details, run_id)
            line = describe_mismatch(run_id, received, stored, details)
            self.verdict.pane_mismatches.append(
                f"{line} [checked at {time.time():.1f}; {early or 'socket open'}]"
            )

    def report(self, processes: list[ManageProcess], wall: float, cpu: list[float]) -> None:
        from django.db import connection
        from django.db.models import Count

        from runs.models import TERMINAL_RUN, AgentEvent, FlowRun

        statuses = dict(
            FlowRun.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        unfinished = sum(n for s, n in statuses.items() if s not in TERMINAL_RUN)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM (SELECT session_id FROM agent_events GROUP BY session_id "
                "HAVING min(seq) <> 1 OR max(seq) <> count(*) OR count(DISTINCT seq) <> count(*)"
                ") AS broken"
            )
            broken_sessions = cursor.fetchone()[0]
        events = AgentEvent.objects.count()
        sessions = AgentEvent.objects.values("session_id").distinct().count()
        a = self.args
        print(
            f"\nsoak: {a.minutes:g} min, {a.runs} concurrent {a.band} code-review runs, "
            f"{a.panes} panes, {a.rate:g} tok/s per stream, "
            f"{'serve + 1 worker over Redis' if a.redis_url else 'serve alone'}"
        )
        print(f"runs launched={len(self.launched)} by status={statuses} wall={wall:.0f}s")
        names = ["serve", "worker"][: len(processes)]
        print("CPU seconds: " + ", ".join(f"{n} {c:.0f}" for n, c in zip(names, cpu, strict=True)))
        for i, name in enumerate(names):
            base = self.rss_after_warmup(i)
            end = self.rss[-1][1][i]
            peak = max(kib[i] for _, kib in self.rss)
            growth = (end - base) / base * 100 if base else float("nan")
            print(
                f"RSS {name}: after warm-up {base / 1024:.1f} MiB, end {end / 1024:.1f} MiB "
                f"({growth:+.1f}%), peak {peak / 1024:.1f} MiB  target < +10%: "
                f"{'met' if growth < 10 else 'MISSED'}"
            )
        print(
            f"events={events} in {sessions} sessions; sessions with a seq gap or duplicate: "
            f"{broken_sessions}"
        )
        print(
            f"panes checked={self.verdict.panes_checked}, "
            f"with events differing from the database: {len(self.verdict.pane_mismatches)}"
        )
        if self.verdict.settle:
            print(describe_latency("pane complete after its run finished", self.verdict.settle))
        for line in self.verdict.pane_mismatches[:10]:
            print("  " + line)
        for process, name in zip(processes, names, strict=True):
            warnings = [
                line
                for line in process.log.read_text().splitlines()
                if " WARNING " in line or "Error" in line
            ]
            print(f"{name} log: {len(warnings)} warnings")
            for line in warnings[:5]:
                print("  " + line[:300])
        ok = not unfinished and not broken_sessions and not self.verdict.pane_mismatches
        print(f"all runs finished, no event lost: {'yes' if ok else 'NO'}")
        if not ok or not events or not self.verdict.panes_checked:
            raise SystemExit("the soak failed a check, or measured nothing")

    def rss_after_warmup(self, i: int) -> int:
        after = [kib[i] for at, kib in self.rss if at >= self.warmup]
        return after[0] if after else self.rss[0][1][i]


def describe_mismatch(
    run_id: Any,
    received: dict[int, list[int]],
    stored: dict[int, list[int]],
    details: dict[int, str],
) -> str:
    parts = []
    for step in sorted(set(received) | set(stored)):
        got, want = received.get(step, []), stored.get(step, [])
        if got != want:
            missing = sorted(set(want) - set(got))
            extra = len(got) - len(set(got)) + len(set(got) - set(want))
            shown = [f"{event} {details.get(event, '?')}" for event in missing[:5]]
            parts.append(f"step {step}: {len(missing)} missing {shown}, {extra} extra")
    return f"run {run_id}: " + "; ".join(parts)


# --- ORM helpers, run on the bench's ORM thread ---------------------------------------------


def _finished(run_ids: list[Any]) -> set[Any]:
    from runs.models import TERMINAL_RUN, FlowRun

    rows = FlowRun.objects.filter(id__in=run_ids, status__in=TERMINAL_RUN)
    return set(rows.values_list("id", flat=True))


def _step_ids(run_id: Any) -> list[int]:
    from runs.models import FlowStep

    return list(FlowStep.objects.filter(run_id=run_id).values_list("id", flat=True))


def _event_ids(run_id: Any) -> dict[int, list[int]]:
    from runs.models import AgentEvent

    stored: dict[int, list[int]] = {}
    rows = AgentEvent.objects.filter(step__run_id=run_id).order_by("id")
    for step, event in rows.values_list("step_id", "id"):
        stored.setdefault(step, []).append(event)
    return stored


def _event_details(run_id: Any) -> dict[int, str]:
    """Per event id: its kind, seq and the worker of its attempt (what a mismatch shows)."""
    from runs.models import AgentEvent

    rows = AgentEvent.objects.filter(step__run_id=run_id).values_list(
        "id", "step__key", "kind", "seq", "session__worker", "payload__state"
    )
    return {
        event: f"({key}: {kind} {state or ''} seq {seq} on {worker})"
        for event, key, kind, seq, worker, state in rows
    }


def _close_connections() -> None:
    from django.db import connections

    connections.close_all()


if __name__ == "__main__":
    main()
