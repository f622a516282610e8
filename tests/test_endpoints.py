"""More than one model server for one model (issue 22, part 7): a provider lists several
endpoints, each with its own slots; each turn is placed on an endpoint with a free slot,
preferring the one holding its prompt; the cap holds per endpoint across workers; an endpoint
that goes away is routed around and used again once its /props answers."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from runs.engine.agent.backends.base import EndpointConfig, Retrying
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from runs.engine.agent.modelconfig import (
    configuration_problems,
    configured_endpoint,
    resolve_model,
)
from runs.engine.agent.servers import ServerDirectory, down_endpoints, mark_down, mark_up
from runs.engine.agent.turn import MOVED
from runs.engine.queue import placement, scheduler
from runs.models import AgentEvent, FlowRun, FlowStep, ModelEndpoint, RunStatus, StepStatus
from runs.services import launch_run

MODEL = "demo/scripted"
A, B = "http://10.0.0.1:8081/v1", "http://10.0.0.2:8082/v1"


# --- Settings ---------------------------------------------------------------------------


def test_a_provider_lists_several_endpoints_and_a_run_records_them_all(settings: Any):
    settings.ORCHESTRATOR_BASE_URL = ""
    settings.ORCHESTRATOR_PROVIDERS = {"llama-cpp": {"base_url": [A, B + "/"]}}
    settings.ORCHESTRATOR_MODEL = "llama-cpp/qwen"
    assert configuration_problems() == []
    recorded, name = configured_endpoint("llama-cpp/qwen")
    assert (recorded, name) == (f"{A},{B}", "qwen")
    model = resolve_model("llama-cpp/qwen", base_url=recorded)
    assert model.endpoints == (A, B) and model.endpoint.base_url == A
    assert model.at(B).endpoint.base_url == B and model.at(B).endpoint.model == "qwen"


def test_the_base_url_setting_takes_several_endpoints_separated_by_commas(settings: Any):
    settings.ORCHESTRATOR_BASE_URL = f"{A}, {B}"
    assert configured_endpoint("llama-cpp/qwen")[0] == f"{A},{B}"
    settings.ORCHESTRATOR_BASE_URL = A  # one endpoint: exactly as before
    assert configured_endpoint("llama-cpp/qwen")[0] == A
    assert resolve_model("llama-cpp/qwen").endpoints == (A,)


@pytest.mark.parametrize(
    "base_url, sentence",
    [
        ([A, "ftp://h/v1"], "must be an http:// or https:// URL, got 'ftp://h/v1'"),
        ([A, A + "/"], f"lists {A!r} twice"),
        ([A, ""], "has an empty entry"),
        ([], "must be a URL or a list of URLs"),
        ([A, 7], "has an entry that is not a URL string: 7"),
    ],
)
def test_a_bad_endpoint_list_is_refused_with_a_sentence_naming_the_setting(
    settings: Any, base_url: Any, sentence: str
):
    settings.ORCHESTRATOR_BASE_URL = ""
    settings.ORCHESTRATOR_PROVIDERS = {"lab": {"base_url": base_url}}
    settings.ORCHESTRATOR_MODEL = "lab/qwen"
    problems = configuration_problems()
    assert any(
        p.startswith("ORCHESTRATOR_PROVIDERS['lab'] is invalid: base_url") and sentence in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    "value, sentence",
    [
        (f"{A},ftp://h/v1", "ORCHESTRATOR_BASE_URL must be an http:// or https:// URL"),
        (f"{A},{A}", "ORCHESTRATOR_BASE_URL lists"),
        (f"{A},,{B}", "ORCHESTRATOR_BASE_URL has an empty entry"),
        # A port no connection can use: named, rather than an OverflowError at connect().
        (
            f"{A},http://127.0.0.1:99999/v1",
            "ORCHESTRATOR_BASE_URL must give a port that is a number from 1 to 65535, "
            "got 'http://127.0.0.1:99999/v1'",
        ),
        ("http://127.0.0.1:80a/v1", "port that is a number from 1 to 65535"),
        ("http://127.0.0.1:0/v1", "port that is a number from 1 to 65535"),
        # A colon with no port after it: urlsplit reads no port, a typo all the same.
        ("http://127.0.0.1:/v1", "port that is a number from 1 to 65535"),
        ("http://user:pw@[::1]:/v1", "port that is a number from 1 to 65535"),
        # One server under two spellings would get twice its slots.
        (
            "http://127.0.0.1:18101/v1,http://127.0.0.1:18101",
            "ORCHESTRATOR_BASE_URL lists one server twice: 'http://127.0.0.1:18101/v1' and "
            "'http://127.0.0.1:18101'",
        ),
        (
            "http://127.0.0.1:18101/v1,HTTP://127.0.0.1:18101/v1",
            "lists one server twice: 'http://127.0.0.1:18101/v1' and 'HTTP://127.0.0.1:18101/v1'",
        ),
        ("http://Gpu1/v1/,http://gpu1:80", "lists one server twice: 'http://Gpu1/v1' and"),
        ("https://gpu1:443/x,https://gpu1/x/v1", "lists one server twice"),
        # JSON that is not a list of URL strings.
        ('{"gpu1": "http://gpu1/v1"}', "must be comma-separated URLs or a JSON list of URL"),
        ('"http://gpu1/v1"', "got a JSON string"),
        ('["http://gpu1/v1", 8080]', "has an entry that is not a URL string: 8080"),
        ('["http://gpu1/v1",', "reads as JSON but is not valid JSON"),
        # Another separator than a comma.
        (
            f"{A};{B}",
            f"must separate endpoints with commas (an entry holds ';'), got '{A};{B}'",
        ),
        (f"{A} {B}", "must separate endpoints with commas (an entry holds a space)"),
        (f"{A}, {B}\t{A}", "must separate endpoints with commas"),
        (f"{A}|{B}", f"must separate endpoints with commas (an entry holds '|'), got '{A}|{B}'"),
        (f"{A}{B}", "must separate endpoints with commas (an entry holds two URLs)"),
        # What no server's address holds unescaped, though urlsplit takes it.
        (f"{A}#gpu1", "'#' has no place in a server's address"),
        ("http://127.0.0.1:8081/{model}/v1", "'{' has no place in a server's address"),
        ("http://127.0.0.1:8081/v1\\", "'\\\\' has no place in a server's address"),
        ("http://127.0.0.1:8081/v1\x7f", "'\\x7f' has no place in a server's address"),
        # The host missing is said so, not that the URL is not http.
        ("http:///v1", "ORCHESTRATOR_BASE_URL must name the server's host"),
        (f"{A},http://:8080/v1", "must name the server's host (such as http://127.0.0.1:8080/v1)"),
    ],
)
def test_a_bad_base_url_list_is_a_problem_naming_the_setting(
    settings: Any, value: str, sentence: str
):
    settings.ORCHESTRATOR_BASE_URL = value
    problems = configuration_problems()
    assert any(sentence in p for p in problems), problems
    with pytest.raises(ImproperlyConfigured, match=re.escape(sentence)):
        resolve_model("llama-cpp/qwen")  # the engine reads the setting by the same rule


def test_a_blank_base_url_setting_means_the_providers_own(monkeypatch: Any):
    """As README says: set but blank is the same as unset (the provider's base URL)."""
    from orchestrator_site.env import env_urls

    monkeypatch.setenv("ORCHESTRATOR_BASE_URL", "   ")
    assert env_urls("ORCHESTRATOR_BASE_URL") == ""
    monkeypatch.setenv("ORCHESTRATOR_BASE_URL", " , ")
    with pytest.raises(ImproperlyConfigured, match="ORCHESTRATOR_BASE_URL has an empty entry"):
        env_urls("ORCHESTRATOR_BASE_URL")


def test_the_base_url_setting_takes_a_json_list_and_keeps_a_gateways_paths_apart(
    settings: Any,
):
    settings.ORCHESTRATOR_BASE_URL = f'["{A}", "{B}/"]'
    assert configuration_problems() == []
    assert configured_endpoint("llama-cpp/qwen")[0] == f"{A},{B}"
    gateway = ["http://gw:8080/gpu1/v1", "http://gw:8080/gpu2/v1", "http://gw:8080/v1"]
    settings.ORCHESTRATOR_BASE_URL = ",".join(gateway)
    assert configuration_problems() == []
    assert resolve_model("llama-cpp/qwen").endpoints == tuple(gateway)


def test_a_provider_listing_one_server_twice_or_a_bad_port_is_refused(settings: Any):
    settings.ORCHESTRATOR_BASE_URL = ""
    settings.ORCHESTRATOR_MODEL = "lab/qwen"
    settings.ORCHESTRATOR_PROVIDERS = {"lab": {"base_url": [A, A.replace("http:", "HTTP:")]}}
    assert any("lists one server twice" in p for p in configuration_problems())
    settings.ORCHESTRATOR_PROVIDERS = {"lab": {"base_url": "http://h:65536/v1"}}
    [problem] = configuration_problems()
    assert problem.startswith("ORCHESTRATOR_PROVIDERS['lab'] is invalid: base_url")
    assert "port that is a number from 1 to 65535, got 'http://h:65536/v1'" in problem


@pytest.mark.django_db(transaction=True)
def test_a_run_recorded_with_a_bad_port_fails_its_steps_with_a_sentence(
    run_to_end: Any, settings: Any, scripted_model: Any, target_dir: Path
):
    """A run recorded before the rule (or written by hand) with a port no socket takes: its
    agents fail saying so, never with an internal error from the connection."""
    run = launch_run(flow="code-review", target=str(target_dir))
    bad = f"{scripted_model.url},http://127.0.0.1:99999/v1"
    FlowRun.objects.filter(pk=run.pk).update(endpoint_url=bad)
    with pytest.raises(ImproperlyConfigured, match="port that is a number from 1 to 65535"):
        resolve_model(run.model, base_url=bad)
    run = run_to_end(run)
    errors = [s.error for s in FlowStep.objects.filter(run=run) if s.error]
    assert run.status != RunStatus.SUCCEEDED
    assert errors and all("internal error" not in e and "Overflow" not in e for e in errors)
    assert any("must give a port that is a number from 1 to 65535" in e for e in errors), errors


# --- Placement, the pure rule -------------------------------------------------------------


NOW = timezone.now()
RUN = uuid4()


def waiter(step_id: int, endpoint: str = "", asked: float = 0.0, run: Any = RUN) -> Any:
    return placement.Waiter(
        step_id=step_id, run_id=run, endpoint=endpoint, asked_at=NOW - timedelta(seconds=asked)
    )


def test_a_turn_goes_back_to_the_endpoint_holding_its_prompt():
    caps = {A: 2, B: 2}
    assert placement.place([waiter(1, B)], caps, {}, now=NOW) == {1: B}


def test_a_first_turn_goes_where_its_run_prompts_are_else_to_the_least_busy():
    caps = {A: 2, B: 2}
    prompts = {RUN: {B: 3, A: 1}}
    assert placement.place([waiter(1)], caps, {B: 1}, run_prompts=prompts, now=NOW) == {1: B}
    assert placement.place([waiter(1)], caps, {A: 1}, now=NOW) == {1: B}, "least busy"
    assert placement.place([waiter(1)], caps, {}, now=NOW) == {1: A}, "first listed on a tie"
    assert placement.place([waiter(1)], {A: 1, B: 4}, {A: 0, B: 1}, now=NOW) == {1: A}


def test_the_preference_for_its_own_endpoint_is_bounded():
    """Its own endpoint full, another free: the slot goes to the next in line meanwhile, and
    after PREFER_OWN_SECONDS the waiter takes any free slot."""
    caps, held = {A: 1, B: 1}, {B: 1}
    fresh = [waiter(1, B, asked=0.1), waiter(2)]
    assert placement.place(fresh, caps, held, now=NOW) == {2: A}
    alone = [waiter(1, B, asked=0.1)]
    assert placement.place(alone, caps, held, now=NOW) == {}, "waits a moment for its own"
    late = [waiter(1, B, asked=placement.PREFER_OWN_SECONDS + 0.1), waiter(2)]
    assert placement.place(late, caps, held, now=NOW) == {1: A}, "then first in line wins"


def test_a_down_endpoint_gets_no_turn_and_is_not_waited_for():
    caps = {A: 1, B: 1}
    assert placement.place([waiter(1, A, asked=0.1)], caps, {}, down={A}, now=NOW) == {1: B}
    assert placement.place([waiter(1), waiter(2)], caps, {}, down={A}, now=NOW) == {1: B}


def test_a_waiter_goes_only_to_its_own_runs_endpoints():
    caps = {A: 1, B: 1}
    only_b = placement.Waiter(
        step_id=1, run_id=RUN, endpoint="", asked_at=NOW, allowed=frozenset({B})
    )
    assert placement.place([only_b, waiter(2)], caps, {B: 1}, now=NOW) == {2: A}
    was_on_a = placement.Waiter(
        step_id=1, run_id=RUN, endpoint=A, asked_at=NOW, allowed=frozenset({B})
    )
    assert placement.place([was_on_a], caps, {A: 1}, now=NOW) == {1: B}, "no wait for A"


@pytest.mark.django_db
def test_a_run_keeps_the_endpoints_it_was_launched_with(launch, alice, bob):
    """A run launched when only B was configured never gets a slot on A, even when another
    run's hand-over or its own ask finds A free."""
    caps = {A: 1, B: 1}
    both = launch(alice)
    FlowRun.objects.filter(id=both.id).update(endpoint_url=f"{A},{B}")
    [holder, *_] = claimed_steps([both], "w1")
    assert scheduler.try_acquire_slot(holder, "w1", MODEL, {A: 0, B: 1}).endpoint == B
    old = launch(bob)
    FlowRun.objects.filter(id=old.id).update(endpoint_url=B)
    [mine, *_] = claimed_steps([old], "w2")
    assert not scheduler.try_acquire_slot(mine, "w2", MODEL, caps).granted, "A is not its"
    assert scheduler.release_slot(holder, "w1", MODEL, caps).endpoints == {mine: B}


def test_one_endpoint_places_in_line_order_as_ever():
    caps = {"": 2}
    line = [waiter(n, "", asked=0.0) for n in range(1, 5)]
    assert placement.place(line, caps, {"": 1}, now=NOW) == {1: ""}


# --- The line in PostgreSQL ---------------------------------------------------------------


def claimed_steps(runs: list[FlowRun], worker: str) -> list[int]:
    steps: list[int] = []
    for run in runs:
        steps += scheduler.claim_steps(worker, 10, run_id=run.id)
    return steps


def held_per_endpoint() -> Counter[str]:
    held = FlowStep.objects.filter(holds_slot=True).values_list("endpoint", flat=True)
    return Counter(held)


@pytest.fixture
def launch(settings: Any, target_dir: Path) -> Any:
    settings.ORCHESTRATOR_MODEL = MODEL
    settings.ORCHESTRATOR_BASE_URL = f"{A},{B}"  # what the runs record, and so may use

    def launch(owner: Any = None) -> FlowRun:
        return launch_run(flow="code-review", target=str(target_dir), owner=owner)

    return launch


@pytest.mark.django_db
def test_each_endpoint_has_its_own_cap_and_a_freed_slot_is_handed_on_there(launch, alice, bob):
    settings_caps = {A: 1, B: 2}
    first = claimed_steps([launch(alice), launch(alice)], "w1")
    second = claimed_steps([launch(bob), launch(bob)], "w2")
    answers = {}
    for step_id in [*first, *second]:
        worker = "w1" if step_id in first else "w2"
        answers[step_id] = scheduler.try_acquire_slot(step_id, worker, MODEL, settings_caps)
    granted = {i: a.endpoint for i, a in answers.items() if a.granted}
    assert sorted(granted.values()) == [A, B, B], "three slots in all: one on A, two on B"
    assert held_per_endpoint() == {A: 1, B: 2}
    [on_a] = [i for i, url in granted.items() if url == A]
    worker = "w1" if on_a in first else "w2"
    handed = scheduler.release_slot(on_a, worker, MODEL, settings_caps, tools="read_file")
    assert len(handed) == 1 and handed.endpoints == {handed[0]: A}
    assert held_per_endpoint() == {A: 1, B: 2}
    assert FlowStep.objects.get(id=on_a).endpoint == A, "it keeps the endpoint of its turn"


@pytest.mark.django_db
def test_a_step_waits_a_moment_for_its_own_endpoint_and_never_longer(launch, alice, bob, charlie):
    caps = {A: 1, B: 1}
    [holder, *_] = claimed_steps([launch(bob)], "w1")
    assert scheduler.try_acquire_slot(holder, "w1", MODEL, {A: 0, B: 1}).endpoint == B
    [mine, *_] = claimed_steps([launch(alice)], "w2")
    FlowStep.objects.filter(id=mine).update(endpoint=B)  # its last turn ran on B
    first = scheduler.try_acquire_slot(mine, "w2", MODEL, caps)
    assert (first.granted, first.position) == (False, 1), "A is free, but its prompt is on B"
    [theirs, *_] = claimed_steps([launch(charlie)], "w1")
    behind = scheduler.try_acquire_slot(theirs, "w1", MODEL, caps)
    assert behind.granted and behind.endpoint == A, "the slot it passes over goes on"
    scheduler.release_slot(theirs, "w1", MODEL, caps)  # A free again, nobody else waiting
    FlowStep.objects.filter(id=mine).update(
        asked_at=timezone.now() - timedelta(seconds=placement.PREFER_OWN_SECONDS + 1)
    )
    late = scheduler.try_acquire_slot(mine, "w2", MODEL, caps)
    assert late.granted and late.endpoint == A, "past the bound it takes any free slot"


@pytest.mark.django_db
def test_a_first_turn_follows_its_runs_prompts_and_a_down_endpoint_is_skipped(launch, alice):
    caps = {A: 4, B: 4}
    run = launch(alice)
    steps = claimed_steps([run], "w")
    FlowStep.objects.filter(run=run).exclude(id__in=steps).update(endpoint=B)
    assert scheduler.try_acquire_slot(steps[0], "w", MODEL, caps).endpoint == B
    mark_down(B, "refused")
    assert down_endpoints([A, B]) == {B}
    assert scheduler.try_acquire_slot(steps[1], "w", MODEL, caps).endpoint == A
    mark_up(B)
    assert down_endpoints([A, B]) == set()
    assert ModelEndpoint.objects.get(url=B).down_until is None


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_never_hold_more_than_an_endpoints_slots(launch, alice, bob):
    """Two workers (threads, each its own database session) take and give back slots as
    fast as they can; every grant is checked against the other's."""
    caps = {A: 1, B: 2}
    steps = {
        "w1": claimed_steps([launch(alice), launch(alice)], "w1"),
        "w2": claimed_steps([launch(bob), launch(bob)], "w2"),
    }
    over: list[Counter[str]] = []
    grants: Counter[str] = Counter()
    lock = threading.Lock()

    def work(worker: str) -> None:
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                for step_id in steps[worker]:
                    answer = scheduler.try_acquire_slot(step_id, worker, MODEL, caps)
                    if not answer.granted:
                        continue
                    held = held_per_endpoint()
                    with lock:
                        grants[answer.endpoint] += 1
                        if held[A] > caps[A] or held[B] > caps[B]:
                            over.append(held)
                    scheduler.release_slot(step_id, worker, MODEL, caps)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(w,)) for w in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert over == []
    assert grants[A] > 0 and grants[B] > 0, grants


