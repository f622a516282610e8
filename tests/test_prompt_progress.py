"""A long prefill shows how far the server has read, and a queued agent how long it may wait.

The backend asks for llama.cpp's `return_progress` and reads its `prompt_progress` chunks as
hostile input; a server that refuses the flag is asked without it; the scripted model sends
the chunks as llama.cpp does; a turn rewrites its row at most every PROGRESS_SECONDS however
many chunks arrive; the words come from runs.labels; the wait is estimated from the run's
measured speeds only (runs.waits).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runs import live
from runs.demo.server import ScriptedModelServer
from runs.engine.agent import turn as turn_module
from runs.engine.agent.backends.base import (
    EndpointConfig,
    FirstByte,
    PromptProgress,
    Retrying,
    TextDelta,
    TurnResult,
)
from runs.engine.agent.backends.openai import OpenAICompatibleBackend
from runs.engine.agent.context import load_context
from runs.engine.agent.events import EventSink
from runs.engine.agent.turn import TurnState, count_turn, one_turn
from runs.engine.dbthread import close_pool
from runs.engine.queue import scheduler
from runs.engine.queue.scheduler import QueueLine
from runs.labels import about, prompt_progress_words, step_state
from runs.models import FlowRun, FlowStep, StepPhase, StepStatus
from runs.progress import queue_line as progress_queue_line
from runs.progress import snapshot
from runs.services import launch_run
from runs.waits import UNAVAILABLE, hold_seconds, slot_waits, waits_in_line
from tests.canned_sse import collect, delta, sse

ANSWER = [delta(role="assistant", content=None), delta(content="ok"), delta("stop")]


def progress(**counts: Any) -> dict[str, Any]:
    """A llama.cpp progress chunk: an empty assistant delta and `prompt_progress`."""
    return {**delta(role="assistant", content=None), "prompt_progress": counts}


def sane(events: list[Any]) -> list[PromptProgress]:
    """The progress events, each checked for the invariants every reader relies on."""
    seen = [e for e in events if isinstance(e, PromptProgress)]
    for event in seen:
        assert 0 <= event.cache <= event.processed <= event.total and event.total > 0
        assert 0 <= event.percent <= 100
    processed = [e.processed for e in seen]
    assert processed == sorted(set(processed)), "progress only moves forward"
    return seen


# --- the backend: what llama.cpp sends, and what a hostile server might --------------------


def test_llama_cpps_progress_chunks_become_progress_events_before_the_first_byte(canned):
    """One event per chunk (0% with the cached prefix, a batch at a time, 100%), all before the
    first byte; the answer is untouched (the chunks' empty deltas are not content)."""
    body = sse(
        progress(total=2650, cache=900, processed=900, time_ms=0),
        progress(total=2650, cache=900, processed=1200, time_ms=40),
        progress(total=2650, cache=900, processed=2650, time_ms=90),
        *ANSWER,
        "data: [DONE]\n\n",
    )
    events = collect(canned(body).url)
    seen = sane(events)
    assert [(e.processed, e.percent) for e in seen] == [(900, 33), (1200, 45), (2650, 100)]
    assert all(e.total == 2650 and e.cache == 900 for e in seen)
    kinds = [type(e) for e in events]
    assert kinds.index(FirstByte) == 3 and events[-1].content == "ok"


HOSTILE: list[tuple[str, Any, tuple[int, int, int] | None]] = [
    ("NaN everywhere", {"total": math.nan, "cache": math.nan, "processed": math.nan}, None),
    ("infinite total", {"total": math.inf, "processed": 5}, None),
    ("negative total", {"total": -100, "cache": -5, "processed": -1}, None),
    ("zero total", {"total": 0, "processed": 0}, None),
    ("strings", {"total": "2650", "cache": "9", "processed": "1200"}, None),
    ("booleans", {"total": True, "processed": True}, None),
    ("not an object", "45%", None),
    ("a list", [2650, 900, 1200], None),
    ("null", None, None),
    ("missing fields", {}, None),
    ("only a total", {"total": 100}, (100, 0, 0)),
    ("processed beyond the total", {"total": 100, "cache": 5, "processed": 10**12}, (100, 5, 100)),
    ("cache beyond processed", {"total": 100, "cache": 90, "processed": 10}, (100, 10, 10)),
    ("huge numbers", {"total": 1e300, "cache": 1e300, "processed": 1e300}, (10**7, 10**7, 10**7)),
    ("fractions", {"total": 100.9, "cache": 2.5, "processed": 50.7}, (100, 2, 50)),
    ("a nested object", {"total": {"n": 1}, "processed": [1]}, None),
    ("negative processed", {"total": 100, "cache": 10, "processed": -50}, (100, 0, 0)),
]


@pytest.mark.parametrize(
    ("value", "expected"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE]
)
def test_hostile_progress_neither_raises_nor_shows_nonsense(canned, value, expected):
    """NaN, infinities, negatives, strings, booleans, huge numbers, processed beyond the total,
    missing fields: the turn streams on, and a progress event is passed on only when it can say
    something sane (0 <= cache <= processed <= total, 0-100%)."""
    chunk = {**delta(role="assistant", content=None), "prompt_progress": value}
    body = sse(chunk, *ANSWER, "data: [DONE]\n\n")  # NaN and Infinity as Python writes them
    events = collect(canned(body).url)
    assert not any(isinstance(e, Retrying) for e in events)
    assert isinstance(events[-1], TurnResult) and events[-1].content == "ok"
    seen = sane(events)
    assert [(e.total, e.cache, e.processed) for e in seen] == ([expected] if expected else [])


def test_progress_that_repeats_goes_back_or_comes_after_the_first_byte_is_dropped(canned):
    """A server's progress never runs backwards in the row, and means nothing once it answers."""
    body = sse(
        progress(total=1000, processed=400),
        progress(total=1000, processed=400),
        progress(total=1000, processed=100),
        progress(total=1000, processed=700),
        delta(role="assistant", content="o"),
        progress(total=1000, processed=1000),
        delta(content="k"),
        delta("stop"),
        "data: [DONE]\n\n",
    )
    events = collect(canned(body).url)
    assert [e.processed for e in sane(events)] == [400, 700]
    assert isinstance(events[2], FirstByte) and events[-1].content == "ok"


def test_a_chunk_with_progress_and_no_choices_is_read(canned):
    """`choices` is optional on a progress chunk: the progress is read, nothing else made up."""
    body = sse({"prompt_progress": {"total": 10, "processed": 5}}, *ANSWER, "data: [DONE]\n\n")
    events = collect(canned(body).url)
    assert [e.percent for e in sane(events)] == [50]
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["ok"]


class StrictServer:
    """An OpenAI-compatible server that rejects unknown request fields (as OpenAI does): 400
    for `return_progress`, a plain answer otherwise. Keeps every request body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        strict = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                strict.bodies.append(body)
                refused = "return_progress" in body
                self.send_response(400 if refused else 200)
                kind = "application/json" if refused else "text/event-stream"
                self.send_header("Content-Type", kind)
                self.send_header("Connection", "close")
                self.end_headers()
                if refused:
                    error = {"message": "Unrecognized request argument supplied: return_progress"}
                    self.wfile.write(json.dumps({"error": error}).encode())
                else:
                    self.wfile.write(sse(*ANSWER, "data: [DONE]\n\n"))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def strict() -> Iterator[StrictServer]:
    server = StrictServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_a_server_that_rejects_the_flag_is_asked_without_it_and_no_try_is_lost(strict):
    """The refusal is not a fault: the same turn is sent again without `return_progress` (no
    Retrying), and every later turn of that backend leaves it out."""

    async def two_turns() -> tuple[list[Any], list[Any], bool]:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=strict.url, model="m"))
        try:
            turns = []
            for _ in range(2):
                stream = backend.stream_turn(messages=[], tools=None, max_tokens=None)
                turns.append([event async for event in stream])
            return turns[0], turns[1], backend.sends_progress
        finally:
            await backend.aclose()

    first, second, sends = asyncio.run(two_turns())
    for events in (first, second):
        assert not any(isinstance(e, Retrying) for e in events)
        assert events[-1].content == "ok"
    assert not sends
    assert ["return_progress" in body for body in strict.bodies] == [True, False, False]


# --- the scripted model sends it as llama.cpp does --------------------------------------------


@pytest.fixture
def reading() -> Iterator[ScriptedModelServer]:
    """The scripted model, reading prompts at 4,000 tokens a second."""
    with ScriptedModelServer(prefill_rate=4000.0) as server:
        yield server


LONG = [
    {"role": "system", "content": "Step kind: validator\nAgent role: validator"},
    {"role": "user", "content": "word " * 600},
]


def test_the_scripted_model_reads_a_long_prompt_a_batch_at_a_time_and_reuses_its_cache(reading):
    """600-odd words: 0%, then one chunk per 64-token batch to 100%, and `timings.prompt_ms`
    says how long it took; the same prompt again starts at its cached prefix."""
    first = collect(reading.url, LONG)
    seen = sane(first)
    assert len(seen) >= 10 and seen[0].processed == 0 and seen[-1].percent == 100
    result = first[-1]
    assert result.timings is not None and result.timings.prompt_ms >= 100
    again = sane(collect(reading.url, LONG))
    assert again[0].cache == again[0].processed == again[0].total  # all of it cached


# --- a turn rewrites its row at most every PROGRESS_SECONDS -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_turn_shows_the_prompts_progress_coalesced_and_counts_the_prefill(
    alice: Any, target_dir: Path, reading: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
):
    """20 progress chunks over about 1 s: the row is rewritten fewer times, never twice within
    PROGRESS_SECONDS, each time with rising words; the first byte then says
    "generating"; the turn's prefill tokens, seconds and timed turns are counted."""
    reading.prefill_rate = 1200.0  # 1,200 words: about a second of reading, 20 batches
    monkeypatch.setattr(turn_module, "PROGRESS_SECONDS", 0.3)
    written: list[tuple[str, str]] = []
    times: list[float] = []
    set_phase = scheduler.set_phase

    def recording(step_id: int, worker: str, phase: str, note: str = "", until: Any = None) -> None:
        times.append(time.monotonic())
        set_phase(step_id, worker, phase, note, until)
        row = FlowStep.objects.get(id=step_id)
        written.append((row.phase, row.phase_note))

    monkeypatch.setattr(scheduler, "set_phase", recording)
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice, fast=True)
    [step_id, *_] = scheduler.claim_steps("w", 2, run_id=run.id)
    ctx = load_context(step_id, "w")
    assert ctx is not None
    messages = [LONG[0], {"role": "user", "content": "word " * 1200}]
    chunks = 1 + math.ceil(sum(len(m["content"].split()) for m in messages) / 64)

    async def go() -> TurnState:
        backend = OpenAICompatibleBackend(EndpointConfig(base_url=reading.url, model="scripted"))
        sink = EventSink(ctx.run_id, ctx.step_id, ctx.session_id)
        state = TurnState.resume(ctx)
        state.messages = messages
        try:
            result = await one_turn(ctx, sink, backend, state, None, 32)
            count_turn(sink, state, result)
            await sink.flush()
            return state
        finally:
            await backend.aclose()
            await asyncio.to_thread(close_pool)

    state = asyncio.run(go())
    assert chunks == 20 and 1 <= len(written) < chunks
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(times))
    assert all(phase == StepPhase.PREFILL for phase, _ in written)
    percents = [int(note.split("%")[0]) for _, note in written]
    assert percents == sorted(percents) and all(0 < p <= 100 for p in percents)
    assert all(" of 1,2" in note and " tokens" in note for _, note in written)
    step = FlowStep.objects.get(id=step_id)
    assert step.phase == StepPhase.GENERATING and step.phase_note == ""
    assert state.timed_turns == 1 and state.prefill_tokens >= 1200
    assert 0.5 <= state.prefill_seconds <= 10


