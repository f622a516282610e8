"""Turning a finished run's steps into its report, stored on the run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

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


def finalize_run_if_done(run: FlowRun) -> bool:
    """When no step can move any more, write the report and the run's final status."""
    steps = list(run.steps.all())
    if any(step.status not in TERMINAL_STEP for step in steps):
        return False
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
    run.finished_at = timezone.now()
    run.save()
    return True


def method_facts(run: FlowRun, steps: list[FlowStep]) -> MethodFacts:
    root = Path(run.target)
    checked = {s.key: check_all(s.output, root) for s in steps}
    return MethodFacts(
        flow=run.flow,
        band=run.band,
        fast=run.fast,
        model=run.model,
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
            )
            for s in steps
        ],
    )


def _failure_sentence(steps: list[FlowStep]) -> str:
    failed = [s for s in steps if s.status == StepStatus.FAILED]
    if failed:
        names = ", ".join(f"{s.key} ({s.error or 'no reason given'})" for s in failed)
        return f"agent(s) failed: {names}."
    return "the report could not be produced."
