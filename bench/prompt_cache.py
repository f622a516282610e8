"""Model-work benchmark: how much of a run's prompt is a prefix every agent shares (what an
OpenAI-compatible server's prompt cache can reuse), and fast mode's tokens against normal's.
The prompt is measured as templates render it: system message, tools, then the messages
(bench/prefill.py measures it in a real server's tokens).

    .venv/bin/python bench/prompt_cache.py [--flow code-review] [--band medium] [--smoke]

`--smoke`: the small band; exits 1 unless both runs succeed with tokens counted and the
agents' first prompts share a prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from common import bench_database, make_target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", default="code-review")
    parser.add_argument("--band", default="medium")
    parser.add_argument("--smoke", action="store_true", help="the small band; sanity only")
    args = parser.parse_args()
    with bench_database(), tempfile.TemporaryDirectory() as tmp:
        measure(Path(tmp), args.flow, "small" if args.smoke else args.band)


def run_once(target: Path, flow: str, band: str, fast: bool) -> Any:
    from runs.engine.worker import Engine
    from runs.models import FlowRun
    from runs.services import launch_run

    run = launch_run(flow=flow, target=str(target), band=band, fast=fast)
    asyncio.run(Engine(run_id=run.id).run())
    return FlowRun.objects.get(id=run.id)


def measure(tmp: Path, flow: str, band: str) -> None:
    from django.conf import settings

    from runs.demo.server import ScriptedModelServer

    target = make_target(tmp)
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [tmp.resolve()]
    # the bench's users share its project, and its bursts wait uncapped
    settings.ORCHESTRATOR_SHARED_ROOTS = [tmp.resolve()]
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0
    with ScriptedModelServer() as server:
        settings.ORCHESTRATOR_MODEL = "demo/scripted"
        settings.ORCHESTRATOR_BASE_URL = server.url
        normal = run_once(target, flow, band, fast=False)
        first_turns = [r for r in server.requests if len(r["messages"]) == 2]
        fast = run_once(target, flow, band, fast=True)
    # In the order chat templates render a request: the system message, the tools, the rest.
    prompts = [
        json.dumps([r["messages"][0], r.get("tools"), r["messages"][1:]]) for r in first_turns
    ]
    # Character by character is the point: a prompt cache matches a byte prefix.
    shared = len(os.path.commonprefix(prompts))  # noqa: RUF071
    total = sum(len(p) for p in prompts)
    print(f"{flow} band {band}: {len(prompts)} agents")
    print(
        f"shared prompt prefix: {shared} chars per agent; "
        f"{shared * len(prompts) / total:.0%} of all first-turn prompt text is a common prefix"
    )
    n_tokens = normal.tokens_in + normal.tokens_out
    f_tokens = fast.tokens_in + fast.tokens_out
    print(
        f"tokens normal {n_tokens} vs fast {f_tokens} (fast/normal {f_tokens / n_tokens:.2f}); "
        f"statuses {normal.status}/{fast.status}"
    )
    if {normal.status, fast.status} != {"succeeded"} or not n_tokens or not f_tokens:
        raise SystemExit("a run did not succeed, or counted no tokens")
    if len(prompts) < 2 or not shared:
        raise SystemExit(f"{len(prompts)} first-turn prompts, {shared} chars shared")


if __name__ == "__main__":
    main()