# --- the words --------------------------------------------------------------------------------


def test_the_words_for_reading_a_prompt_and_for_an_estimated_wait():
    """Concise, with thousands separated; an estimate no more precise than it is."""
    assert prompt_progress_words(1200, 2650, 900) == "45%: 1,200 of 2,650 tokens, 900 from cache"
    assert prompt_progress_words(0, 10, 0) == "0%: 0 of 10 tokens"
    assert prompt_progress_words(10, 10, 10) == "100%: 10 of 10 tokens, 10 from cache"
    assert [about(s) for s in (0.2, 4.4, 38, 41, 59, 61, 170, 3599, 3600, 4800)] == [
        "about 1 s",
        "about 4 s",
        "about 40 s",
        "about 40 s",
        "about 1 min",
        "about 1 min",
        "about 3 min",
        "about 1 h",
        "about 1 h",
        "about 1 h 20 min",
    ]
    reading = FlowStep(
        status=StepStatus.RUNNING, phase=StepPhase.PREFILL, phase_note="45%: 1 of 2 tokens"
    )
    state = step_state(reading)
    assert (state.label, state.detail, state.waiting) == (
        "reading the prompt",
        "45%: 1 of 2 tokens",
        False,
    )
    queued = FlowStep(status=StepStatus.QUEUED, phase=StepPhase.SLOT, wants_slot=True)
    assert (
        step_state(queued, 2, wait=38.0).text
        == "waiting for a model slot (2nd in line, about 40 s)"
    )
    assert step_state(queued, 2).text == "waiting for a model slot (2nd in line)"


