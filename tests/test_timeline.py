"""The run timeline, derived from step timestamps and stored event marks, and the words."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from runs import labels, timeline
from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep
from tests.browser.fabricate import _stamped_events, fabricate_run

ORIGIN = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.get_fixed_timezone(0))


def at(seconds: float) -> datetime:
    return ORIGIN + timedelta(seconds=seconds)


def make_run(alice: Any, target: str, status: str = "succeeded", end: float = 10.0) -> FlowRun:
    run = FlowRun.objects.create(
        owner=alice, flow="code-review", target=target, model="demo/scripted", status=status
    )
    FlowRun.objects.filter(id=run.id).update(
        created_at=ORIGIN, started_at=at(0), finished_at=at(end) if status == "succeeded" else None
    )
    run.refresh_from_db()
    return run


def make_step(run: FlowRun, key: str, position: int, **fields: Any) -> FlowStep:
    times = {
        name: at(fields.pop(name))
        for name in ("queued_at", "line_at", "started_at", "first_token_at", "finished_at")
        if name in fields
    }
    defaults = {"status": "succeeded", "attempt": 1, "role": key, "title": key.title()}
    return FlowStep.objects.create(
        run=run, key=key, kind="specialist", position=position, **{**defaults, **fields, **times}
    )


def add_events(step: FlowStep, events: list[tuple[float, str, dict[str, Any]]], attempt: int = 1):
    session = AgentSession.objects.create(
        step=step, attempt=attempt, worker="w", backend="b", model="m"
    )
    with _stamped_events():
        AgentEvent.objects.bulk_create(
            AgentEvent(
                session=session, step=step, seq=i + 1, kind=kind, payload=payload, created_at=at(t)
            )
            for i, (t, kind, payload) in enumerate(events)
        )
    return session


def kinds(lane: timeline.Lane) -> list[tuple[str, float, float]]:
    return [(s.kind, round(s.start, 2), round(s.end, 2)) for s in lane.segments]


@pytest.mark.django_db
class TestLanes:
    def test_a_lane_shows_queue_first_byte_model_and_tools_where_they_happened(
        self, alice, target_dir
    ):
        """Claimed at 1, slot at 2, first byte at 3; a tool from 5 to 6; the next turn's
        first text at 7; finished at 9."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=1, started_at=2, first_token_at=3, finished_at=9
        )
        add_events(
            step,
            [
                (2, "status", {"state": "waiting_first_byte"}),
                (3, "status", {"state": "running"}),
                (3.1, "text", {"text": "looking"}),
                (5, "tool_call", {"name": "read_file"}),
                (6, "tool_result", {"ok": True}),
                (7, "text", {"text": "found"}),
                (9, "status", {"state": "succeeded"}),
            ],
        )
        lane = timeline.build(run).lanes[0]
        assert kinds(lane) == [
            ("waiting", 0, 1),
            ("queued", 1, 2),
            ("first-byte", 2, 3),
            ("model", 3, 5),
            ("tools", 5, 6),
            ("first-byte", 6, 7),
            ("model", 7, 9),
        ]
        assert lane.totals["model"] == pytest.approx(4.0)

    def test_a_wait_for_the_slot_between_turns_is_queued_time(self, alice, target_dir):
        """A `queued` status after the tools, then `running` when the slot came."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=10
        )
        add_events(
            step,
            [
                (2, "tool_call", {}),
                (3, "tool_result", {}),
                (3, "status", {"state": "queued", "position": 2}),
                (6, "status", {"state": "running"}),
                (6.5, "reasoning", {"text": "hm"}),
            ],
        )
        segments = kinds(timeline.build(run).lanes[0])
        assert ("queued", 3, 6) in segments
        assert ("first-byte", 6, 6.5) in segments
        assert segments[-1] == ("model", 6.5, 10)

    def test_a_turn_with_only_tool_calls_counts_its_wait_as_model_time(self, alice, target_dir):
        """No text marks its first byte, so nothing is claimed that is not known."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=8
        )
        add_events(
            step,
            [
                (2, "tool_call", {}),
                (3, "tool_result", {}),
                (6, "tool_call", {}),
                (7, "tool_result", {}),
            ],
        )
        assert kinds(timeline.build(run).lanes[0]) == [
            ("first-byte", 0, 1),
            ("model", 1, 2),
            ("tools", 2, 3),
            ("model", 3, 6),
            ("tools", 6, 7),
            ("model", 7, 8),
        ]

    def test_an_earlier_attempt_is_drawn_before_the_one_that_finished(self, alice, target_dir):
        """Attempt 1 ran from 1 to 4 (its worker died); attempt 2 was claimed at 6."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run,
            "security",
            0,
            attempt=2,
            queued_at=6,
            started_at=6,
            first_token_at=7,
            finished_at=9,
        )
        first = add_events(step, [(3, "tool_call", {}), (4, "tool_result", {})], attempt=1)
        AgentSession.objects.filter(id=first.id).update(created_at=at(1), updated_at=at(2))
        second = add_events(step, [(8, "text", {"text": "x"})], attempt=2)
        AgentSession.objects.filter(id=second.id).update(created_at=at(6), updated_at=at(9))
        assert kinds(timeline.build(run).lanes[0]) == [
            ("waiting", 0, 1),
            ("earlier", 1, 4),
            ("waiting", 4, 6),
            ("first-byte", 6, 7),
            ("model", 7, 9),
        ]

    def test_a_live_lane_is_open_ended_and_the_axis_has_room_ahead(self, alice, target_dir):
        """While running, the last stretch ends now, and the axis ends beyond now."""
        run = make_run(alice, str(target_dir), status="running")
        make_step(run, "security", 0, status="running", queued_at=0, started_at=0, first_token_at=1)
        make_step(run, "synthesis", 1, status="pending", depends_on=["security"])
        line = timeline.build(run, at=at(20))
        security, synthesis = line.lanes
        assert security.segments[-1].open and security.segments[-1].end == pytest.approx(20)
        assert synthesis.segments == [timeline.Segment(kind="waiting", start=0, end=20, open=True)]
        assert line.live and line.span > line.now == pytest.approx(20)

    def test_a_failed_trys_backoff_is_a_retry_wait_not_a_wait_for_the_first_byte(
        self, alice, target_dir
    ):
        """Slot at 1; the first try fails at 2 and the next waits 2 s; its first byte at 6."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=1, first_token_at=6, finished_at=8
        )
        add_events(
            step,
            [
                (1, "status", {"state": "waiting_first_byte"}),
                (2, "status", {"state": "retrying", "delay": 2.0, "attempt": 1}),
                (6, "status", {"state": "running"}),
                (6.1, "text", {"text": "found"}),
            ],
        )
        line = timeline.build(run)
        assert kinds(line.lanes[0]) == [
            ("queued", 0, 1),
            ("first-byte", 1, 2),
            ("retrying", 2, 4),
            ("first-byte", 4, 6),
            ("model", 6, 8),
        ]
        assert dict(line.legend)["retrying"] == labels.STRETCH_WORDS["retrying"]

    def test_a_slot_wait_after_the_first_turns_backoff_is_queued_then_first_byte_from_the_grant(
        self, alice, target_dir
    ):
        """The first try fails at 2 (1 s); the slot it gave back is taken: it joins the line at
        3, moves up at 5, is granted at 8, and its first byte comes at 9."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=1, first_token_at=9, finished_at=10
        )
        add_events(
            step,
            [
                (1, "status", {"state": "waiting_first_byte"}),
                (2, "status", {"state": "unavailable", "delay": 1.0, "attempt": 1}),
                (3, "status", {"state": "queued", "position": 2}),
                (5, "status", {"state": "queued", "position": 1}),
                (8, "status", {"state": "waiting_first_byte"}),
                (9, "status", {"state": "running"}),
                (9.1, "text", {"text": "found"}),
            ],
        )
        line = timeline.build(run)
        assert kinds(line.lanes[0]) == [
            ("queued", 0, 1),
            ("first-byte", 1, 2),
            ("retrying", 2, 3),
            ("queued", 3, 8),
            ("first-byte", 8, 9),
            ("model", 9, 10),
        ]
        assert dict(line.critical_totals)["first-byte"] == pytest.approx(2)

    def test_a_slot_wait_between_turns_ends_at_the_grant(self, alice, target_dir):
        """After the tools the agent waits for the slot (3 to 6), then for its first byte;
        the `running` status came once, in the first turn."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=10
        )
        add_events(
            step,
            [
                (0, "status", {"state": "waiting_first_byte"}),
                (1, "status", {"state": "running"}),
                (2, "tool_call", {}),
                (3, "tool_result", {}),
                (3.1, "status", {"state": "queued", "position": 1}),
                (6, "status", {"state": "waiting_first_byte"}),
                (7, "text", {"text": "more"}),
            ],
        )
        assert kinds(timeline.build(run).lanes[0]) == [
            ("first-byte", 0, 1),
            ("model", 1, 2),
            ("tools", 2, 3),
            ("queued", 3, 6),
            ("first-byte", 6, 7),
            ("model", 7, 10),
        ]

    def test_retries_in_a_later_turn_each_wait_their_own_delay(self, alice, target_dir):
        """A later turn's server goes away at 5 (1 s), again at 6.5 (2 s); text again at 9.5."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=11
        )
        add_events(
            step,
            [
                (2, "tool_call", {}),
                (3, "tool_result", {}),
                (4, "text", {"text": "reading"}),
                (5, "status", {"state": "unavailable", "delay": 1}),
                (6.5, "status", {"state": "unavailable", "delay": 2}),
                (9.5, "text", {"text": "again"}),
            ],
        )
        assert kinds(timeline.build(run).lanes[0]) == [
            ("first-byte", 0, 1),
            ("model", 1, 2),
            ("tools", 2, 3),
            ("first-byte", 3, 4),
            ("model", 4, 5),
            ("retrying", 5, 6),
            ("first-byte", 6, 6.5),
            ("retrying", 6.5, 8.5),
            ("first-byte", 8.5, 9.5),
            ("model", 9.5, 11),
        ]

    def test_a_lane_without_retries_has_no_retry_in_its_legend(self, alice, target_dir):
        """A hostile delay (text, negative, huge) is no wait at all."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=3, finished_at=5
        )
        add_events(
            step,
            [
                (1, "status", {"state": "retrying", "delay": "<b>soon</b>"}),
                (2, "status", {"state": "retrying", "delay": -5}),
            ],
        )
        assert timeline.build(run).lanes[0].totals.get("retrying", 0) == 0
        plain = make_run(alice, str(target_dir))
        make_step(plain, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=2)
        assert "retrying" not in dict(timeline.build(plain).legend)

    def test_hostile_event_payloads_do_not_break_the_timeline(self, alice, target_dir):
        """A status without a state, a state that is not a string, a position that is text."""
        run = make_run(alice, str(target_dir))
        step = make_step(
            run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=5
        )
        add_events(
            step,
            [
                (2, "status", {}),
                (2.5, "status", {"state": ["queued"]}),
                (3, "status", {"state": "queued", "position": "<b>1</b>"}),
                (4, "status", {"state": "running", "x": "\x1b[31m"}),
                (4.5, "weird-kind", {"state": None}),
            ],
        )
        lane = timeline.build(run).lanes[0]
        assert lane.segments[0].start == 0 and lane.segments[-1].end == 5
        assert labels.event_words({"state": "queued", "position": "<b>1</b>"}) == (
            "waiting for a model slot (in line)"
        )


