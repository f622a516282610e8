"""A run's timeline: one lane per agent on a shared time axis, and the run's critical path.

Derived from what the database already holds, nothing recorded for it:

- `flow_steps` timestamps of the step's latest attempt: claimed (`queued_at`), first slot
  granted (`started_at`), first byte (`first_token_at`), `finished_at`;
- the stored events' kinds and times (`agent_events.created_at`), read through the partial
  index of the few events that are not model text: tool calls and results bound the time
  spent in tools, a `queued` status (the agent joined its model's line) starts a wait for
  the model slot and a `waiting_first_byte` one (the grant) ends it, a `retrying` or
  `unavailable` status starts the wait its `delay` names before the next try, and the first
  text after a tool result, a grant or a retry marks that turn's first byte;
- earlier attempts of a step from their sessions (opened at the claim, last checkpoint).

Events are written in batches (one INSERT at most every 40 ms per step), so a boundary
taken from an event is good to about 40 ms. A later turn that produced tool calls and no
text has no first-byte mark: its wait for the first byte is counted as model time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from runs.labels import STRETCH_WORDS, duration
from runs.models import ACTIVE_STEP, TERMINAL_RUN, AgentSession, FlowRun, FlowStep, StepStatus

# What a stretch of a lane was spent on, in the order the legend shows them (runs.labels owns
# the words).
KINDS = STRETCH_WORDS
# Kinds that are not the lane's own work: its busy time and the critical path leave them out
# (a wait on the path counts only as a hand-off; an idle gap not at all).
NOT_BUSY = frozenset({"waiting", "idle"})
OCCASIONAL = frozenset({"earlier", "idle", "retrying"})  # in the legend only when drawn
# The statuses of a failed try (runs.engine.agent.turn): the next try waits `delay` seconds.
RETRY_STATES = ("retrying", "unavailable")
# The slot's statuses (runs.engine.agent.loop.ModelSlot): the agent joined the line (again
# as its place moves), and the slot was granted after a wait (or for the attempt's first turn).
SLOT_WAIT, SLOT_GRANTED = "queued", "waiting_first_byte"
MODEL_OUTPUT = ("text", "reasoning")
# Statuses that only come once the model answers: the attempt's first byte, a tool call's name.
ANSWERING = ("running", "calling")
# Axis steps in seconds; the first that gives at most MAX_TICKS intervals is used.
TICK_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)
MAX_TICKS = 6
# Stretches narrower than this share of the axis are drawn as part of their neighbour (the
# totals stay exact): they would be under a pixel, and a long run has thousands of them.
VISIBLE_SHARE = 0.002

# The marks: every event that is not model text (few, through agent_event_mark_idx), and
# for a tool result, a `running` status, a slot's grant or a failed try's status, the event
# right after it in its attempt (seq + 1, one lookup in the unique index): its time is the
# next turn's (or try's) first byte when it is text, and a `queued` one says the agent waits
# for the slot again.
_MARKS = """
    SELECT m.step_id, m.session_id, m.kind, m.created_at, m.payload->>'state',
           m.payload->>'delay', nxt.kind, nxt.created_at, nxt.state
    FROM agent_events m
    LEFT JOIN LATERAL (
        -- LIMIT keeps this a lookup per mark: right after a long run is written the table's
        -- statistics are stale, and a join would be planned as a hash of every event.
        SELECT a.kind, a.created_at, a.payload->>'state' AS state FROM agent_events a
        WHERE a.session_id = m.session_id AND a.seq = m.seq + 1 LIMIT 1
    ) nxt ON m.kind = 'tool_result'
        OR (m.kind = 'status' AND m.payload->>'state' IN
            ('running', 'retrying', 'unavailable', 'waiting_first_byte'))
    WHERE m.step_id = ANY(%s) AND m.kind NOT IN ('text', 'reasoning')
    ORDER BY m.step_id, m.id
