"""Fair use: the per-user cap on running runs, claims round robin by owner, and a model line
where one user's backlog cannot hold another user's first step back."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from devtools.testing import ROOT, finish_step
from runs.engine.queue import fairness, scheduler
from runs.engine.worker import Engine
from runs.models import FlowRun, FlowStep, RunStatus
from runs.progress import snapshot
from runs.services import launch_run

MODEL = "demo/scripted"


@pytest.fixture
def launch(target_dir: Path, settings: Any) -> Any:
    settings.ORCHESTRATOR_MODEL = MODEL

    def launch(owner: Any = None, focus: str = "") -> FlowRun:
        return launch_run(flow="code-review", target=str(target_dir), owner=owner, focus=focus)

    return launch


def claimed_runs(step_ids: list[int]) -> list[Any]:
    """The runs of the claimed steps, in claim order, each once."""
    runs = FlowStep.objects.in_bulk(step_ids)
    return list(dict.fromkeys(runs[i].run_id for i in step_ids))


def owners(step_ids: list[int]) -> Counter[str]:
    steps = FlowStep.objects.filter(id__in=step_ids).select_related("run__owner")
    return Counter(s.run.owner.username if s.run.owner else "-" for s in steps)


def finish_run(run: FlowRun, worker: str = "w") -> None:
    """Drive a run's claimed and remaining steps to the end, by hand."""
    for step in run.steps.filter(lease_owner=worker, status__in=["queued", "running"]):
        finish_step(step.id, worker, succeeded=True, output="done")
    while ids := scheduler.claim_steps(worker, 10, run_id=run.id):
        for step_id in ids:
            finish_step(step_id, worker, succeeded=True, output="done")