# --- Routing around a lost endpoint -------------------------------------------------------


def test_a_refused_connection_is_a_lost_endpoint_and_a_503_is_not(scripted_model: Any):
    async def first_retry(url: str) -> Retrying:
        config = EndpointConfig(base_url=url, model="m", retry_seconds=0.5, backoff_base=0.01)
        backend = OpenAICompatibleBackend(config)
        try:
            stream = backend.stream_turn(
                messages=[{"role": "user", "content": "hi"}], tools=None, max_tokens=8
            )
            async for event in stream:
                if isinstance(event, Retrying):
                    await stream.aclose()
                    return event
            raise AssertionError("no retry")
        finally:
            await backend.aclose()

    assert asyncio.run(first_retry("http://127.0.0.1:9/v1")).lost_endpoint
    scripted_model.loading_until = time.time() + 30
    loading = asyncio.run(first_retry(scripted_model.url))
    assert "503" in loading.reason and not loading.lost_endpoint


@pytest.mark.django_db
def test_a_lost_endpoint_is_marked_down_and_up_again_once_its_props_answer(
    scripted_model: Any, monkeypatch: Any
):
    from runs.engine.agent import servers

    monkeypatch.setattr(servers, "PROBE_SECONDS", 0.05)
    directory = ServerDirectory()

    async def lose_and_recover() -> None:
        model = await directory.target(MODEL, f"{scripted_model.url},{B}")
        assert model.caps() == {scripted_model.url: 4, B: 4}
        await directory.endpoint_lost(model, scripted_model.url, "refused")
        assert await asyncio.to_thread(down_endpoints, [scripted_model.url]) == {scripted_model.url}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if not await asyncio.to_thread(down_endpoints, [scripted_model.url]):
                break
            await asyncio.sleep(0.05)
        await directory.aclose()

    asyncio.run(lose_and_recover())
    assert down_endpoints([scripted_model.url]) == set(), "its /props answered: up again"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_run_on_two_servers_loses_no_agent_when_one_goes_away(settings: Any, target_dir: Path):
    """Two scripted model servers as one provider (1 and 2 slots, slow streams); once the
    first has served a few requests it goes away, connections cut. The run finishes with
    every agent succeeded, the second server took over, and neither ever had more open
    requests than its slots."""
    from runs.demo.server import ScriptedModelServer

    with (
        ScriptedModelServer(total_slots=1, token_rate=30.0) as first,
        ScriptedModelServer(total_slots=2, token_rate=30.0) as second,
    ):
        first.open_requests.reset(cap=1)
        second.open_requests.reset(cap=2)
        settings.ORCHESTRATOR_MODEL = MODEL
        settings.ORCHESTRATOR_BASE_URL = f"{first.url},{second.url}"
        settings.ORCHESTRATOR_SLOTS = 0

        at_kill: list[int] = []

        def kill_first() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                first.open_requests.arrivals >= 3 and first.open_requests.current() >= 1
            ):
                time.sleep(0.005)
            at_kill.append(first.open_requests.cut_all())  # mid-stream: connections reset
            at_kill.append(second.open_requests.arrivals)
            first.stop()
            first.open_requests.cut_all()

        killer = threading.Thread(target=kill_first)
        killer.start()
        call_command("launch_flow", "code-review", target=str(target_dir), band="medium", wait=True)
        killer.join(70)
        run = FlowRun.objects.get()
        steps = list(run.steps.all())
        cut, second_before = at_kill
        print(
            f"first: {first.open_requests.arrivals} requests ({cut} cut by the kill); "
            f"second: {second_before} before the kill, {second.open_requests.arrivals} in all"
        )
        assert first.open_requests.arrivals >= 3 and cut >= 1, "killed mid-stream"
        assert second.open_requests.arrivals > second_before, "the second took over"
        assert first.open_requests.over_cap == [] and second.open_requests.over_cap == []
        assert run.status == RunStatus.SUCCEEDED, [(s.key, s.status, s.error) for s in steps]
        assert {s.status for s in steps} == {StepStatus.SUCCEEDED}
        assert {s.endpoint for s in steps} <= {first.url, second.url}
        # The report names both servers, a space between them (a narrow pane wraps there).
        assert f"at {first.url}, {second.url}" in run.report
        assert ModelEndpoint.objects.get(url=first.url).down_until is not None
        moved = AgentEvent.objects.filter(step__run=run, kind="status", payload__detail=MOVED)
        assert moved.exists(), "the cut turn said it starts again on another server"


