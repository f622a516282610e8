"""No byte from a model or a file breaks storage, and cut-offs are honest (issue 10, items 2-3).

A model with random weights streams NUL, control characters and unpaired surrogates; files
hold them too. They are replaced visibly where events, checkpoints and step outcomes are
written. A write the database refuses for what it holds fails the step with the reason; an
attempt cap ends a step that keeps losing its worker. An answer cut at the output limit is
marked so, and a tool call cut mid-arguments is never run.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from runs.demo.faults import fault_plan
from runs.demo.server import HOSTILE_TEXT
from runs.engine.agent.context import load_context
from runs.engine.agent.events import EventSink, StorageRefused
from runs.engine.dbthread import db_async
from runs.engine.queue import scheduler
from runs.engine.storable import clean_text, is_outage, storable
from runs.engine.worker import Engine
from runs.live import pane_state, render_events, render_rows, stored_events
from runs.models import AgentEvent, AgentSession, FlowRun, FlowStep, RunStatus, StepStatus
from runs.services import launch_run

pytestmark = pytest.mark.django_db(transaction=True)

# What must never reach storage or the pane raw: C0 controls but tab, newline and carriage
# return; DEL; C1 controls; unpaired surrogates.
RAW = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates included


def test_every_character_storage_cannot_carry_is_replaced_by_a_visible_mark():
    """NUL and C0 become their Control Picture, DEL ␡, C1 and lone surrogates U+FFFD."""
    assert clean_text("a\x00b") == "a␀b"
    assert clean_text("\x01\x07\x1b[31m") == "␁␇␛[31m"
    assert clean_text("del\x7f c1\x85 lone\ud800") == "del␡ c1\ufffd lone\ufffd"
    assert clean_text("tab\tnew\nline\r ok é 漢 🙂") == "tab\tnew\nline\r ok é 漢 🙂"
    nested = storable({"k\x00": ["x\x01", {"y": "\ud83d"}], "n": 1, "none": None})
    assert nested == {"k␀": ["x␁", {"y": "\ufffd"}], "n": 1, "none": None}


@hsettings(max_examples=300, deadline=None)
@given(st.text(alphabet=ANY_CHARACTER, max_size=200))
def test_any_text_made_storable_is_accepted_by_postgresql_text_and_jsonb(text: str):
    """Whatever the model or a file sends, PostgreSQL stores it once it is cleaned."""
    cleaned = clean_text(text)
    assert not RAW.search(cleaned)
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text, %s::jsonb", [cleaned, json.dumps({"t": cleaned})])
        as_text, as_json = cursor.fetchone()
    assert as_text == cleaned
    assert json.loads(as_json) == {"t": cleaned}


def test_a_write_error_is_an_outage_only_when_the_database_is_away():
    assert is_outage(OperationalError("server closed the connection unexpectedly"))
    assert not is_outage(IntegrityError("duplicate key value"))
    assert not is_outage(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))


def test_a_model_streaming_nul_and_control_bytes_is_stored_visibly_and_the_run_succeeds(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """Every agent's text, reasoning, output, checkpoint and pane fragment holds the marks."""
    scripted_model.faults = fault_plan("nul_text")
    assert "\x00" in HOSTILE_TEXT and "\ud800" in HOSTILE_TEXT
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    events = list(AgentEvent.objects.filter(step__run=run))
    assert not [text for e in events for text in _strings(e.payload) if RAW.search(text)]
    reasoning = "".join(e.payload.get("text", "") for e in events if e.kind == "reasoning")
    assert "␀ nul ␁␂␇ bell ␛[31mred" in reasoning
    assert "lone\ufffd end" in reasoning
    outputs = [s.output for s in run.steps.all()]
    assert outputs, "the run has steps whose outputs to check"
    assert all("␀" in output and not RAW.search(output) for output in outputs)
    assert AgentSession.objects.filter(step__run=run).exists()
    for session in AgentSession.objects.filter(step__run=run):
        assert not [text for text in _strings(session.transcript) if RAW.search(text)]
    for step in run.steps.all():
        html = render_events(step.id, stored_events(step.id)) + _rendered_row(run, step)
        assert not RAW.search(html)
    assert not RAW.search(run.report)
    print(f"{len(events)} events, {len(outputs)} outputs, 0 raw control characters stored")


def test_a_nul_in_a_file_past_its_first_8_kb_reaches_neither_the_model_nor_storage(
    run_to_end, scripted_model: Any, target_dir: Path
):
    """A NUL anywhere makes a file binary (runs.engine.target.confinement: the safety layer's rule,
    which wins over letting it through marked): the run succeeds without it."""
    hidden = target_dir / "app" / "legacy.py"
    hidden.write_text("# filler line to get past the binary sniff\n" * 200)
    with hidden.open("ab") as handle:
        handle.write(b'password = "abc\x00def"  # a NUL inside a text file\n')
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    results = AgentEvent.objects.filter(step__run=run, kind="tool_result")
    assert results.exists()
    assert not [r for r in results if "abc\u2400def" in r.payload.get("content", "")]
    sent = [m for r in scripted_model.requests for m in r["messages"] if m["role"] == "tool"]
    assert sent and not any("\x00" in m["content"] for m in sent), "no NUL reached the model"