@pytest.mark.django_db
class TestTheCap:
    def test_runs_over_the_cap_are_accepted_and_wait_pending_with_the_reason(
        self, settings, alice, launch
    ):
        """Two may run; the third waits, and says why."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 2
        first, second, third = launch(alice), launch(alice), launch(alice)
        assert claimed_runs(scheduler.claim_steps("w", 100)) == [first.id, second.id]
        third.refresh_from_db()
        assert third.status == RunStatus.PENDING
        assert fairness.waiting_reason(third) == "2 of your runs are active"
        first.refresh_from_db()
        assert fairness.waiting_reason(first) == ""

    def test_a_waiting_run_starts_in_launch_order_when_one_of_theirs_ends(
        self, settings, alice, launch
    ):
        """The oldest waiting run goes first, and only one, to stay within the cap."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        first, second, third = launch(alice), launch(alice), launch(alice)
        assert claimed_runs(scheduler.claim_steps("w", 100)) == [first.id]
        assert scheduler.claim_steps("w", 100) == []
        finish_run(first)
        assert claimed_runs(scheduler.claim_steps("w", 100)) == [second.id]
        third.refresh_from_db()
        assert third.status == RunStatus.PENDING
        assert fairness.waiting_reason(third) == "1 of your runs is active"

    def test_the_cap_counts_each_user_on_their_own(self, settings, alice, bob, launch):
        """Alice at her cap does not stop Bob."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        alices, _, bobs = launch(alice), launch(alice), launch(bob)
        assert set(claimed_runs(scheduler.claim_steps("w", 100))) == {alices.id, bobs.id}

    def test_runs_without_an_owner_are_the_operators_and_not_capped(self, settings, launch):
        """CLI runs without --user all start."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        runs = [launch(), launch(), launch()]
        assert set(claimed_runs(scheduler.claim_steps("w", 100))) == {r.id for r in runs}
        assert all(fairness.waiting_reason(r) == "" for r in runs)

    def test_a_cap_of_zero_means_no_cap(self, settings, alice, launch):
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        runs = [launch(alice) for _ in range(6)]
        assert len(claimed_runs(scheduler.claim_steps("w", 100))) == len(runs)

    def test_a_retried_run_passes_the_cap_again_ahead_of_later_launches(
        self, settings, alice, launch
    ):
        """Retry cannot be used to get past the cap; a retried run is first of its owner's."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        first = launch(alice)
        scheduler.claim_steps("w", 100)
        for step in first.steps.filter(lease_owner="w"):
            finish_step(step.id, "w", succeeded=step.key != "security", output="o", error="e")
        finish_run(first)
        second, third = launch(alice), launch(alice)
        assert claimed_runs(scheduler.claim_steps("w", 100)) == [second.id]
        assert scheduler.retry_step(first.id, "security")
        first.refresh_from_db()
        assert first.status == RunStatus.PENDING
        assert fairness.waiting_reason(first) == "1 of your runs is active"
        assert scheduler.claim_steps("w", 100) == []
        finish_run(second)
        assert claimed_runs(scheduler.claim_steps("w", 100)) == [first.id]
        first.refresh_from_db()
        assert first.status == RunStatus.RUNNING and first.started_at < second.created_at
        third.refresh_from_db()
        assert third.status == RunStatus.PENDING

    def test_the_pane_the_history_and_the_cli_show_why_a_run_waits(
        self, client_for, settings, alice, launch
    ):
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 1
        launch(alice, focus="first")
        waiting = launch(alice, focus="second")
        scheduler.claim_steps("w", 100)
        reason = "1 of your runs is active"
        client = client_for(alice)
        pane = client.get(f"/runs/{waiting.id}/").content.decode()
        assert f'data-testid="run-waiting">{reason}</span>' in pane
        history = client.get("/runs/").content.decode()
        assert history.count('data-testid="run-waiting"') == 1 and reason in history
        assert snapshot(waiting.id).header.endswith(f"· waiting ({reason})")

    def test_a_bad_cap_setting_stops_the_service_naming_the_variable(self):
        env = {**os.environ, "ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER": "-1"}
        env["DJANGO_SETTINGS_MODULE"] = "orchestrator_site.settings"
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0
        assert "ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER must be at least 0" in result.stderr


@pytest.mark.django_db
class TestRoundRobin:
    def test_one_users_backlog_does_not_hold_back_another_users_first_step(
        self, settings, alice, bob, launch
    ):
        """Without a cap too: Bob's step is the next one claimed after Alice's 4."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        for _ in range(10):
            launch(alice)
        assert owners(scheduler.claim_steps("w", 4)) == {"alice": 4}
        bobs = launch(bob)
        [step] = scheduler.claim_steps("w", 1)
        assert FlowStep.objects.get(id=step).run_id == bobs.id

    def test_one_claim_deals_the_steps_out_round_robin(self, settings, alice, bob, charlie, launch):
        """Each owner's first step, then each one's second, whoever launched first."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        for owner in (alice, alice, alice, bob, bob, charlie):
            launch(owner)
        assert owners(scheduler.claim_steps("w", 3)) == {"alice": 1, "bob": 1, "charlie": 1}
        assert owners(scheduler.claim_steps("w", 3)) == {"alice": 1, "bob": 1, "charlie": 1}
        assert owners(scheduler.claim_steps("w", 2)) == {"alice": 1, "bob": 1}

    def test_the_owner_with_the_fewest_running_steps_goes_first(self, settings, alice, bob, launch):
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        launch(alice)
        launch(alice)
        scheduler.claim_steps("w", 3)  # alice has 3 running
        launch(bob)
        launch(bob)
        assert owners(scheduler.claim_steps("w", 3)) == {"bob": 3}

    def test_a_users_own_steps_keep_their_launch_order(self, settings, alice, launch):
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        runs = [launch(alice) for _ in range(3)]
        claimed = scheduler.claim_steps("w", 6)
        assert claimed_runs(claimed) == [r.id for r in runs]
        places = FlowStep.objects.in_bulk(claimed)
        assert [places[i].queued_at for i in claimed] == sorted(
            places[i].queued_at for i in claimed
        )


@pytest.mark.django_db
class TestTheModelLine:
    def test_another_users_steps_take_turns_with_a_backlog_for_the_slot(
        self, settings, alice, bob, launch
    ):
        """Alice's 8 steps wait for the one slot, one of them in the line; Bob's first joins
        the line behind it, and from then on the two take turns: the places say so."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 4
        for _ in range(6):
            launch(alice)
        alices = scheduler.claim_steps("w", 100)
        assert len(alices) == 8
        answers = [scheduler.try_acquire_slot(i, "w", MODEL, 1) for i in alices]
        assert [a.position for a in answers] == [0, 1, 2, 3, 4, 5, 6, 7], (
            "the first holds the slot, the others are next in claim order, one at a time"
        )
        launch(bob)
        bobs = scheduler.claim_steps("w", 100)
        positions = [scheduler.try_acquire_slot(i, "w", MODEL, 1).position for i in bobs]
        assert positions == [2, 4], "behind alice's one step in the line, then taking turns"
        holders = [alices[0], alices[1], bobs[0], alices[2], bobs[1], alices[3]]
        for holder, following in itertools.pairwise(holders):
            assert scheduler.release_slot(holder, "w", MODEL, 1) == [following]

    def test_a_handed_on_dependant_takes_its_fair_place_too(self, settings, alice, bob, launch):
        """Bob's synthesizer, readied by his last specialist, goes ahead of Alice's backlog."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        for _ in range(4):
            launch(alice)
        bobs = launch(bob)
        claimed = scheduler.claim_steps("w", 100)
        for step_id in claimed:
            scheduler.try_acquire_slot(step_id, "w", MODEL, 1)
        specialists = list(bobs.steps.filter(kind="specialist").values_list("id", flat=True))
        finish_step(specialists[0], "w", succeeded=True, output="a")
        finished = finish_step(specialists[1], "w", succeeded=True, output="b", claim=1, slots=1)
        [synthesis] = finished.claimed
        answer = scheduler.try_acquire_slot(synthesis.step_id, "w", MODEL, 1)
        waiting_alices = FlowStep.objects.filter(run__owner=alice, wants_slot=True).count()
        assert waiting_alices == 7 and answer.position <= 2


@pytest.mark.django_db(transaction=True)
def test_workers_claiming_at_once_never_share_a_step_nor_pass_the_cap(settings, alice, launch):
    """Six workers claim concurrently until nothing is left: every step once, at most 3 of
    alice's runs ever started."""
    settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 3
    for _ in range(12):
        launch(alice)
    for _ in range(4):
        launch()  # the operator's, uncapped
    claims: dict[str, list[int]] = {}
    start = threading.Barrier(6)

    def worker(name: str) -> None:
        mine: list[int] = []
        try:
            start.wait()
            while got := scheduler.claim_steps(name, 1):
                mine += got
        finally:
            claims[name] = mine
            connection.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [step for mine in claims.values() for step in mine]
    assert len(every) == len(set(every)), "a step was claimed twice"
    assert len(every) == 3 * 2 + 4 * 2, "alice's 3 admitted runs and the operator's 4"
    running = FlowRun.objects.filter(owner=alice, status=RunStatus.RUNNING).count()
    assert running == 3
    assert sum(1 for mine in claims.values() if mine) > 1, "the workers really competed"