# --- Where each agent is, for people and hosts --------------------------------------------


@pytest.mark.django_db
def test_the_pane_and_the_api_say_which_endpoint_each_agent_is_on(
    settings: Any, target_dir: Path, alice: Any, alice_token: str, client: Any
):
    from runs.doors import run_state
    from runs.live import pane_state, render_rows

    settings.ORCHESTRATOR_MODEL = MODEL
    settings.ORCHESTRATOR_BASE_URL = f"{A},{B}"
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    [first, *_] = claimed_steps([run], "w")
    assert {a["endpoint"] for a in run_state(run, None)["agents"]} == {""}, "none yet"
    assert scheduler.try_acquire_slot(first, "w", MODEL, {A: 1, B: 1}).endpoint == A
    state = pane_state(run)
    [row] = state.rows_for({first})
    assert row.endpoint == "10.0.0.1:8081"
    assert 'data-testid="step-endpoint"' in render_rows(state, [row])
    assert "10.0.0.1:8081" in render_rows(state, [row])
    agents = {a["key"]: a["endpoint"] for a in run_state(run, None)["agents"]}
    assert agents[FlowStep.objects.get(id=first).key] == A
    detail = client.get(
        f"/api/v1/runs/{run.id}", headers={"Authorization": f"Bearer {alice_token}"}
    )
    assert detail.status_code == 200
    endpoints = [a["endpoint"] for a in detail.json()["agents"]]
    assert A in endpoints and endpoints.count("") == len(endpoints) - 1
    single = launch_run(flow="code-review", target=str(target_dir))
    settings.ORCHESTRATOR_BASE_URL = A
    one = launch_run(flow="code-review", target=str(target_dir))
    [lone, *_] = claimed_steps([one], "w")
    scheduler.try_acquire_slot(lone, "w", MODEL, {A: 1})
    assert pane_state(one).rows_for({lone})[0].endpoint == "", "one endpoint: nothing to tell"
    assert single.endpoint_url == f"{A},{B}"