# --- the estimate -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_estimate_without_measurements():
    """A run that never gave a slot back, on a model no other run measured, says nothing."""
    run = FlowRun(slots=1, model="m")
    line = QueueLine(places={1: 1, 2: 2})
    assert slot_waits(run, line) == {}
    assert hold_seconds(run) is None


def test_the_wait_is_the_grants_ahead_times_the_measured_holding_over_the_slots():
    """A grant keeps its slot 40 s. One slot held for 10 s already: the first in line gets it
    in 30 s, the third in 110 s. Two slots, nobody holding: the first gets one at once, the
    third after 40 s."""
    one = QueueLine(places={7: 1, 8: 3}, held=(10.0,))
    assert waits_in_line(one, 40.0, 1) == {7: pytest.approx(30.0), 8: pytest.approx(110.0)}
    line = QueueLine(places={7: 3, 8: 1})
    assert waits_in_line(line, 40.0, 2) == {7: pytest.approx(40.0), 8: pytest.approx(0.0)}
    late = QueueLine(places={7: 1}, held=(55.0,))  # held longer than most: it ends any moment
    assert waits_in_line(late, 40.0, 1) == {7: pytest.approx(0.0)}
    far = QueueLine(places={7: 10**4})
    assert waits_in_line(far, 40.0, 1)[7] == 86_400.0  # capped at a day