FOCUS = re.compile(r"^Focus: (\S+)", re.M)


def focus_of(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if message.get("role") == "user" and (match := FOCUS.search(str(message["content"]))):
            return match[1]
    return "?"


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_runs_does_not_delay_another_users_first_request(settings, alice, bob, launch):
    """Alice launches 30 runs; Bob's first request reaches the model after at most a couple
    of Alice's turns (arrival order at the model, not time), not after her 8 running steps."""
    from runs.demo.server import ScriptedModelServer

    settings.ORCHESTRATOR_SLOTS = 1
    settings.ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER = 0  # the burst waits, on purpose
    with ScriptedModelServer(token_rate=4000, pad_reasoning=100) as server:
        settings.ORCHESTRATOR_BASE_URL = server.url
        for number in range(30):
            launch(alice, focus=f"alice-{number}")
        engine = Engine()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_until_complete, args=(engine.run(),))
        thread.start()
        try:
            loop.call_soon_threadsafe(engine.wake)
            while len(server.requests) < 10:  # alice's runs are well under way
                server.pause(0.05)
            active = FlowStep.objects.filter(run__owner=alice, status__in=["queued", "running"])
            assert active.count() >= 6, "alice has a line of steps waiting for the one slot"
            seen = len(server.requests)
            bobs = launch(bob, focus="bob")
            loop.call_soon_threadsafe(engine.wake)
            while not FlowRun.objects.filter(id=bobs.id, finished_at__isnull=False).exists():
                server.pause(0.05)
        finally:
            loop.call_soon_threadsafe(engine.stop)
            thread.join(timeout=60)
            loop.close()
        arrivals = [focus_of(body) for body in list(server.requests)[seen:]]
    before_bob = arrivals.index("bob")
    assert before_bob <= 3, arrivals[: before_bob + 1]
    assert FlowRun.objects.get(id=bobs.id).status == RunStatus.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_wake_up_that_lands_during_a_sweep_is_not_lost(
    settings, scripted_model, launch, monkeypatch
):
    """A launch committed just after a sweep's claim still gets the engine's next sweep
    straight away, not the periodic one (an hour away here): the engine finishes the run."""
    settings.ORCHESTRATOR_SWEEP_SECONDS = 3600
    engine = Engine()
    real_claim = scheduler.claim_steps
    launched: list[FlowRun] = []
    loop: asyncio.AbstractEventLoop | None = None

    def claim_then_launch(worker: str, limit: int, **options: Any) -> list[int]:
        claimed = real_claim(worker, limit, **options)
        if not launched:
            launched.append(launch())
            assert loop is not None
            loop.call_soon_threadsafe(engine.wake)  # what the dispatch consumer does
        return claimed

    monkeypatch.setattr(scheduler, "claim_steps", claim_then_launch)

    async def go() -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(engine.run_until_idle(), 120)

    asyncio.run(go())
    [run] = launched
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


