"""The pane's pieces, rendered from named partials for pages, HTMX and WebSocket pushes alike.

Everything a render shows comes from one read of the run's steps (`PaneState`): the header's
progress and totals, each agent's row and the timeline agree with each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from flows.report import rate as rate_words
from runs import evidence, timeline, waits
from runs.engine.agent.counters import CacheSaving
from runs.engine.queue import fairness
from runs.labels import (
    State,
    duration,
    event_words,
    progress_counts,
    run_state,
    step_state,
    waiting_on,
)
from runs.models import (
    ACTIVE_STEP,
    AgentEvent,
    FlowRun,
    FlowStep,
    ModelEndpoint,
    RunStatus,
    StepPhase,
    StepStatus,
)
from runs.progress import Numbers, queue_line, step_numbers
from runs.server_slots import host_port

PANE = "runs/pane.html"
# A rate over less model time than this is noise, not a number worth showing.
MIN_RATE_SECONDS = 0.2


@dataclass(frozen=True, kw_only=True)
class Moment:
    """A point in time for the browser: epoch milliseconds, and ISO for <time datetime>."""

    ms: int
    iso: str
    text: str  # shown until the browser puts it in local time

    @classmethod
    def at(cls, value: datetime) -> Moment:
        local = value.astimezone(timezone.get_current_timezone())
        return cls(
            ms=int(value.timestamp() * 1000),
            iso=value.isoformat(),
            text=local.strftime("%H:%M:%S %Z"),
        )


def moment(value: datetime | None) -> Moment | None:
    return None if value is None else Moment.at(value)


@dataclass(frozen=True, kw_only=True)
class AgentRow:
    step: FlowStep
    state: State  # what it is doing now, for the badge (runs.labels owns the words)
    position: int | None  # its place in its model's line for a slot, when in it
    numbers: Numbers  # tokens kept and spent, cache reuse, decode speed
    started: Moment | None
    finished: Moment | None
    elapsed: str  # "2.2 s", ticking in the browser while the agent is active
    first_token: str
    tokens_in: str
    tokens_out: str
    rate: str  # decode tokens/s: the server's own figure when it sends one, else ours
    rate_source: str  # which of the two, for the cell's title
    current: str  # the tool it is using now
    can_retry: bool
    # host:port of the model server of its slot, or of its last turn; shown only when its
    # run may use several ("" otherwise).
    endpoint: str = ""


@dataclass(frozen=True, kw_only=True)
class Header:
    run: FlowRun
    state: State  # the run's badge: runs.labels.run_state
    demo: bool
    counts: list[tuple[str, int]]
    total: int
    bar: list[tuple[str, float]]  # progress bar: (group, percent)
    started: Moment | None
    finished: Moment | None
    now: Moment
    elapsed: str
    tokens_in: str
    tokens_out: str
    rate: str
    can_retry_cancelled: bool
    waiting: str  # why a pending run has not started (the owner's cap), "" otherwise
    slot_warning: str  # the slot cap exceeds the server's own slots, "" otherwise
    # Prompt tokens the server reused from its cache, summed over every agent's turns so far
    # (runs.engine.agent.counters.CacheSaving); None until a server reports it.
    cache_saved: CacheSaving | None = None


@dataclass(frozen=True, kw_only=True)
class PaneState:
    run: FlowRun
    header: Header
    rows: list[AgentRow]
    timeline: timeline.Timeline

    def rows_for(self, step_ids: set[int]) -> list[AgentRow]:
        return [row for row in self.rows if row.step.id in step_ids]


def pane_state(run: FlowRun, steps: list[FlowStep] | None = None) -> PaneState:
    """The run as the pane shows it, from one read of its steps (and their event marks)."""
    # An agent's output (its whole final message) is in the report, not in the pane.
    steps = steps if steps is not None else list(run.steps.defer("output"))
    now = timezone.now()
    lanes = timeline.for_run(run, steps, at=now)
    waiting = any(s.waits_for_slot for s in steps)
    line = queue_line(run) if waiting else None
    positions = line.places if line else {}
    slot_waits = waits.slot_waits(run, line) if line else {}
    statuses = {s.key: s.status for s in steps}
    titles = {s.key: s.title for s in steps}
    held = fairness.waiting_reason(run)
    model_seconds = {lane.step.id: lane.totals.get("model", 0.0) for lane in lanes.lanes}
    down = _down_endpoints(run, steps, now)
    rows = []
    for step in steps:
        state = step_state(
            step,
            positions.get(step.id),
            now,
            waiting_on=waiting_on(step.depends_on, statuses, titles),
            held=held,
            wait=slot_waits.get(step.id),
        )
        row = _row(run, step, state, positions.get(step.id), model_seconds[step.id])
        if row.endpoint and step.endpoint in down and step.status in ACTIVE_STEP:
            # Its last turn's server went away: its next turn goes to another one.
            row = dataclasses.replace(row, endpoint=f"{row.endpoint} (down)")
        rows.append(row)
    header = _header(run, steps, now, held)
    return PaneState(run=run, header=header, rows=rows, timeline=lanes)


def _row(
    run: FlowRun, step: FlowStep, state: State, position: int | None, model_seconds: float
) -> AgentRow:
    first_token = step.first_token_seconds
    numbers = step_numbers(step)
    rate = numbers.decode_rate
    rate_source = "decode speed the model server measured"
    if rate is None:
        rate = step.tokens_out / model_seconds if model_seconds >= MIN_RATE_SECONDS else None
        rate_source = "output tokens per second while the model generated"
    current = step.last_tool if step.status in ACTIVE_STEP else ""
    return AgentRow(
        step=step,
        state=state,
        position=position,
        numbers=numbers,
        started=moment(step.started_at),
        finished=moment(step.finished_at if step.started_at else None),
        elapsed=_seconds(step.elapsed_seconds),
        first_token=_seconds(first_token),
        tokens_in=f"{step.tokens_in:,}",
        tokens_out=f"{step.tokens_out:,}",
        rate=rate_words(rate),
        rate_source=rate_source,
        current=current,
        can_retry=run.is_finished and step.status in (StepStatus.FAILED, StepStatus.SKIPPED),
        endpoint=host_port(step.endpoint) if "," in run.endpoint_url else "",
    )


def _down_endpoints(run: FlowRun, steps: list[FlowStep], now: datetime) -> set[str]:
    """The endpoints of this run's active steps that no turn goes to now (one read, and only
    for a run on several endpoints: the pane names an endpoint only then)."""
    if "," not in run.endpoint_url:
        return set()
    used = {s.endpoint for s in steps if s.endpoint and s.status in ACTIVE_STEP}
    if not used:
        return set()
    down = ModelEndpoint.objects.filter(url__in=used, down_until__gt=now)
    return set(down.values_list("url", flat=True))


def _header(run: FlowRun, steps: list[FlowStep], now: datetime, held: str) -> Header:
    """Token totals are summed live from the steps until the run writes its own."""
    if run.is_finished:
        tokens_in, tokens_out = run.tokens_in, run.tokens_out
    else:
        tokens_in = sum(s.tokens_in for s in steps)
        tokens_out = sum(s.tokens_out for s in steps)
    counts = progress_counts([s.status for s in steps])
    total = len(steps)
    elapsed = run.active_seconds(now)  # idle gaps before retries left out
    rate = tokens_out / elapsed if elapsed and elapsed >= MIN_RATE_SECONDS else None
    cancelled = any(s.status == StepStatus.CANCELLED for s in steps)
    return Header(
        run=run,
        state=run_state(run, steps, held=held),
        demo=run.is_demo,
        counts=counts,
        total=total,
        bar=[(group, count / total * 100) for group, count in counts if count and total],
        started=moment(run.started_at),
        finished=moment(run.finished_at),
        now=Moment.at(now),
        elapsed=_seconds(elapsed),
        tokens_in=f"{tokens_in:,}",
        tokens_out=f"{tokens_out:,}",
        rate=rate_words(rate),
        can_retry_cancelled=run.status == RunStatus.CANCELLED and cancelled,
        waiting=held,
        slot_warning=run.slot_warning,
        cache_saved=CacheSaving.of(s.counters for s in steps),
    )


def _never() -> Moment:  # pragma: no cover - moment(a datetime) is never None
    raise AssertionError("now has no moment")


def _seconds(value: float | None) -> str:
    return duration(value, tenths=True)


def page_context(run: FlowRun) -> dict[str, Any]:
    """The whole pane page."""
    state = pane_state(run)
    return {
        "run": run,
        "header": state.header,
        "rows": state.rows,
        "timeline": state.timeline,
        "report_html": report_html(run),
    }


def report_html(run: FlowRun) -> str:
    """The report with its verified citations linked to the lines the run checked."""
    return evidence.report_html(run) if run.report else ""


def render_socket_error(message: str) -> str:
    """The pane's notice line, saying why a message on its socket was ignored."""
    return render_to_string(f"{PANE}#socket-error", {"message": message, "oob": True})