@pytest.mark.django_db
def test_the_holding_is_measured_over_the_whole_line_and_the_slots_are_the_smaller_cap(
    alice: Any, bob: Any, target_dir: Path
):
    """Three grants held 120 s in all, two in alice's run and one in bob's: a grant keeps
    its slot 40 s, for both runs alike. A run capped at three slots on a server with two
    counts two."""
    mine = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    theirs = launch_run(flow="code-review", target=str(target_dir), owner=bob)
    FlowStep.objects.filter(id=mine.steps.first().id).update(held_seconds=100.0, grants=2)
    FlowStep.objects.filter(id=theirs.steps.first().id).update(held_seconds=20.0, grants=1)
    assert hold_seconds(mine) == pytest.approx(40.0) == hold_seconds(theirs)
    FlowRun.objects.filter(id=mine.id).update(slots=3, server_slots=2)
    mine.refresh_from_db()
    line = QueueLine(places={7: 3, 8: 1})
    assert slot_waits(mine, line) == {7: pytest.approx(40.0), 8: pytest.approx(0.0)}


def test_no_estimate_while_the_server_is_unavailable():
    """A turn of the model found its server unavailable: every waiter keeps its place but
    says there is no estimate, however much was measured."""
    line = QueueLine(places={7: 1, 8: 2}, unavailable=True)
    waits = slot_waits(FlowRun(slots=1), line)
    assert waits == {7: UNAVAILABLE, 8: UNAVAILABLE}
    queued = FlowStep(status=StepStatus.QUEUED, phase=StepPhase.SLOT, wants_slot=True)
    assert step_state(queued, 2, wait=waits[8]).text == (
        "waiting for a model slot (2nd in line, no estimate while the model server is unavailable)"
    )


