"""Turning a finished run's steps into its report, stored on the run."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from flows.citations import annotate, check_all
from flows.models import StepKind
from flows.report import (
    AgentLine,
    EvidenceFacts,
    MethodFacts,
    Verdict,
    final_confidence,
    parse_findings,
    parse_verdict,
    render_method,
    render_report,
)
from runs.models import TERMINAL_STEP, FlowRun, FlowStep, RunStatus, StepStatus

log = logging.getLogger(__name__)


def finalize_run(run_id: UUID) -> bool:
    """Write the report and final status of a run whose steps are all finished.

    Called after the last step's transaction commits, after a cancel, and by every engine's
    periodic sweep (so a crash between the two still ends with a report). Idempotent: a run
    that has its report, or whose steps moved meanwhile (a retry), is left alone.
    """
    run = FlowRun.objects.filter(id=run_id, finished_at__isnull=True).first()
    if run is None:
        return False
    steps = list(run.steps.order_by("position"))
    if any(step.status not in TERMINAL_STEP for step in steps):
        return False
    status_seen = run.status
    try:
        _write_report(run, steps)
    except Exception as exc:  # a report that cannot be built must still end the run
        log.exception("the report of run %s could not be built", run_id)
        run.status = RunStatus.CANCELLED if run.status == RunStatus.CANCELLED else RunStatus.FAILED
        run.error = f"the report could not be produced ({type(exc).__name__})"
        run.summary, run.confidence, run.report = run.error, "low", ""
    with transaction.atomic():
        locked = FlowRun.objects.select_for_update().get(id=run_id)
        current = [(s.id, s.status, s.finished_at) for s in locked.steps.order_by("position")]
        if (
            locked.finished_at is not None
            or locked.status != status_seen
            or current != [(s.id, s.status, s.finished_at) for s in steps]
        ):
            return False
        run.finished_at = timezone.now()
        run.save()
    return True


def stranded_runs(run_id: UUID | None = None) -> list[UUID]:
    """Runs whose steps are all finished but which have no report yet."""
    runs = FlowRun.objects.filter(finished_at__isnull=True).exclude(
        steps__status__in=[s for s in StepStatus if s not in TERMINAL_STEP]
    )
    if run_id is not None:
        runs = runs.filter(id=run_id)
    return list(runs.values_list("id", flat=True))


def _write_report(run: FlowRun, steps: list[FlowStep]) -> None:
    """Fill in the run's report, verdict and totals (the caller saves it)."""
    by_kind = {step.kind: step for step in steps if step.kind != StepKind.SPECIALIST}
    synthesis = by_kind.get(StepKind.SYNTHESIZER)
    validation = by_kind.get(StepKind.VALIDATOR)
    failed = [s.key for s in steps if s.status in (StepStatus.FAILED, StepStatus.SKIPPED)]
    method = method_facts(run, steps)
    body = synthesis.output if synthesis and synthesis.status == StepStatus.SUCCEEDED else ""
    checks = check_all(body, Path(run.target))
    verified = sum(c.verified for c in checks)
    facts = EvidenceFacts.from_report(
        body, verified=verified, broken=len(checks) - verified, failed=failed
    )
    body = annotate(body, checks)

    if run.status == RunStatus.CANCELLED:
        verdict = Verdict(
            summary="The run was cancelled before it finished; this report is partial.",
            confidence="low",
            reasons="cancelled",
        )
    elif validation is not None and validation.status == StepStatus.SUCCEEDED:
        verdict = final_confidence(parse_verdict(validation.output), facts)
        run.status = RunStatus.SUCCEEDED
    else:
        verdict = Verdict(
            summary="The run failed: " + _failure_sentence(steps),
            confidence="low",
            reasons="; ".join(f"{s.key}: {s.error or s.status}" for s in steps if s.key in failed),
        )
        run.status = RunStatus.FAILED
        run.error = _failure_sentence(steps)

    run.summary = verdict.summary
    run.confidence = verdict.confidence
    run.report = render_report(verdict=verdict, body=body, method=method)
    run.report_data = {
        "summary": verdict.summary,
        "confidence": verdict.confidence,
        "reasons": verdict.reasons,
        "body": body,
        "failed_agents": failed,
        "findings": [asdict(finding) for finding in parse_findings(body)],
        "citations": [
            {"citation": c.citation.label, "quote": c.citation.quote, "status": c.status.value}
            for c in checks
        ],
        "evidence": {
            "verified": facts.verified,
            "broken": facts.broken,
            "single_source": facts.single_source,
            "no_evidence": facts.no_evidence,
        },
        "method": render_method(method),
    }
    run.tokens_in = sum(s.tokens_in for s in steps)
    run.tokens_out = sum(s.tokens_out for s in steps)


def method_facts(run: FlowRun, steps: list[FlowStep]) -> MethodFacts:
    root = Path(run.target)
    checked = {s.key: check_all(s.output, root) for s in steps}
    return MethodFacts(
        flow=run.flow,
        band=run.band,
        fast=run.fast,
        model=run.model,
        endpoint=run.endpoint_url,
        slots=_slots(run),
        agents=[
            AgentLine(
                key=s.key,
                role=s.role,
                status=s.status,
                attempts=s.attempt,
                tokens_in=s.tokens_in,
                tokens_out=s.tokens_out,
                tool_calls=s.tool_calls,
                seconds=s.elapsed_seconds,
                error=s.error if s.status == StepStatus.FAILED else "",
                citations_verified=sum(c.verified for c in checked[s.key]),
                citations_broken=sum(not c.verified for c in checked[s.key]),
                spent_in=max(s.tokens_spent_in, s.tokens_in),
                spent_out=max(s.tokens_spent_out, s.tokens_out),
                cache_reuse=s.cache_reuse,
                decode_rate=s.decode_rate,
                truncated=s.truncated,
            )
            for s in steps
        ],
    )


def _slots(run: FlowRun) -> str:
    if not run.slots:
        return ""
    text = f"{run.slots} slot{'s' if run.slots != 1 else ''}"
    if run.server_slots is not None and run.server_slots != run.slots:
        text += f" (the server has {run.server_slots})"
    return text


def _failure_sentence(steps: list[FlowStep]) -> str:
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    if failed:
        names = ", ".join(f"{s.key} ({s.error or 'no reason given'})" for s in failed)
        return f"agent(s) failed: {names}."
    return "the report could not be produced."