def test_host_port_never_raises_on_a_bad_url():
    from runs.server_slots import host_port

    assert host_port("http://[::1]:8080/v1") == "[::1]:8080"
    assert host_port("http://h:99999/v1") == ""
    assert host_port("") == ""
    assert host_port("http://gpu1/v1") == "gpu1"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_never_put_more_requests_on_a_server_than_its_slots(
    worker_env: Any, stop: Any, settings: Any, target_dir: Path, tmp_path: Path
):
    """Two runworker processes, four runs, two scripted servers of 1 and 2 slots (each
    counts its open requests as they arrive): both reach their cap, neither passes it."""
    from devtools.testing import start_manage
    from runs.demo.server import ScriptedModelServer

    with (
        ScriptedModelServer(total_slots=1, token_rate=40.0) as first,
        ScriptedModelServer(total_slots=2, token_rate=40.0) as second,
    ):
        first.open_requests.reset(cap=1)
        second.open_requests.reset(cap=2)
        urls = f"{first.url},{second.url}"
        settings.ORCHESTRATOR_MODEL = MODEL
        settings.ORCHESTRATOR_BASE_URL = urls
        runs = [launch_run(flow="code-review", target=str(target_dir)) for _ in range(4)]
        env = worker_env(urls, ORCHESTRATOR_WORKER_CONCURRENCY="3")  # so both take steps
        workers = [
            start_manage("runworker", "orchestrator.dispatch", env=env, log=tmp_path / f"w{i}.log")
            for i in range(2)
        ]
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                if not FlowRun.objects.filter(finished_at__isnull=True).exists():
                    break
                time.sleep(0.1)
        finally:
            for worker in workers:
                stop(worker)
        statuses = [FlowRun.objects.get(id=run.id).status for run in runs]
        owners = set(FlowStep.objects.values_list("lease_owner", flat=True)) - {""}
        print(
            f"first: {first.open_requests.arrivals} requests, peak {first.open_requests.peak}; "
            f"second: {second.open_requests.arrivals}, peak {second.open_requests.peak}; "
            f"{len(owners)} workers"
        )
        assert statuses == [RunStatus.SUCCEEDED] * 4
        assert len(owners) == 2, "both workers ran steps"
        assert first.open_requests.over_cap == [] and second.open_requests.over_cap == []
        assert (first.open_requests.peak, second.open_requests.peak) == (1, 2), "caps reached"