@pytest.mark.django_db
def test_the_pane_shows_the_prompts_progress_and_the_queued_agents_estimated_wait(
    alice: Any, target_dir: Path
):
    """One agent holds the one slot and reads its prompt, the other waits first in line: its
    row says how long, from the speeds the run has measured; the live update's row parts say
    the same, and so does the terminal's live line."""
    run = launch_run(flow="code-review", target=str(target_dir), owner=alice)
    FlowRun.objects.filter(id=run.id).update(slots=1)
    run.refresh_from_db()
    reader, queued = scheduler.claim_steps("w", 10, run_id=run.id)
    assert scheduler.try_acquire_slot(reader, "w", run.model, 1).granted
    assert not scheduler.try_acquire_slot(queued, "w", run.model, 1).granted
    scheduler.set_phase(reader, "w", StepPhase.PREFILL, prompt_progress_words(1200, 2650, 900))
    html = live.render_snapshot(run)
    assert ">reading the prompt</span>" in html
    assert ">45%: 1,200 of 2,650 tokens, 900 from cache</span>" in html
    assert ">1st in line</span>" in html  # nothing measured yet: no estimate
    measure_turns(reader)
    html = live.render_update(run, {reader, queued})
    assert ">1st in line, about 40 s</span>" in html
    assert html.count(">waiting for a model slot</span>") == 1
    cli = snapshot(run.id)  # the terminal's live line says the same; its log words do not
    assert sum("1st in line, about 40 s" in line for line in cli.lines) == 1
    assert sum("reading the prompt" in line and "45%: 1,200" in line for line in cli.lines) == 1
    words = {words for words, _ in cli.states.values()}
    assert {"reading the prompt", "waiting for a model slot (1st in line)"} <= words


def one_slot_line(owner: Any, target: Path) -> tuple[FlowRun, int, list[int]]:
    """A medium review on one slot: one agent holds it, the rest (at least three) wait."""
    run = launch_run(flow="code-review", target=str(target), owner=owner, band="medium")
    FlowRun.objects.filter(id=run.id).update(slots=1)
    run.refresh_from_db()
    holder, *waiters = scheduler.claim_steps("w", 10, run_id=run.id)
    assert len(waiters) >= 3
    assert scheduler.try_acquire_slot(holder, "w", run.model, 1).granted
    for waiter in waiters:
        assert not scheduler.try_acquire_slot(waiter, "w", run.model, 1).granted
    return run, holder, waiters


def measure_turns(step_id: int) -> None:
    """Two grants it held the slot 40 s each (and it holds it again since a moment)."""
    FlowStep.objects.filter(id=step_id).update(held_seconds=80.0, grants=2)


@pytest.mark.django_db
def test_every_waiter_has_its_place_and_an_estimated_wait(alice: Any, bob: Any, target_dir: Path):
    """One slot, a medium review: one agent holds it, the owner's others wait. Each has its
    own place as the line will move (1st, 2nd, 3rd...: one holds the owner's place in the
    line, the next joins when it is granted) and says about how long: the grants ahead of it
    at the measured 40 s each. Another owner's step joins behind the owner's placed step and
    ahead of its later ones (round robin): their places move back by one."""
    run, holder, waiters = one_slot_line(alice, target_dir)
    measure_turns(holder)
    line = progress_queue_line(run)
    assert line.places == {w: n for n, w in enumerate(waiters, start=1)}
    html = live.render_snapshot(run)
    assert ">1st in line, about 40 s</span>" in html
    assert ">2nd in line, about 1 min</span>" in html  # 2 grants ahead: 80 s
    assert ">3rd in line, about 2 min</span>" in html  # 3 grants ahead: 120 s
    assert ">in line" not in html, "every waiter has its place"
    from runs.doors import run_state as door_state  # what the API and MCP say

    said = {a["key"]: a["state"] for a in door_state(run, None)["agents"]}
    first = FlowStep.objects.get(id=waiters[0]).key
    assert said[first] == "waiting for a model slot (1st in line, about 40 s)"
    second = FlowStep.objects.get(id=waiters[1]).key
    assert said[second] == "waiting for a model slot (2nd in line, about 1 min)"
    other = launch_run(flow="code-review", target=str(target_dir), owner=bob)
    [bobs, *_] = scheduler.claim_steps("w2", 1, run_id=other.id)
    assert not scheduler.try_acquire_slot(bobs, "w2", other.model, 1).granted
    assert progress_queue_line(other).places == {bobs: 2}, "behind alice's placed step"
    moved = {w: n + (n > 1) for n, w in enumerate(waiters, start=1)}
    assert progress_queue_line(run).places == moved
    # One line, one measure: across both runs, a later place never waits less.
    by_place = sorted(
        (place, wait)
        for each in (run, other)
        for step_id, place in progress_queue_line(each).places.items()
        for wait in [slot_waits(each, progress_queue_line(each))[step_id]]
    )
    assert [p for p, _ in by_place] == list(range(1, len(by_place) + 1))
    assert [w for _, w in by_place] == sorted(w for _, w in by_place), by_place