@pytest.mark.django_db
class TestAPlaceInLine:
    def test_a_place_only_moves_forward_while_three_owners_keep_claiming(
        self, settings, alice, bob, charlie, launch
    ):
        """One slot; Alice's backlog waits; Bob and Charlie launch and their steps are claimed
        between the turns. Every waiter has a place of its own (distinct: 1, 2, 3... however
        many of its owner's steps wait), the engine's answer and every view agree, and each
        turn grants the step that was 1st and moves every other place up by exactly one: the
        projected order is the order the slot is granted in. A newcomer of another owner
        takes its turn in the round robin, ahead of the owner's later steps, never of a step
        with a place in the line itself."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        launch(alice)
        launch(alice)
        waiting = scheduler.claim_steps("w", 100)
        [holder] = [i for i in waiting if scheduler.try_acquire_slot(i, "w", MODEL, 1).granted]
        waiting.remove(holder)
        newcomers = [bob, charlie, bob, charlie]
        turns = 0

        def ask() -> dict[int, int]:
            return {i: scheduler.try_acquire_slot(i, "w", MODEL, 1).position for i in waiting}

        def poll() -> dict[int, int]:
            answers = ask()
            assert scheduler.queue_positions(MODEL, waiting) == answers  # one rule
            assert sorted(answers.values()) == list(range(1, len(waiting) + 1)), "distinct"
            return answers

        before = poll()
        while waiting:
            if newcomers:
                launch(newcomers.pop(0))
                waiting += scheduler.claim_steps("w", 100)
                ask()  # the newcomers join the line (ahead of Alice's later steps)
                before = poll()
            handed = scheduler.release_slot(holder, "w", MODEL, 1)
            finish_step(holder, "w", succeeded=True, output="done")
            [holder] = handed
            assert before[holder] == 1, "the slot goes to the one 1st in line"
            waiting.remove(holder)
            after = poll()
            assert after == {i: place - 1 for i, place in before.items() if i != holder}
            before = after
            turns += 1
        assert turns >= 8

    def test_the_projected_order_is_the_order_of_the_grants_for_two_owners(
        self, settings, alice, bob, launch
    ):
        """One slot; Alice's two runs and Bob's run all claimed before the first grant: the
        places every waiter is shown at the start list the steps in exactly the order the
        slot then goes to them (Alice's and Bob's alternating while both wait)."""
        settings.ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER = 0
        launch(alice)
        launch(alice)
        launch(bob)
        waiting = scheduler.claim_steps("w", 100)
        [holder] = [i for i in waiting if scheduler.try_acquire_slot(i, "w", MODEL, 1).granted]
        waiting.remove(holder)
        places = {i: scheduler.try_acquire_slot(i, "w", MODEL, 1).position for i in waiting}
        projected = sorted(waiting, key=places.__getitem__)
        granted = []
        while waiting:
            [holder] = scheduler.release_slot(holder, "w", MODEL, 1)
            finish_step(holder, "w", succeeded=True, output="done")
            granted.append(holder)
            waiting.remove(holder)
        assert granted == projected
        owners = list(
            FlowStep.objects.filter(id__in=granted[:4])
            .order_by("id")
            .values_list("id", "run__owner__username")
        )
        by_id = dict(owners)
        assert [by_id[i] for i in granted[:4]] in (
            ["alice", "bob", "alice", "bob"],
            ["bob", "alice", "bob", "alice"],
        ), "round robin while both wait"


STEP_KEY = re.compile(r"^Step: (\S+)", re.M)


def step_of(body: dict[str, Any]) -> str:
    for message in body.get("messages") or []:
        if message.get("role") == "user" and (match := STEP_KEY.search(str(message["content"]))):
            return match[1]
    return "?"


def runs_of_turns(keys: list[str]) -> int:
    """How many stretches of consecutive requests by one agent the sequence has."""
    return len([key for key, _ in itertools.groupby(keys)])


@pytest.mark.parametrize("keep_seconds", [0.5, 0.0])
@pytest.mark.django_db(transaction=True)
def test_quick_tools_keep_the_slot_for_the_agents_next_turn(settings, alice, launch, keep_seconds):
    """One user, one slot: an agent whose tools finish quickly keeps the slot, so each agent's
    turns reach the server back to back (its cache holds that conversation); with the keep
    off, the specialists take turns and their requests interleave."""
    from runs.demo.server import ScriptedModelServer

    settings.ORCHESTRATOR_SLOTS = 1
    settings.ORCHESTRATOR_KEEP_SLOT_SECONDS = keep_seconds
    with ScriptedModelServer(token_rate=4000) as server:
        settings.ORCHESTRATOR_BASE_URL = server.url
        run = launch(alice, focus="keep")
        asyncio.run(Engine(run_id=run.id).run())
        keys = [step_of(body) for body in list(server.requests)]
    assert FlowRun.objects.get(id=run.id).status == RunStatus.SUCCEEDED
    agents = len(set(keys))
    assert len(keys) > agents, "the specialists take several turns each"
    if keep_seconds:
        assert runs_of_turns(keys) == agents, keys  # every agent's turns in one stretch
    else:
        assert runs_of_turns(keys) > agents, keys