"""


@dataclass(frozen=True, kw_only=True)
class Mark:
    session: int
    kind: str
    at: datetime
    state: str | None = None
    delay: float = 0.0  # a failed try's wait before the next one
    next_kind: str | None = None
    next_at: datetime | None = None
    next_state: str | None = None


@dataclass(frozen=True, kw_only=True)
class Segment:
    kind: str
    start: float  # seconds from the run's start
    end: float
    open: bool = False  # still going: its end is "now"

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, kw_only=True)
class Drawn:
    """A stretch as drawn: its CSS position (percent of the axis) and its tooltip."""

    kind: str
    style: str  # left and width
    start: str  # seconds from the run's start, for the browser to stretch an open one
    open: bool
    title: str


@dataclass(kw_only=True)
class Lane:
    step: FlowStep
    segments: list[Segment]
    totals: dict[str, float]
    critical: bool = False
    drawn: list[Drawn] = field(default_factory=list)

    @property
    def busy_seconds(self) -> float:
        return sum(v for k, v in self.totals.items() if k not in NOT_BUSY)

    @property
    def track(self) -> SafeString:
        """The lane's stretches as <span>s. Built with format_html (every value escaped), not
        in the template: a long run draws hundreds of stretches, and four template variables
        each were the biggest cost of rendering its pane."""
        return format_html_join(
            "",
            '<span class="seg seg-{}" style="{}" title="{}"{}></span>',
            ((seg.kind, seg.style, seg.title, _open_attributes(seg)) for seg in self.drawn),
        )

    @property
    def busy(self) -> str:
        return duration(self.busy_seconds) if self.busy_seconds else ""


@dataclass(kw_only=True)
class Timeline:
    origin: datetime
    span: float  # seconds the axis shows
    now: float  # seconds from the origin to now (or to the run's end)
    live: bool
    lanes: list[Lane]
    ticks: list[tuple[float, str]]  # (percent, label)
    critical_path: list[Lane]
    critical_totals: list[tuple[str, float]]  # (kind, seconds), largest first
    critical_seconds: float

    @property
    def origin_ms(self) -> int:
        return int(self.origin.timestamp() * 1000)

    @property
    def span_text(self) -> str:
        return f"{self.span:.3f}"

    @property
    def now_at(self) -> str:
        """Now as a share of the axis (0 to 1)."""
        return f"{min(self.now, self.span) / self.span:.4f}"

    @property
    def legend(self) -> list[tuple[str, str]]:
        """Every kind of stretch, but an earlier attempt and an idle gap only when a lane has
        one (most runs have neither)."""
        drawn = {segment.kind for lane in self.lanes for segment in lane.segments}
        return [(k, words) for k, words in KINDS.items() if k not in OCCASIONAL or k in drawn]

    @property
    def critical_words(self) -> list[tuple[str, str, str]]:
        """(kind, what, how long) for the critical path; waits on it are hand-offs."""
        return [
            (kind, "waiting (hand-offs)" if kind == "waiting" else KINDS[kind], duration(sec))
            for kind, sec in self.critical_totals
            if sec >= 0.05
        ]

    @property
    def critical_length(self) -> str:
        return duration(self.critical_seconds)


class _Finished:
    """The timelines of finished runs, which never change (a retry makes the run live again,
    and its next finish a new key): a pane reopened, a workspace reloaded with its remembered
    panes (each renders its page, then its socket's snapshot) draw them again and again."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.kept: OrderedDict[tuple[Any, ...], Timeline] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> Timeline | None:
        with self.lock:
            found = self.kept.get(key)
            if found is not None:
                self.kept.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: Timeline) -> None:
        with self.lock:
            self.kept[key] = value
            while len(self.kept) > self.size:
                self.kept.popitem(last=False)


_finished = _Finished(size=64)


def forget_finished() -> None:
    """Drop the remembered timelines (benchmarks measure a first open with it)."""
    with _finished.lock:
        _finished.kept.clear()


def for_run(run: FlowRun, steps: list[FlowStep], *, at: datetime | None = None) -> Timeline:
    """`build`, remembered for finished runs (by run and finish time)."""
    if run.status not in TERMINAL_RUN or run.finished_at is None:
        return build(run, steps, at=at)
    # The steps' ids, not their count: a pane render of some of the steps has its own lanes.
    key = (run.id, run.finished_at, run.status, tuple(s.id for s in steps))
    found = _finished.get(key)
    if found is None:  # built from this read; never changed afterwards, so safe to share
        found = build(run, steps, at=at)
        _finished.put(key, found)
    return found