@pytest.mark.django_db
def test_a_grant_whose_try_failed_is_not_measured(alice: Any, target_dir: Path):
    """A refused connection holds its slot for moments: counted, an outage would make the
    line look fast once the server is back. Given back after a failed try, the grant adds
    nothing; given back after an answered turn, it adds one grant and its seconds."""
    run, holder, waiters = one_slot_line(alice, target_dir)
    handed = scheduler.release_slot(holder, "w", run.model, 1, counted=False)
    assert list(handed) == [waiters[0]]
    step = FlowStep.objects.get(id=holder)
    assert (step.grants, step.held_seconds) == (0, 0.0)
    scheduler.release_slot(waiters[0], "w", run.model, 1)
    assert FlowStep.objects.get(id=waiters[0]).grants == 1


@pytest.mark.django_db
def test_one_agents_refused_try_does_not_stop_the_estimates_while_others_are_served(
    alice: Any, target_dir: Path
):
    """One agent waits out a 503 (server unavailable) while the holder generates: the server
    serves, so the line keeps its estimates; once nobody is served, it has none."""
    run, holder, waiters = one_slot_line(alice, target_dir)
    measure_turns(holder)
    refused = waiters[-1]
    FlowStep.objects.filter(id=refused).update(
        wants_slot=False, phase=StepPhase.UNAVAILABLE, phase_note="try 1: busy (503)"
    )
    scheduler.set_phase(holder, "w", StepPhase.GENERATING)
    line = progress_queue_line(run)
    assert not line.unavailable
    assert all(wait < UNAVAILABLE for wait in slot_waits(run, line).values())
    scheduler.set_phase(holder, "w", StepPhase.FIRST_BYTE)
    assert progress_queue_line(run).unavailable


@pytest.mark.django_db
def test_a_run_that_measured_nothing_estimates_from_other_runs_on_the_model(
    alice: Any, bob: Any, target_dir: Path
):
    """Bob's run waits behind Alice's and has given no slot back yet: its waits are estimated
    from how long Alice's grants kept the slot (the sums only: none of her words)."""
    _, holder, _ = one_slot_line(alice, target_dir)
    measure_turns(holder)
    other = launch_run(flow="code-review", target=str(target_dir), owner=bob)
    FlowRun.objects.filter(id=other.id).update(slots=1)
    [bobs, *_] = scheduler.claim_steps("w2", 1, run_id=other.id)
    assert not scheduler.try_acquire_slot(bobs, "w2", other.model, 1).granted
    said = {a["key"]: a["state"] for a in door_state_of(other)["agents"]}
    assert "waiting for a model slot (2nd in line, about 1 min)" in said.values()


def door_state_of(run: FlowRun) -> dict[str, Any]:
    from runs.doors import run_state as door_state

    run.refresh_from_db()
    return door_state(run, None)


@pytest.mark.django_db
def test_a_live_update_for_one_agent_redraws_the_waiters_words(alice: Any, target_dir: Path):
    """The holder's turn is measured (its row changed); the waiters' rows did not change, but
    their estimates did: the update carries their words too, and only their words."""
    run, holder, waiters = one_slot_line(alice, target_dir)
    before = dict(live.update_parts(run, {holder}))
    assert {f"agent-who-{w}" for w in waiters} <= before.keys()
    assert not any(f"agent-metrics-{w}" in before for w in waiters), "their words only"
    assert not any("about" in before[f"agent-who-{w}"] for w in waiters), "nothing measured"
    measure_turns(holder)
    after = dict(live.update_parts(run, {holder}))
    assert all("about" in after[f"agent-who-{w}"] for w in waiters)