def test_a_batch_of_events_the_database_refuses_fails_the_step_with_the_reason(
    scripted_model: Any, target_dir: Path
):
    """A real IntegrityError (a planted event takes the attempt's first seq): the step fails
    naming it, at once, instead of flushing the same batch for ever; the run still reports."""
    run = launch_run(flow="code-review", target=str(target_dir))

    async def go() -> None:
        engine = Engine(run_id=run.id)
        [step_id] = await db_async(scheduler.claim_steps)(engine.worker_id, 1, run_id=run.id)
        ctx = await db_async(load_context)(step_id, engine.worker_id)
        assert ctx is not None
        await db_async(AgentEvent.objects.create)(
            session_id=ctx.session_id, step_id=step_id, seq=1, kind="status", payload={}
        )
        engine._start(step_id, ctx)
        await asyncio.wait_for(engine.run(), 60)

    asyncio.run(go())
    run.refresh_from_db()
    failed = run.steps.get(status=StepStatus.FAILED)
    assert failed.error.startswith("the agent's events could not be stored: IntegrityError")
    assert "agent_event_seq_unique" in failed.error
    assert failed.attempt == 1, "failed at once, not re-run after its lease"
    assert run.status == RunStatus.FINISHED_WITH_FAILURES
    assert failed.key in run.report_data["failed_agents"]


def test_a_refused_flush_drops_the_batch_and_says_why(finished_run: FlowRun):
    """The sink neither retries a refused batch nor advances its seq."""
    step = finished_run.steps.get(key="security")
    session = step.sessions.get()

    async def go() -> EventSink:
        sink = EventSink(finished_run.id, step.id, session.id, next_seq=1)
        sink.emit("text", text="collides with seq 1")
        with pytest.raises(StorageRefused, match="IntegrityError"):
            await sink.flush()
        await sink.flush()  # nothing left to write
        return sink

    sink = asyncio.run(go())
    assert sink.next_seq == 1 and not sink._pending
    assert "IntegrityError" in sink.refused


def _strings(value: Any) -> list[str]:
    """Every string in a JSON-like value, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*_strings(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _lapse(step_id: int) -> None:
    """The step's worker died: its lease is over."""
    FlowStep.objects.filter(id=step_id).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )


@pytest.mark.parametrize("released", [False, True], ids=["lease lapsed", "worker stopped"])
def test_a_step_that_keeps_losing_its_worker_fails_after_the_attempt_cap_naming_the_last_end(
    run_to_end, settings: Any, scripted_model: Any, target_dir: Path, released: bool
):
    settings.ORCHESTRATOR_MAX_ATTEMPTS = 3
    run = launch_run(flow="code-review", target=str(target_dir))
    step = run.steps.get(key="security")
    others = run.steps.filter(status=StepStatus.READY).exclude(id=step.id)
    for attempt in range(1, 4):
        claimed = scheduler.claim_steps(f"dying-{attempt}", 10, run_id=run.id)
        assert step.id in claimed
        FlowStep.objects.filter(id__in=others).update(status=StepStatus.READY, attempt=0)
        assert load_context(step.id, f"dying-{attempt}") is not None
        if attempt == 3 and released:
            scheduler.release_step(step.id, f"dying-{attempt}")
        _lapse(step.id)
    run = run_to_end(run)
    step.refresh_from_db()
    assert step.status == StepStatus.FAILED
    assert step.error.startswith("gave up after 3 attempts without an outcome")
    assert "ORCHESTRATOR_MAX_ATTEMPTS=3" in step.error
    last_end = "its worker was stopped" if released else "its lease lapsed"
    assert step.error.endswith(last_end)
    assert not [r for r in scripted_model.requests if "Agent role: security" in str(r)]
    assert run.status == RunStatus.FINISHED_WITH_FAILURES  # the other lenses and the report went on


def test_an_answer_cut_at_the_output_limit_is_marked_in_the_stream_the_step_and_the_method(
    run_to_end, scripted_model: Any, target_dir: Path
):
    scripted_model.faults = fault_plan("length:role=synthesizer")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    synthesis = run.steps.get(key="synthesis")
    assert synthesis.status == StepStatus.SUCCEEDED and synthesis.truncated
    marks = AgentEvent.objects.filter(step=synthesis, kind="status", payload__state="truncated")
    assert "cut off at the output limit" in marks.get().payload["detail"]
    row = next(line for line in run.report.splitlines() if line.startswith("| synthesis |"))
    assert "| succeeded (cut off) |" in row
    assert "\n- synthesis: answer cut off at the output limit" in run.report
    assert not run.steps.exclude(key="synthesis").filter(truncated=True).exists()


def test_a_tool_call_cut_off_is_never_run_and_the_agent_gets_another_turn(
    run_to_end, scripted_model: Any, target_dir: Path
):
    scripted_model.faults = fault_plan("cut_tool_call:role=security:times=1")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    assert security.status == StepStatus.SUCCEEDED, security.error
    results = list(AgentEvent.objects.filter(step=security, kind="tool_result").order_by("seq"))
    assert results[0].payload["summary"] == "list_dir cut off; not run"
    assert results[0].payload["ok"] is False
    assert all(r.payload["ok"] for r in results[1:])
    transcript = security.sessions.get().transcript
    cut = transcript[2]
    assert cut["role"] == "assistant" and cut["tool_calls"][0]["function"]["arguments"] == "{}"
    assert "was not run" in transcript[3]["content"]


def test_a_tool_call_cut_off_twice_in_a_row_fails_the_step_with_the_reason(
    run_to_end, scripted_model: Any, target_dir: Path
):
    scripted_model.faults = fault_plan("cut_tool_call:role=security")
    run = run_to_end(launch_run(flow="code-review", target=str(target_dir)))
    security = run.steps.get(key="security")
    assert security.status == StepStatus.FAILED
    assert "tool call was cut off at the output limit" in security.error
    assert "twice in a row and was never run" in security.error
    ran = AgentEvent.objects.filter(step=security, kind="tool_result", payload__ok=True)
    assert not ran.exists(), "no cut-off call ran"


def _rendered_row(run: FlowRun, step: FlowStep) -> str:
    pane = pane_state(run, [step])
    return render_rows(pane, pane.rows)