def build(
    run: FlowRun, steps: list[FlowStep] | None = None, *, at: datetime | None = None
) -> Timeline:
    """The timeline of `run` as the database has it now (`at`: the moment taken as now)."""
    steps = steps if steps is not None else list(run.steps.all())
    now_at = at or timezone.now()
    origin = run.created_at
    live = run.status not in TERMINAL_RUN
    end_at = now_at if live or run.finished_at is None else run.finished_at
    now = max(0.0, (end_at - origin).total_seconds())
    marks = load_marks([s.id for s in steps])
    # Only steps tried before have an earlier attempt to draw (a retried step waits as
    # pending with its old attempt count until it is claimed again).
    retried = [s.id for s in steps if s.attempt > 1 or (s.attempt and s.status in _NOT_STARTED)]
    attempts = _attempts(retried)
    idle = [
        ((finished - origin).total_seconds(), (retried - origin).total_seconds())
        for finished, retried in run.idle
    ]
    lanes = [
        _lane(step, origin, now, marks.get(step.id, []), attempts.get(step.id, []), live, idle)
        for step in steps
    ]
    path = _critical_path(lanes, now)
    for lane in path:
        lane.critical = True
    span = _span(now, live)
    for lane in lanes:
        lane.drawn = _draw(lane.segments, span)
    # The path counts from the run's first claim, as its elapsed time does: waiting for the
    # owner's turn before it is not part of it.
    first_claim = (run.started_at - origin).total_seconds() if run.started_at else 0.0
    totals = _critical_totals(path, first_claim)
    return Timeline(
        origin=origin,
        span=span,
        now=now,
        live=live,
        lanes=lanes,
        ticks=_ticks(span),
        critical_path=path,
        critical_totals=totals,
        critical_seconds=sum(seconds for _, seconds in totals),
    )


def load_marks(step_ids: list[int]) -> dict[int, list[Mark]]:
    """Per step, its events that are not model text, oldest first."""
    if not step_ids:
        return {}
    marks: dict[int, list[Mark]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_MARKS, [step_ids])
        for row in cursor.fetchall():
            step_id, session, kind, at, state, delay, next_kind, next_at, next_state = row
            marks.setdefault(step_id, []).append(
                Mark(
                    session=session,
                    kind=kind,
                    at=at,
                    state=state,
                    delay=_seconds(delay),
                    next_kind=next_kind,
                    next_at=next_at,
                    next_state=next_state,
                )
            )
    return marks


def _seconds(text: str | None) -> float:
    """A stored delay (the event's own number, as text); anything else is no wait."""
    try:
        value = float(text or 0)
    except ValueError:
        return 0.0
    return value if 0 < value < 86400 else 0.0


@dataclass(frozen=True, kw_only=True)
class Attempt:
    session: int
    opened: datetime  # at the claim
    saved: datetime  # its last checkpoint


def _attempts(step_ids: list[int]) -> dict[int, list[Attempt]]:
    """Per step, its attempts' sessions, oldest first."""
    if not step_ids:
        return {}
    found: dict[int, list[Attempt]] = {}
    rows = AgentSession.objects.filter(step_id__in=step_ids).order_by("step_id", "attempt")
    for session, step_id, opened, saved in rows.values_list(
        "id", "step_id", "created_at", "updated_at"
    ):
        found.setdefault(step_id, []).append(Attempt(session=session, opened=opened, saved=saved))
    return found


class _Cursor:
    """Cuts a lane into stretches: `to(t, kind)` ends the current stretch at `t`."""

    def __init__(self, origin: datetime, start: float, end: float, kind: str) -> None:
        self.origin = origin
        self.at = start
        self.end = end
        self.kind = kind
        self.segments: list[Segment] = []

    def seconds(self, moment: datetime | None) -> float:
        if moment is None:
            return self.end
        return (moment - self.origin).total_seconds()

    def to(self, moment: datetime | float | None, kind: str) -> None:
        t = moment if isinstance(moment, float) else self.seconds(moment)
        t = min(max(t, self.at), self.end)
        if t > self.at:
            last = self.segments[-1] if self.segments else None
            if last is not None and last.kind == self.kind and last.end == self.at:
                # The same stretch goes on (a place in line moved): one segment, not slivers.
                self.segments[-1] = Segment(kind=self.kind, start=last.start, end=t)
            else:
                self.segments.append(Segment(kind=self.kind, start=self.at, end=t))
        self.at, self.kind = t, kind