def render_snapshot(run: FlowRun) -> str:
    """Everything, as OOB swaps: what a WebSocket sends on connect and on a full redraw."""
    return "".join(html for _, html in snapshot_parts(run))


def snapshot_parts(run: FlowRun) -> list[tuple[str, str]]:
    """Every part of the pane (the header's, the timeline, every row's, the report) as
    (element id, OOB fragment) pairs. The page was rendered from the same partials, so even
    a whole redraw swaps parts inside the header and the rows, never them: a person's focus
    on Cancel or on an agent row survives the socket connecting, and a cancel or a retry."""
    state = pane_state(run)
    return _parts(run, state, state.rows, report=True)


# The header's parts a live update may swap, each a named partial with a stable id.
HEADER_PARTS = (
    "run-state",
    "run-progress",
    "run-elapsed",
    "run-metrics",
    "run-notes",
    "run-actions",
    "run-clock",
)
ROW_PARTS = ("agent-who", "agent-metrics", "agent-actions")


def render_update(run: FlowRun, step_ids: set[int]) -> str:
    """The header's parts, the timeline and the changed rows' parts."""
    return "".join(html for _, html in update_parts(run, step_ids))


def update_parts(run: FlowRun, step_ids: set[int]) -> list[tuple[str, str]]:
    """A live update as (element id, OOB fragment) pairs: the header's parts, the timeline,
    the changed rows' parts (every row's once the run has ended: skips, retry buttons) and
    the report when done. The socket sends only the parts whose markup changed since it last
    sent them, and none of them is the header or a row as a whole, so focus and selection
    inside the pane survive a run that streams."""
    state = pane_state(run)
    if run.is_finished:
        return _parts(run, state, state.rows, report=True)
    # A waiter's words (its place in line, its estimated wait) change with the other agents'
    # turns, not with its own: its words are drawn again with every update, and the socket
    # sends them only when they changed.
    waiters = [
        row for row in state.rows if row.step.id not in step_ids and row.state.key == StepPhase.SLOT
    ]
    return _parts(run, state, state.rows_for(step_ids), report=False, words_of=waiters)