@pytest.mark.django_db
class TestCriticalPath:
    def test_it_follows_the_dependency_that_ended_last(self, alice, target_dir):
        """Security ended after Correctness, so the path runs through Security."""
        run = make_run(alice, str(target_dir), end=12)
        base = {"queued_at": 0, "started_at": 0, "first_token_at": 1}
        make_step(run, "correctness", 0, finished_at=3, **base)
        make_step(run, "security", 1, finished_at=6, **base)
        make_step(
            run,
            "synthesis",
            2,
            depends_on=["correctness", "security"],
            queued_at=6.5,
            started_at=7,
            first_token_at=8,
            finished_at=12,
        )
        line = timeline.build(run)
        assert [lane.step.key for lane in line.critical_path] == ["security", "synthesis"]
        assert [lane.critical for lane in line.lanes] == [False, True, True]
        totals = dict(line.critical_totals)
        # Security: 1 s to its first byte, 5 s of model; the hand-off 0.5 s; Synthesis
        # queued 0.5 s, first byte 1 s, model 4 s: the whole run.
        assert totals == pytest.approx(
            {"first-byte": 2.0, "model": 9.0, "waiting": 0.5, "queued": 0.5}
        )
        assert line.critical_seconds == pytest.approx(12.0)

    def test_a_retried_run_shows_its_idle_gap_and_its_path_counts_active_time(
        self, alice, target_dir
    ):
        """First finished at 10 with Security failed; retried at 40, finished again at 50.
        The 30 s between are idle: drawn as such, and neither elapsed nor the path counts them."""
        run = make_run(alice, str(target_dir), end=50)
        FlowRun.objects.filter(id=run.id).update(
            idle_spans=[[at(10).isoformat(), at(40).isoformat()]]
        )
        run.refresh_from_db()
        security = make_step(
            run,
            "security",
            0,
            attempt=2,
            queued_at=40,
            started_at=40,
            first_token_at=41,
            finished_at=45,
        )
        first = add_events(security, [(2, "tool_call", {}), (4, "error", {})], attempt=1)
        AgentSession.objects.filter(id=first.id).update(created_at=at(1), updated_at=at(4))
        synthesis = make_step(
            run,
            "synthesis",
            1,
            attempt=2,
            depends_on=["security"],
            queued_at=45.5,
            started_at=46,
            first_token_at=46.5,
            finished_at=50,
        )
        earlier = add_events(synthesis, [(9, "status", {"state": "succeeded"})], attempt=1)
        AgentSession.objects.filter(id=earlier.id).update(created_at=at(5), updated_at=at(10))
        add_events(synthesis, [(47, "text", {"text": "x"})], attempt=2)

        line = timeline.build(run)
        assert run.active_seconds() == pytest.approx(20.0)
        assert ("idle", 10, 40) in kinds(line.lanes[0]) and ("idle", 10, 40) in kinds(line.lanes[1])
        assert [lane.step.key for lane in line.critical_path] == ["security", "synthesis"]
        assert "idle" not in dict(line.critical_totals)
        assert line.critical_seconds == pytest.approx(run.active_seconds())
        assert {"idle", "earlier"} <= dict(line.legend).keys(), "drawn, so in the legend"

    def test_a_twenty_agent_four_minute_run_answers_why_it_took_that_long(self, alice, target_dir):
        """The fabricated run: 18 specialists on 4 slots, then the synthesizer and validator."""
        run = fabricate_run(alice, str(target_dir), agents=20, tokens=20_000)
        line = timeline.build(run)
        assert len(line.lanes) == 20 and 200 < line.now < 300
        assert [lane.step.key for lane in line.critical_path][-2:] == ["synthesis", "validation"]
        assert dict(line.critical_totals)["queued"] > 30, "slot waits dominate, and it says so"
        assert "idle" not in dict(line.legend), "never retried: no idle gap in the legend"
        assert {label for _, label in line.ticks} >= {"0 min", "1 min", "4 min"}