def _lane(
    step: FlowStep,
    origin: datetime,
    now: float,
    marks: list[Mark],
    attempts: list[Attempt],
    live: bool,
    idle: list[tuple[float, float]],
) -> Lane:
    started = step.queued_at is not None and step.status not in _NOT_STARTED
    active = step.status in ACTIVE_STEP or (live and step.status in _NOT_STARTED)
    finished = (step.finished_at - origin).total_seconds() if step.finished_at else 0.0
    end = now if active or step.finished_at is None else max(0.0, finished)
    cursor = _Cursor(origin, 0.0, end, "waiting")
    # The current attempt is the last session once the step has been claimed again.
    earlier, current = (
        (attempts[:-1], attempts[-1].session) if started and attempts else (attempts, None)
    )
    for attempt in earlier:  # each, then a wait for the next claim
        own = [m.at for m in marks if m.session == attempt.session]
        cursor.to(attempt.opened, "earlier")
        cursor.to(max([attempt.saved, *own]), "waiting")
    if started:
        cursor.to(step.queued_at, "queued")
        if step.started_at is not None:
            cursor.to(step.started_at, "first-byte")
            mine = [m for m in marks if current is None or m.session == current]
            first_byte = (
                (step.first_token_at - origin).total_seconds()
                if step.first_token_at is not None
                else end
            )
            first_grant = cursor.seconds(step.started_at)
            for mark in mine:  # the first turn's failed tries and slot waits, before its byte
                # A mark before the first grant belongs to the claim's wait, drawn already.
                if first_grant <= cursor.seconds(mark.at) < first_byte:
                    _first_turn(cursor, mark)
            if step.first_token_at is not None:
                cursor.to(step.first_token_at, "model")
                _model_phase(cursor, mine, first_byte)
    cursor.to(end, cursor.kind)
    segments = _cut_idle(cursor.segments, idle)
    if active and segments:
        last = segments[-1]
        segments[-1] = Segment(kind=last.kind, start=last.start, end=last.end, open=True)
    totals: dict[str, float] = {}
    for segment in segments:
        totals[segment.kind] = totals.get(segment.kind, 0.0) + segment.seconds
    return Lane(step=step, segments=segments, totals=totals)


_NOT_STARTED = frozenset({StepStatus.PENDING, StepStatus.READY})


def _first_turn(cursor: _Cursor, mark: Mark) -> None:
    """Before the attempt's first byte: its slot waits and grants, its failed tries."""
    if mark.kind != "status":
        return
    if mark.state == SLOT_WAIT:
        cursor.to(mark.at, "queued")
    elif mark.state == SLOT_GRANTED:
        _granted(cursor, mark)
    elif mark.state in RETRY_STATES:
        _retry_wait(cursor, mark)


def _model_phase(cursor: _Cursor, marks: list[Mark], first_byte: float) -> None:
    """From the first byte on: tools between a call and its result, slot waits from a
    `queued` status to the grant, first-byte waits up to a later turn's first text."""
    for mark in marks:
        if cursor.seconds(mark.at) < first_byte:
            continue  # the first turn's own statuses, before its first byte
        if mark.kind == "tool_call":
            cursor.to(mark.at, "tools")
        elif mark.kind == "tool_result":
            _after_a_wait(cursor, mark)
        elif mark.kind == "status" and mark.state == SLOT_WAIT:
            cursor.to(mark.at, "queued")
        elif mark.kind == "status" and mark.state == SLOT_GRANTED:
            _granted(cursor, mark)
        elif mark.kind == "status" and mark.state == "running" and cursor.kind == "queued":
            _after_a_wait(cursor, mark)  # a run recorded without grants between turns
        elif mark.kind == "status" and mark.state in RETRY_STATES:
            _retry_wait(cursor, mark)


def _answers_next(mark: Mark) -> bool:
    """The event right after `mark` shows the model answering: its time is a first byte."""
    if mark.next_at is None:
        return False
    return mark.next_kind in MODEL_OUTPUT or (
        mark.next_kind == "status" and mark.next_state in ANSWERING
    )


def _granted(cursor: _Cursor, mark: Mark) -> None:
    """The slot was granted at `mark`: the turn waits for its first byte from there."""
    cursor.to(mark.at, "first-byte")
    if _answers_next(mark):
        cursor.to(mark.next_at, "model")


def _retry_wait(cursor: _Cursor, mark: Mark) -> None:
    """A try failed at `mark`: its delay is the retry's wait, and no more. Then the agent
    waits for the slot it gave back for the backoff when a `queued` status comes next, else
    the next try waits for its first byte (a server that was down may take the whole delay
    and more), unless it failed too (its own mark)."""
    cursor.to(mark.at, "retrying")
    due = cursor.seconds(mark.at) + mark.delay
    if mark.next_kind == "status" and mark.next_state == SLOT_WAIT:
        cursor.to(due, "queued")
        return
    cursor.to(due, "first-byte")
    if _answers_next(mark):
        cursor.to(mark.next_at, "model")


def _after_a_wait(cursor: _Cursor, mark: Mark, start: float | None = None) -> None:
    """The model's turn starts after `mark` (or at `start`): at its first text, if that
    comes next; a `queued` status next means it waits for the slot first."""
    begin = cursor.seconds(mark.at) if start is None else start
    if mark.next_kind in MODEL_OUTPUT and mark.next_at is not None:
        cursor.to(begin, "first-byte")
        cursor.to(mark.next_at, "model")
    elif mark.next_kind == "status" and mark.next_state == SLOT_WAIT:
        cursor.to(begin, "queued")
    else:
        cursor.to(begin, "model")