def test_serve_checks_every_server_of_the_model(settings: Any):
    """`serve` says, for each endpoint, whether a model server answers there."""
    import io

    from runs.demo.server import ScriptedModelServer
    from runs.management.commands.serve import Command

    with ScriptedModelServer() as up:
        settings.ORCHESTRATOR_MODEL = "lab/scripted"
        settings.ORCHESTRATOR_PROVIDERS = {"lab": {"base_url": [up.url, "http://127.0.0.1:9/v1"]}}
        settings.ORCHESTRATOR_BASE_URL = ""
        out = io.StringIO()
        Command(stdout=out)._check_model()
    said = out.getvalue()
    assert f"Model: lab/scripted at {up.url}" in said
    assert "No model server answers at http://127.0.0.1:9/v1" in said


def test_serves_banner_names_every_server_of_the_demo_model(settings: Any):
    import io

    from runs.management.commands.serve import Command

    settings.ORCHESTRATOR_MODEL = MODEL
    settings.ORCHESTRATOR_BASE_URL = f"{A},{B}"
    out = io.StringIO()
    Command(stdout=out)._check_model()
    assert out.getvalue() == f"Model: {MODEL} (scripted demo model at {A}, {B})\n"


@pytest.mark.django_db
def test_an_agent_whose_server_went_away_says_so_beside_its_endpoint(
    settings: Any, target_dir: Path, alice: Any
):
    """Its last turn's server is down (no turn goes there until it answers again): the row
    says so instead of naming a dead server as where the agent is; a finished agent keeps the
    plain name of where it ran."""
    from datetime import timedelta

    from django.utils import timezone

    from runs.live import pane_state

    settings.ORCHESTRATOR_MODEL = MODEL
    settings.ORCHESTRATOR_BASE_URL = f"{A},{B}"
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    [first, second, *_] = claimed_steps([run], "w")
    FlowStep.objects.filter(id__in=[first, second]).update(endpoint=A)
    soon = timezone.now() + timedelta(minutes=1)
    ModelEndpoint.objects.create(url=A, down_until=soon, reason="refused")
    FlowStep.objects.filter(id=second).update(status=StepStatus.SUCCEEDED)
    rows = {row.step.id: row for row in pane_state(run).rows}
    assert rows[first].endpoint == "10.0.0.1:8081 (down)"
    assert rows[second].endpoint == "10.0.0.1:8081"
    ModelEndpoint.objects.filter(url=A).update(down_until=None)
    rows = {row.step.id: row for row in pane_state(run).rows}
    assert rows[first].endpoint == "10.0.0.1:8081", "back up"