class TestWords:
    def test_the_queue_reads_as_words(self):
        """Ordinals, and what a queued step waits for."""
        assert [labels.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
            "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"
        ]  # fmt: skip
        queued = FlowStep(key="k", status="queued", attempt=1, wants_slot=True)
        assert labels.step_state(queued, 3).text == "waiting for a model slot (3rd in line)"
        first_byte = FlowStep(key="k", status="queued", attempt=1, holds_slot=True)
        assert labels.step_state(first_byte).text == "waiting for the server's first byte"
        running = FlowStep(key="k", status="running", attempt=2, phase="generating")
        assert labels.step_state(running).text == "generating (attempt 2)"
        pending = FlowStep(key="k", status="pending")
        assert labels.step_state(pending, waiting_on=["Correctness", "Security"]).text == (
            "waiting (for Correctness, Security)"
        )
        assert labels.step_state(pending).text == "waiting (for its dependencies)"
        # A stream's status line says what the row said at that moment.
        assert labels.event_words({"state": "queued", "position": 3}) == (
            labels.step_state(queued, 3).text
        )

    def test_durations_read_as_seconds_then_minutes_then_hours(self):
        """Tenths for the ticking clocks; whole seconds once it is minutes in a summary."""
        assert labels.duration(None) == ""
        assert labels.duration(2.25) == "2.2 s" and labels.duration(59.94) == "59.9 s"
        assert labels.duration(258.04) == "4 min 18 s" and labels.duration(257.98) == "4 min 18 s"
        assert labels.duration(119.7) == "2 min 0 s"
        assert labels.duration(258.09, tenths=True) == "4 min 18.0 s"
        assert labels.duration(3725) == "1 h 02 min"

    def test_progress_always_counts_done_running_queued_and_failed(self):
        """Zero groups are left out except the four a person looks for first."""
        assert labels.progress_counts(["succeeded", "succeeded", "pending", "ready"]) == [
            ("done", 2),
            ("running", 0),
            ("queued", 1),
            ("waiting", 1),
            ("failed", 0),
        ]

    def test_the_terminal_uses_the_same_words(self):
        """progress.status_label asks runs.labels."""
        from runs.progress import status_label

        step = FlowStep(key="k", status="queued", attempt=1, wants_slot=True)
        assert status_label(step, 2) == "waiting for a model slot (2nd in line)"
        assert status_label(FlowStep(key="k", status="succeeded"), None) == "succeeded"


