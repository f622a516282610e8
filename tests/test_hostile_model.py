"""A hostile model, through the real agent loop, against a hostile target.

The scripted model server answers as the test tells it (tests/hostile.py's attack plan) and
records every request body. Real runs go through the engine: secret reads in 35 forms, escapes,
catastrophic patterns, huge and deep arguments, 500 tool calls in one message, a target
swapped mid-attempt and between attempts. What must hold: no secret byte and no byte from
outside the target in any request sent to the model, the stored events and transcripts, the
report, the exports or the pane; every escape refused; every run finished.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.testing import free_port, manage_env, start_manage
from runs.demo.scripts import ScriptedReply, marker
from runs.demo.server import ScriptedModelServer
from runs.engine.worker import Engine
from runs.models import (
    TERMINAL_STEP,
    AgentEvent,
    AgentSession,
    EventKind,
    FlowRun,
    FlowStep,
    RunStatus,
    StepStatus,
)
from runs.services import launch_run, retry_step
from tests import hostile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hostile_target(tmp_path: Path) -> tuple[Path, Path]:
    return hostile.write_hostile_target(tmp_path)


def run_to_end(run: FlowRun, timeout: float = 120) -> FlowRun:
    async def go() -> None:
        await asyncio.wait_for(Engine(run_id=run.id).run(), timeout)

    asyncio.run(go())
    run.refresh_from_db()
    return run


def everything_stored_and_sent(run: FlowRun, server: ScriptedModelServer, client: Any) -> dict:
    """Every place target bytes could end up, as text to search (`client`: the owner's)."""
    steps = list(run.steps.all())
    return {
        "model requests": hostile.dumps(server.requests),
        "stored events": hostile.dumps(
            list(AgentEvent.objects.filter(step__run=run).values_list("payload", flat=True))
        ),
        "transcripts": hostile.dumps(
            list(AgentSession.objects.filter(step__run=run).values_list("transcript", flat=True))
        ),
        "step outputs": hostile.dumps([(s.output, s.error, s.last_tool) for s in steps]),
        "report": run.report + run.summary + hostile.dumps(run.report_data),
        "export.md": client.get(f"/runs/{run.id}/export.md").content.decode(),
        "export.json": client.get(f"/runs/{run.id}/export.json").content.decode(),
        "pane": client.get(f"/runs/{run.id}/").content.decode(),
    }


def assert_nothing_leaked(places: dict[str, str], forbidden: list[str]) -> int:
    for where, text in places.items():
        found = [value for value in forbidden if value in text]
        assert not found, f"{len(found)} secret value(s) in the {where}: {found[:3]}"
    return len(places)


def results_in_order(run: FlowRun, key: str) -> list[dict[str, Any]]:
    events = AgentEvent.objects.filter(step__run=run, step__key=key, kind=EventKind.TOOL_RESULT)
    return [e.payload for e in events.order_by("session__attempt", "seq")]


def test_a_hostile_model_gets_no_secret_and_no_byte_from_outside_the_target(
    client_for, scripted_model: ScriptedModelServer, hostile_target: tuple[Path, Path], alice: Any
):
    root, _ = hostile_target
    secret_calls = hostile.hostile_secret_calls()
    third = -(-len(secret_calls) // 3)
    plan = hostile.AttackPlan()
    plan.assign("correctness", secret_calls[:third])
    plan.assign("security", secret_calls[third : 2 * third])
    plan.assign("maintainability", secret_calls[2 * third :])
    plan.assign("tests", hostile.ESCAPES)
    patterns = [("grep", {"pattern": p, "path": "src"}) for p in hostile.CATASTROPHIC]
    plan.assign("performance", patterns + hostile.HUGE_ARGUMENTS)
    plan.assign("docs", hostile.many_calls(), per_message=hostile.MANY_CALLS)
    scripted_model.responder = plan.respond

    run = run_to_end(launch_run(flow="code-review", band="large", target=str(root), owner=alice))

    assert run.status == RunStatus.SUCCEEDED, run.error
    forbidden = [form.value for form in hostile.FORMS] + hostile.OUTSIDE_BYTES
    places = assert_nothing_leaked(
        everything_stored_and_sent(run, scripted_model, client_for(alice)), forbidden
    )

    # Every secret read came back refused, or (a URL credential in source) redacted.
    reads = {form.path: form for form in hostile.FORMS}
    results = [
        result
        for key in ("correctness", "security", "maintainability")
        for result in results_in_order(run, key)
    ]
    assert len(results) == len(secret_calls)
    refused = redacted = 0
    for (name, args), result in zip(secret_calls, results, strict=True):
        form = reads.get(args.get("path", "")) if name == "read_file" else None
        if form is not None and form.readable:
            assert result["ok"] and "[redacted]" in result["content"], result
            redacted += 1
        elif form is not None:
            assert not result["ok"], (form.label, result["content"])
            refused += 1

    escapes = results_in_order(run, "tests")
    assert len(escapes) == len(hostile.ESCAPES)
    for (name, args), result in zip(hostile.ESCAPES, escapes, strict=True):
        assert not result["ok"] or result["content"] == "(no matches)", (name, args, result)

    checks = results_in_order(run, "performance")
    greps, huge = checks[: len(patterns)], checks[len(patterns) :]
    assert len(greps) == len(patterns) > 0, checks
    assert all(r["ok"] and "time limit" not in r["content"] for r in greps), greps
    assert len(huge) == len(hostile.HUGE_ARGUMENTS)
    assert not any(r["ok"] for r in huge), [r["content"][:100] for r in huge if r["ok"]]

    docs = run.steps.get(key="docs")
    docs_events = AgentEvent.objects.filter(step=docs)
    capped = docs_events.filter(kind=EventKind.STATUS, payload__state="tool_calls_capped").get()
    assert capped.payload["reason"].startswith("468 of 500 tool calls in one message refused")
    assert docs_events.filter(kind=EventKind.TOOL_CALL).count() == 32
    assert docs_events.count() < 120, "500 calls must not become 1,000 events"
    assert docs.tool_calls == 24, "the step's tool budget still applies inside the cap"

    stored = run.steps.get(key="security").output
    assert "Hostile bytes: [\u2400] [\ufffd]" in stored, "NUL and lone surrogate replaced"
    print(
        f"\nhostile model: {len(hostile.FORMS)} secret forms, {len(secret_calls)} secret-seeking "
        f"calls ({refused} refused, {redacted} redacted), {len(hostile.ESCAPES)} escapes "
        f"refused, {len(patterns)} catastrophic patterns finished, {len(huge)} huge/deep "
        f"arguments refused, {hostile.MANY_CALLS} calls in one message -> "
        f"{docs_events.filter(kind=EventKind.TOOL_CALL).count()} run, "
        f"{docs_events.count()} events; 0 secret bytes in {places} places"
    )
    assert len(hostile.FORMS) >= 25 and len(hostile.CATASTROPHIC) >= 10


def test_a_target_swapped_mid_attempt_stops_the_agent_with_a_sentence(
    client_for, scripted_model: ScriptedModelServer, hostile_target: tuple[Path, Path], alice: Any
):
    """Between two tool calls the target becomes a link to another directory: the next
    call reads nothing, and the step fails saying why (no traceback, no retry loop)."""
    root, outside = hostile_target
    swapped = threading.Event()

    def respond(body: dict[str, Any]) -> ScriptedReply | None:
        if marker(body, "Step kind") != "specialist":
            return None
        if marker(body, "Agent role") != "correctness":
            return ScriptedReply(content=hostile.final_answer("security"))
        rounds = sum(1 for m in body["messages"] if m.get("tool_calls"))
        if rounds == 0:
            return ScriptedReply(tool_calls=[("read_file", {"path": "app/views.py"})])
        if not swapped.is_set():
            root.rename(root.with_name("shop-moved"))
            root.symlink_to(outside)
            swapped.set()
        return ScriptedReply(tool_calls=[("read_file", {"path": "secret.txt"})])

    scripted_model.responder = respond
    run = run_to_end(launch_run(flow="code-review", target=str(root), owner=alice))

    correctness = run.steps.get(key="correctness")
    assert swapped.is_set()
    assert correctness.status == StepStatus.FAILED
    assert "was moved or replaced while the agent was reading it" in correctness.error
    assert correctness.attempt == 1, "refused once, not retried in a loop"
    assert run.is_finished
    assert_nothing_leaked(
        everything_stored_and_sent(run, scripted_model, client_for(alice)), hostile.OUTSIDE_BYTES
    )


def swap(root: Path, outside: Path, how: str) -> None:
    moved = root.with_name("shop-moved")
    root.rename(moved)
    if how == "linked":
        root.symlink_to(outside)
    elif how == "replaced":
        shutil.copytree(moved, root, symlinks=True, copy_function=shutil.copy)
        (root / "app" / "views.py").write_text(f"VALUE = '{hostile.OUTSIDE_VALUE}'\n")


@pytest.mark.parametrize(
    ("how", "sentence"),
    [
        ("moved", "is gone (moved or deleted since the launch)"),
        ("linked", "now leads to"),
        ("replaced", "was replaced by another directory since the launch"),
    ],
)
def test_a_retry_on_a_moved_or_swapped_target_fails_with_a_sentence(
    client_for,
    scripted_model: ScriptedModelServer,
    hostile_target: tuple[Path, Path],
    alice: Any,
    how: str,
    sentence: str,
):
    """The first attempt fails (an empty answer); the target changes; the retry's attempt
    refuses it before asking the model anything."""
    root, outside = hostile_target

    def respond(body: dict[str, Any]) -> ScriptedReply | None:
        if marker(body, "Agent role") == "security":
            return ScriptedReply(content="")  # the step fails: "an empty answer"
        return None

    scripted_model.responder = respond
    run = run_to_end(launch_run(flow="code-review", target=str(root), owner=alice))
    assert run.steps.get(key="security").status == StepStatus.FAILED
    swap(root, outside, how)
    scripted_model.responder = None
    asked_before = len(scripted_model.requests)

    assert retry_step(run.id, "security", user=None)
    run = run_to_end(run)

    security = run.steps.get(key="security")
    assert security.status == StepStatus.FAILED and security.attempt == 2
    assert sentence in security.error, security.error
    assert "Traceback" not in security.error
    after = scripted_model.requests[asked_before:]
    assert not [b for b in after if marker(b, "Agent role") == "security"], "model never asked"
    assert run.is_finished
    assert_nothing_leaked(
        everything_stored_and_sent(run, scripted_model, client_for(alice)), hostile.OUTSIDE_BYTES
    )


def test_a_step_that_streams_too_many_events_fails_with_the_reason(
    settings: Any, scripted_model: ScriptedModelServer, target_dir: Path
):
    settings.ORCHESTRATOR_MAX_EVENTS_PER_STEP = 10
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    assert security.status == StepStatus.FAILED
    assert "more than 10 events in this attempt" in security.error
    assert AgentEvent.objects.filter(step=security).count() <= 10 + 4
    assert run.is_finished


@pytest.fixture
def served(tmp_path: Path, settings: Any) -> Iterator[tuple[str, ScriptedModelServer]]:
    """A real `manage.py serve` (web and engine in one process) on a hostile model. Runs
    launched here record that model's endpoint (a run's steps go to the endpoint it was
    launched with, whatever a worker's own settings say)."""
    with ScriptedModelServer() as model:
        settings.ORCHESTRATOR_BASE_URL = model.url
        port = free_port()
        env = manage_env(
            ORCHESTRATOR_MODEL="demo/scripted",
            ORCHESTRATOR_BASE_URL=model.url,
            ORCHESTRATOR_ALLOWED_ROOTS=str(tmp_path),
            ORCHESTRATOR_SLOTS="8",
        )
        log = tmp_path / "serve.log"
        process = start_manage("serve", "--port", str(port), env=env, log=log)
        url = f"http://127.0.0.1:{port}/login/"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url, timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
            yield url, model
        finally:
            process.terminate()
            try:
                process.wait(10)
            except Exception:
                process.kill()
                process.wait()


# Polls until the stop file appears; its first request (the client warming up) is not
# counted, and it says it is polling by printing "ready".
POLLER = """
import json, os, sys, time, urllib.request
url, stop = sys.argv[1], sys.argv[2]
def get():
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.status == 200
        answer.read()
get()
print("ready", flush=True)
seen = []
while not os.path.exists(stop):
    started = time.monotonic()
    get()
    seen.append(time.monotonic() - started)
    time.sleep(0.02)
print(json.dumps(seen))
"""


def step_states(runs: list[FlowRun]) -> list[str]:
    """Each unfinished step's status, phase, attempt and slot flags, for a failure message."""
    return [
        f"{step.key}: {step.status} {step.phase} attempt {step.attempt} "
        f"holds={step.holds_slot} wants={step.wants_slot} tools={step.tool_calls} {step.error}"
        for step in FlowStep.objects.filter(run__in=runs).order_by("run", "position")
        if step.status not in TERMINAL_STEP
    ]


@pytest.mark.slow
def test_the_service_answers_http_within_a_second_while_catastrophic_patterns_run(
    served: tuple[str, ScriptedModelServer], tmp_path: Path
):
    """Three large reviews whose every specialist greps with the ten catastrophic patterns
    over files of 200,000-character lines, in the same process as the web server."""
    url, model = served
    root = tmp_path / "big"
    (root / "src").mkdir(parents=True)
    for i in range(10):
        (root / "src" / f"minified_{i}.js").write_text(f"{hostile.LONG_LINE}\n" * 2)
    plan = hostile.AttackPlan()
    for role in ("correctness", "security", "maintainability", "tests", "performance", "docs"):
        plan.assign(role, [("grep", {"pattern": p, "path": "src"}) for p in hostile.CATASTROPHIC])
    model.responder = plan.respond
    # Tokens at a real server's pace (faster than llama.cpp's): an unpaced stream to eighteen
    # agents would measure the engine's SSE parsing, not the searches.
    model.token_rate = 100.0

    # The poller is a process of its own: its timings must not include waiting for this
    # process's threads (the model server streams to eighteen agents from here). It polls
    # from before the launch to after the last report.
    stop_file = tmp_path / "stop-polling"
    poller = subprocess.Popen(
        [sys.executable, "-c", POLLER, url, str(stop_file)], stdout=subprocess.PIPE, text=True
    )
    assert poller.stdout is not None and poller.stdout.readline().strip() == "ready"
    runs = [launch_run(flow="code-review", band="large", target=str(root)) for _ in range(3)]
    try:
        deadline = time.monotonic() + 180
        while not all(FlowRun.objects.get(id=r.id).is_finished for r in runs):
            assert time.monotonic() < deadline, f"the runs did not finish: {step_states(runs)}"
            time.sleep(0.2)
    finally:
        stop_file.touch()
        out, _ = poller.communicate(timeout=60)
    latencies = sorted(json.loads(out))
    greps = sum(
        AgentEvent.objects.filter(step__run=r, kind=EventKind.TOOL_RESULT).count() for r in runs
    )
    latencies.sort()
    print(
        f"\n{len(hostile.CATASTROPHIC)} catastrophic patterns, {greps} greps over "
        f"{10 * 2 * len(hostile.LONG_LINE):,} characters each, 3 runs: {len(latencies)} HTTP "
        f"requests, median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error
    assert greps == 3 * 6 * len(hostile.CATASTROPHIC)
    assert latencies and latencies[-1] < 1.0, "the web server must answer within a second"