@pytest.mark.django_db(transaction=True)
def test_when_every_server_is_down_each_failed_agent_names_them_all(
    run_to_end, settings: Any, target_dir: Path, monkeypatch: Any
):
    """No server of the model answers: each agent's reason says none of them did, naming
    each (host:port), and Method claims no slots a server never said it has. One slot a
    server, and the down marks lapse soon: a turn's last try then finds one server gone
    while the other's mark has lapsed, and that one is still named."""
    from devtools.testing import free_port
    from runs.engine.agent import servers

    monkeypatch.setattr(servers, "DOWN_SECONDS", 0.5)
    first, second = (f"http://127.0.0.1:{free_port()}/v1" for _ in range(2))
    settings.ORCHESTRATOR_MODEL = "llama-swap/qwen"
    settings.ORCHESTRATOR_BASE_URL = f"{first},{second}"
    settings.ORCHESTRATOR_SLOTS = 0
    settings.ORCHESTRATOR_RETRY_SECONDS = 1.5
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    failed = [s for s in run.steps.all() if s.status == StepStatus.FAILED]
    assert failed, [(s.key, s.status) for s in run.steps.all()]
    names = f"{first.removeprefix('http://').removesuffix('/v1')}, " + second.removeprefix(
        "http://"
    ).removesuffix("/v1")
    for step in failed:
        assert step.error.startswith(f"none of the 2 model servers answered ({names}): "), (
            step.error
        )
        assert "the last one: the model server refused the connection" in step.error
    assert "slots not known: none of the 2 servers said how many it has" in run.report
    assert " 4 slots" not in run.report