def _critical_path(lanes: list[Lane], now: float) -> list[Lane]:
    """From the lane that ended last, back through the dependency that ended last each time."""
    ends = {
        lane.step.key: lane.segments[-1].end
        for lane in lanes
        if lane.segments and lane.busy_seconds > 0
    }
    if not ends:
        return []
    by_key = {lane.step.key: lane for lane in lanes}
    path = [by_key[max(ends, key=lambda key: ends[key])]]
    while True:
        deps = [key for key in path[-1].step.depends_on if key in ends]
        if not deps:
            break
        path.append(by_key[max(deps, key=lambda key: ends[key])])
    return path[::-1]


def _cut_idle(segments: list[Segment], idle: list[tuple[float, float]]) -> list[Segment]:
    """The segments with every stretch inside an idle span (the run finished, before a retry)
    marked idle: a retried step's wait for its new claim is mostly that gap."""
    for idle_start, idle_end in idle:
        cut: list[Segment] = []
        for seg in segments:
            lo, hi = max(seg.start, idle_start), min(seg.end, idle_end)
            if lo >= hi:
                cut.append(seg)
                continue
            if seg.start < lo:
                cut.append(Segment(kind=seg.kind, start=seg.start, end=lo))
            cut.append(Segment(kind="idle", start=lo, end=hi))
            if hi < seg.end:
                cut.append(Segment(kind=seg.kind, start=hi, end=seg.end, open=seg.open))
        segments = cut
    return segments


def _critical_totals(path: list[Lane], first_claim: float = 0.0) -> list[tuple[str, float]]:
    """Where the critical path's time went from the run's first claim on: each lane's own
    time after the dependency before it on the path had ended (its waits then are hand-offs).
    What a lane did before that, such as an earlier attempt of a retried step, overlaps the
    path's time already; idle gaps before retries are not counted at all. So the path is never
    longer than the run's active time."""
    totals: dict[str, float] = {}
    previous_end = first_claim
    for lane in path:
        for segment in lane.segments:
            if segment.kind == "idle":
                continue
            start = max(segment.start, previous_end)
            if segment.end > start:
                totals[segment.kind] = totals.get(segment.kind, 0.0) + segment.end - start
        previous_end = lane.segments[-1].end if lane.segments else previous_end
    return sorted(totals.items(), key=lambda item: -item[1])


def _span(now: float, live: bool) -> float:
    """The axis: the run's length, or while it runs, room ahead of now on a tick boundary."""
    if not live:
        return max(now, 0.1)
    wanted = max(now * 1.2, now + 2.0)
    step = _tick_step(wanted)
    return float(int(wanted / step + 0.999999) * step)


def _tick_step(span: float) -> float:
    for step in TICK_STEPS:
        if span / step <= MAX_TICKS:
            return step
    return float(TICK_STEPS[-1])


def _ticks(span: float) -> list[tuple[float, str]]:
    step = _tick_step(span)
    ticks = []
    n = 0
    while n * step <= span + 1e-9:
        ticks.append((round(n * step / span * 100, 3), _tick_label(n * step, step)))
        n += 1
    return ticks


def _tick_label(seconds: float, step: float) -> str:
    if step < 60:
        return f"{seconds:g} s"
    if step < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def _draw(segments: Iterable[Segment], span: float) -> list[Drawn]:
    """Left and width as percentages; slivers join the stretch before them."""
    kept: list[Segment] = []
    threshold = span * VISIBLE_SHARE
    for segment in segments:
        if kept and (segment.seconds < threshold or kept[-1].kind == segment.kind):
            previous = kept[-1]
            kept[-1] = Segment(
                kind=previous.kind, start=previous.start, end=segment.end, open=segment.open
            )
        else:
            kept.append(segment)
    return [_drawn(segment, span) for segment in kept]


def _open_attributes(seg: Drawn) -> SafeString:
    """An open stretch tells the browser where it starts, to stretch it to now each tick."""
    return format_html(' data-open data-start="{}"', seg.start) if seg.open else mark_safe("")


def _drawn(segment: Segment, span: float) -> Drawn:
    width = max(0.0, min(segment.end, span) - segment.start) / span * 100
    return Drawn(
        kind=segment.kind,
        style=f"left:{segment.start / span * 100:.3f}%;width:{width:.3f}%",
        start=f"{segment.start:.3f}",
        open=segment.open,
        title=f"{KINDS[segment.kind]}: {duration(segment.seconds)}"
        f" (from {duration(segment.start)}){', so far' if segment.open else ''}",
    )