@pytest.mark.django_db
def test_queue_places_count_the_live_steps_of_the_same_model_that_joined_earlier(
    alice, bob, charlie, target_dir
):
    """Across runs of one model: a live step waiting for a slot that took its place earlier is
    ahead; a step holding a slot, one not asking, one without a place yet (behind its owner's
    step in the line), another model's step, a dead lease or a finished step is not (the
    scheduler's one rule, scheduler.queue_positions)."""
    from runs.progress import queue_positions

    mine = make_run(alice, str(target_dir), status="running")
    other = make_run(bob, str(target_dir), status="running")
    third = make_run(charlie, str(target_dir), status="running")
    elsewhere = make_run(alice, str(target_dir), status="running")
    FlowRun.objects.filter(id=elsewhere.id).update(model="llama-swap/other")
    live = timezone.now() + timedelta(minutes=5)
    queued = {"status": "queued", "holds_slot": False, "wants_slot": True, "lease_expires_at": live}
    make_step(other, "a", 0, queued_at=1, line_at=1, **queued)  # ahead of everything below
    make_step(other, "b", 1, queued_at=2, **{**queued, "holds_slot": True})  # has a slot
    make_step(other, "i", 3, queued_at=2, **{**queued, "wants_slot": False})  # not asking yet
    make_step(other, "k", 5, queued_at=0, **queued)  # no place yet: bob's "a" is in the line
    dead = timezone.now() - timedelta(seconds=1)
    make_step(other, "j", 4, queued_at=2, line_at=0, **{**queued, "lease_expires_at": dead})
    make_step(elsewhere, "c", 0, queued_at=0, line_at=0, **queued)  # another model's line
    make_step(other, "d", 2, queued_at=0, finished_at=3, status="succeeded")  # finished
    first = make_step(mine, "e", 0, queued_at=3, line_at=3, **queued)
    second = make_step(third, "f", 1, queued_at=4, line_at=4, **queued)
    tie = make_step(mine, "g", 2, queued_at=4, line_at=4, **queued)  # same moment: by id
    make_step(mine, "h", 3, queued_at=5, status="running", holds_slot=True, lease_expires_at=live)
    assert queue_positions(mine) == {first.id: 2, tie.id: 4}
    assert queue_positions(third) == {second.id: 3}


@pytest.mark.django_db
def test_a_finished_runs_timeline_is_remembered_until_the_run_changes(alice, target_dir):
    """Drawn once per finish: a new event does not show, a retried run's next finish does."""
    run = make_run(alice, str(target_dir))
    step = make_step(run, "security", 0, queued_at=0, started_at=0, first_token_at=1, finished_at=9)
    first = timeline.for_run(run, [step])
    add_events(step, [(3, "tool_call", {}), (4, "tool_result", {})])
    assert timeline.for_run(run, [step]) is first
    FlowRun.objects.filter(id=run.id).update(finished_at=at(11))  # retried, finished again
    run.refresh_from_db()
    again = timeline.for_run(run, [step])
    assert again is not first and again.lanes[0].totals["tools"] == pytest.approx(1.0)
    live = make_run(alice, str(target_dir), status="running")
    running = make_step(live, "security", 0, status="running", queued_at=0, started_at=0)
    assert timeline.for_run(live, [running]) is not timeline.for_run(live, [running])