@pytest.mark.django_db
def test_a_server_whose_down_mark_lapsed_unseen_still_counts_as_not_answering():
    """Both servers went away; one's mark lapsed (no probe saw it back) as the other's turn
    gave up there: the reason still says neither answered. One marked up again answered."""
    from runs.engine.agent.backends.base import GaveUp
    from runs.engine.agent.loop import none_answered
    from runs.engine.agent.servers import gone_endpoints

    mark_down(A, "refused")
    mark_down(B, "refused")
    ModelEndpoint.objects.filter(url=B).update(down_until=timezone.now() - timedelta(seconds=5))
    assert down_endpoints([A, B]) == {A} and gone_endpoints([A, B]) == {A, B}
    refused = "the model server refused the connection"
    exc = GaveUp(reason=refused, url=A, tries="2 tries over 60.1s", lost=True)
    said = str(none_answered(exc, [A, B], {A} | gone_endpoints([A, B])))
    assert said == (
        "none of the 2 model servers answered (10.0.0.1:8081, 10.0.0.2:8082): "
        f"2 tries over 60.1s, the last one: {refused}"
    )
    mark_up(B)
    assert none_answered(exc, [A, B], {A} | gone_endpoints([A, B])) is exc
    answered = GaveUp(reason="503", url=A, tries="2 tries", lost=False)
    assert none_answered(answered, [A, B], {A, B}) is answered