def _parts(
    run: FlowRun,
    state: PaneState,
    rows: list[AgentRow],
    *,
    report: bool,
    words_of: Sequence[AgentRow] = (),
) -> list[tuple[str, str]]:
    parts = header_parts(state)
    parts.append(("run-timeline", render_timeline(state)))
    drawn = [(row, ROW_PARTS) for row in rows] + [(row, ("agent-who",)) for row in words_of]
    for row, names in drawn:
        context = {"row": row, "run": state.run, "part": True}
        for name in names:
            html = render_to_string(f"{PANE}#{name}", context)
            parts.append((f"{name}-{row.step.id}", html))
    if report:
        parts.append(("report", render_report(run)))
    return parts


def header_parts(state: PaneState) -> list[tuple[str, str]]:
    context = {"run": state.run, "header": state.header, "part": True}
    return [(name, render_to_string(f"{PANE}#{name}", context)) for name in HEADER_PARTS]


def render_header(state: PaneState, *, oob: bool = True) -> str:
    context = {"run": state.run, "header": state.header, "oob": oob}
    return render_to_string(f"{PANE}#run-header", context)


def render_timeline(state: PaneState, *, oob: bool = True) -> str:
    context = {"run": state.run, "timeline": state.timeline, "oob": oob}
    return render_to_string(f"{PANE}#run-timeline", context)


def render_report(run: FlowRun, *, oob: bool = True) -> str:
    context = {"run": run, "report_html": report_html(run), "oob": oob}
    return render_to_string(f"{PANE}#report", context)


def render_rows(state: PaneState, rows: list[AgentRow], *, oob: bool = True) -> str:
    return "".join(
        render_to_string(f"{PANE}#agent-summary", {"row": row, "run": state.run, "oob": oob})
        for row in rows
    )


def render_events(step_id: int, events: list[dict[str, Any]]) -> str:
    """Events appended to one agent's stream (OOB beforeend), ids kept for resuming."""
    return render_to_string(
        f"{PANE}#stream-append", {"step_id": step_id, "events": [_shape(e) for e in events]}
    )


def stored_events(step_id: int, after_id: int = 0, limit: int = 5000) -> list[dict[str, Any]]:
    rows = AgentEvent.objects.filter(step_id=step_id, id__gt=after_id).order_by("id")[:limit]
    return [event.as_message() for event in rows]


def _shape(event: dict[str, Any]) -> dict[str, Any]:
    payload = event.get("payload") or {}
    # The event's own id and kind win over payload keys (a tool call carries an "id" too).
    shaped = {**payload, "id": event["id"], "kind": event["kind"]}
    if event["kind"] == "status":
        shaped["words"] = event_words(payload)
    return shaped
