"""A finished run written straight into the database, as the engine would have left it:
specialists queueing for K model slots turn by turn, tools between turns, then the
synthesizer and the validator. For pictures and benchmarks of big runs without a model.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

SPECIALISTS = [
    "Correctness",
    "Security",
    "Performance",
    "Tests",
    "API design",
    "Data model",
    "Concurrency",
    "Error handling",
    "Dependencies",
    "Configuration",
    "Logging",
    "Documentation",
    "Accessibility",
    "Localisation",
    "Build",
    "Migrations",
    "Caching",
    "Observability",
]


@dataclass
class Agent:
    key: str
    title: str
    kind: str
    turns: list[tuple[float, float]]  # (model seconds, tool seconds after it)
    depends_on: list[str] = field(default_factory=list)
    # What the simulation decides, in seconds from the run's start:
    queued: float = 0.0
    started: float | None = None
    first_byte: float | None = None
    finished: float = 0.0
    # (kind, at, extra) for the stored events, in order.
    marks: list[tuple[str, float, dict[str, Any]]] = field(default_factory=list)
    text_spans: list[tuple[float, float]] = field(default_factory=list)


def plan(agents_count: int, *, slots: int = 4, first_byte: float = 0.8) -> list[Agent]:
    """Specialists (all but two), then a synthesizer and a validator, with slot waits."""
    specialists = agents_count - 2
    agents = []
    for i in range(specialists):
        title = SPECIALISTS[i % len(SPECIALISTS)] + ("" if i < len(SPECIALISTS) else f" {i}")
        turns = [(6.0 + (i * 7) % 9, 1.5 + (i % 3)) for _ in range(2 + i % 3)] + [(10.0 + i % 5, 0)]
        agents.append(Agent(key=f"s{i}", title=title, kind="specialist", turns=turns))
    keys = [a.key for a in agents]
    agents.append(
        Agent(
            key="synthesis",
            title="Synthesizer",
            kind="synthesizer",
            turns=[(25.0, 0)],
            depends_on=keys,
        )
    )
    agents.append(
        Agent(
            key="validation",
            title="Validator",
            kind="validator",
            turns=[(9.0, 0)],
            depends_on=["synthesis"],
        )
    )
    _simulate(agents, slots, first_byte)
    return agents


def _simulate(agents: list[Agent], slots: int, first_byte: float) -> None:
    """First come (by claim), first served model slots, held for one turn at a time, as the
    engine does; tools run without a slot."""
    by_key = {a.key: a for a in agents}
    free = slots
    order = 0
    events: list[tuple[float, int, str, str, int]] = []  # (time, order, ask|release, key, turn)
    waiting: list[tuple[float, int, str, int]] = []  # (claimed at, order, key, turn)
    done: set[str] = set()

    def push(moment: float, what: str, key: str, turn: int) -> None:
        nonlocal order
        heapq.heappush(events, (moment, order, what, key, turn))
        order += 1

    for i, agent in enumerate(a for a in agents if not a.depends_on):
        agent.queued = 0.02 * i
        push(agent.queued, "ask", agent.key, 0)
    while events:
        now = events[0][0]
        asked = []
        while events and events[0][0] <= now:
            _, n, what, key, turn = heapq.heappop(events)
            agent = by_key[key]
            if what == "ask":
                waiting.append((agent.queued, n, key, turn))
                asked.append(key)
                continue
            free += 1
            tools = agent.turns[turn][1]
            if turn + 1 < len(agent.turns):
                agent.marks.append(("tool_call", now, {}))
                agent.marks.append(("tool_result", now + tools, {}))
                push(now + tools, "ask", key, turn + 1)
                continue
            agent.finished = now
            done.add(key)
            for other in agents:
                unclaimed = other.depends_on and other.queued == 0.0
                if unclaimed and all(d in done for d in other.depends_on):
                    other.queued = now + 0.01
                    push(other.queued, "ask", other.key, 0)
        waiting.sort()
        while free > 0 and waiting:
            _, _, key, turn = waiting.pop(0)
            free -= 1
            agent = by_key[key]
            gen = agent.turns[turn][0]
            if turn == 0:
                agent.started, agent.first_byte = now, now + first_byte
                begin = now + first_byte
            else:
                if agent.marks and agent.marks[-1][2].get("state") == "queued":
                    agent.marks.append(("status", now, {"state": "running"}))
                begin = now + first_byte / 2
            agent.text_spans.append((begin, begin + gen))
            push(begin + gen, "release", key, turn)
        for place, (_, _, key, turn) in enumerate(waiting, start=1):
            if key in asked and turn > 0:
                by_key[key].marks.append(("status", now, {"state": "queued", "position": place}))


@contextlib.contextmanager
def _stamped_events() -> Iterator[None]:
    """Events keep the created_at given here (normally the database time of their INSERT)."""
    from runs.models import AgentEvent

    stamp = AgentEvent._meta.get_field("created_at")
    saved = stamp.auto_now_add  # type: ignore[attr-defined]
    stamp.auto_now_add = False  # type: ignore[attr-defined]
    try:
        yield
    finally:
        stamp.auto_now_add = saved  # type: ignore[attr-defined]


def fabricate_run(
    owner: Any,
    target: str,
    *,
    agents: int = 20,
    tokens: int = 1_000_000,
    per_event: int = 25,
    slots: int = 4,
    started: datetime | None = None,
    model: str = "demo/scripted",
) -> Any:
    """A finished run of `agents` agents that streamed about `tokens` output tokens."""
    from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep

    origin = started or timezone.now() - timedelta(hours=1)

    def at(seconds: float) -> datetime:
        return origin + timedelta(seconds=seconds)

    agents_plan = plan(agents, slots=slots)
    end = max(a.finished for a in agents_plan)
    per_agent = tokens // agents
    run = FlowRun.objects.create(
        owner=owner,
        flow="code-review",
        band="large",
        target=target,
        focus="the whole project, every angle",
        model=model,
        status="succeeded",
        report="## Summary\nTwenty agents looked at every angle.\n\n## Confidence: medium\n"
        "Every finding cites a checked line.\n",
        summary="Twenty agents looked at every angle.",
        confidence="medium",
        tokens_in=per_agent * agents * 3,
        tokens_out=per_agent * agents,
    )
    FlowRun.objects.filter(id=run.id).update(
        created_at=origin, started_at=at(0), finished_at=at(end)
    )
    run.refresh_from_db()
    with _stamped_events():
        for position, agent in enumerate(agents_plan):
            step = FlowStep.objects.create(
                run=run,
                key=agent.key,
                role=agent.kind,
                title=agent.title,
                kind=agent.kind,
                position=position,
                depends_on=agent.depends_on,
                status="succeeded",
                attempt=1,
                queued_at=at(agent.queued),
                started_at=at(agent.started or 0),
                first_token_at=at(agent.first_byte or 0),
                finished_at=at(agent.finished),
                tokens_in=per_agent * 3,
                tokens_out=per_agent,
                tool_calls=len(agent.turns) - 1,
                last_tool="read_file app/views.py:1-40",
                output="done",
            )
            session = AgentSession.objects.create(
                step=step, attempt=1, worker="fabricated", backend="b", model=model
            )
            AgentEvent.objects.bulk_create(
                _events(step, session, agent, per_agent // per_event, per_event, at),
                batch_size=5000,
            )
    return run


def _events(
    step: Any, session: Any, agent: Agent, count: int, per_event: int, at: Any
) -> Iterator[Any]:
    """The agent's stream: its text spread over its model turns, marks where they happened."""
    from runs.models import AgentEvent

    spans = agent.text_spans
    per_span = max(1, count // max(1, len(spans)))
    timed: list[tuple[float, str, dict[str, Any]]] = [
        (agent.started or 0.0, "status", {"state": "waiting_first_byte"}),
        (agent.first_byte or 0.0, "status", {"state": "running"}),
    ]
    for begin, end in spans:
        for n in range(per_span):
            timed.append(
                (begin + (end - begin) * n / per_span, "text", {"text": "token " * per_event})
            )
    for kind, moment, extra in agent.marks:
        payload = (
            {"id": "call", "name": "read_file", "arguments": "{}"} if kind == "tool_call" else extra
        )
        if kind == "tool_result":
            payload = {
                "id": "call",
                "name": "read_file",
                "ok": True,
                "summary": "read",
                "content": "x",
            }
        timed.append((moment, kind, payload))
    timed.sort(key=lambda item: item[0])
    for seq, (moment, kind, payload) in enumerate(timed, start=1):
        yield AgentEvent(
            session=session,
            step=step,
            seq=seq,
            kind=kind,
            payload=payload,
            created_at=at(moment),
        )
