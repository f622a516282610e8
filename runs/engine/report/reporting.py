"""Turning a finished run's steps into its report, stored on the run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import PurePosixPath
from types import SimpleNamespace
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from flows.citations import CheckStatus, CitationCheck, annotate, check_all
from flows.finding_ids import render_comparison
from flows.findings import read_findings
from flows.model_text import clean
from flows.models import StepKind
from flows.report import (
    CONFIDENCE_EXPLAINED,
    AgentLine,
    EvidenceFacts,
    MethodFacts,
    Verdict,
    citations_by_finding,
    final_confidence,
    neutralise,
    parse_verdict,
    render_method,
    render_report,
)
from runs import server_slots as slot_facts
from runs.engine.agent.counters import CacheSaving
from runs.engine.report import report_evidence
from runs.engine.target import readonly_proof
from runs.engine.target.confinement import (
    Confinement,
    NoSuchFile,
    OutsideTarget,
    Refused,
    SecretFile,
    TargetChanged,
    open_target,
)
from runs.engine.target.search import Deadline, Walk
from runs.engine.target.secrets import is_secret_name, redact
from runs.engine.web.report import WebEvidence
from runs.models import TERMINAL_STEP, FlowRun, FlowStep, RunStatus, StepStatus

MAX_CITED_FILE_BYTES = 4_000_000
MAX_LISTED_ENTRIES = 20_000  # entries walked to find a bare file name's file
LISTING_SECONDS = 5.0


class ConfinedLines:
    """The citation checker's reader: the tools' confinement and secret rules, nothing else.

    A cited absolute path inside the target is read as the relative path it names; the target
    must still be the directory the run was launched on (a swapped or moved target fails every
    citation, it is never read through).
    """

    def __init__(self, target: str, *, identity: str = "") -> None:
        self.target = target
        self._names: dict[str, list[str]] | None = None
        launched = SimpleNamespace(target=target, target_real_path=target, target_identity=identity)
        try:
            # The same check every attempt makes: real path, device:inode, allowed roots.
            self.confinement: Confinement | None = open_target(launched)
        except TargetChanged:
            self.confinement = None

    @classmethod
    def for_run(cls, run: FlowRun) -> ConfinedLines:
        return cls(run.target_real_path or run.target, identity=run.target_identity)

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus:
        if self.confinement is None:
            return CheckStatus.TARGET_UNAVAILABLE
        relative = self._relative(cited_path)
        if relative is None:
            return CheckStatus.OUTSIDE_ROOT
        try:
            real = self.confinement.resolve(relative)
            data = self.confinement.read_bytes(real, MAX_CITED_FILE_BYTES + 1)
        except SecretFile:
            return CheckStatus.SECRET
        except NoSuchFile:
            return CheckStatus.NO_SUCH_FILE
        except OutsideTarget:
            return CheckStatus.OUTSIDE_ROOT
        except (Refused, OSError, RuntimeError, ValueError):
            # directories, FIFOs, binary files, symlink loops, names too long
            return CheckStatus.UNREADABLE
        if len(data) > MAX_CITED_FILE_BYTES:
            return CheckStatus.UNREADABLE
        # The lines as the model read them: a quote of a redacted line matches, and nothing
        # kept or shown from here can hold what the tools withheld (redaction keeps lines).
        return redact(data.decode("utf-8", errors="replace")).splitlines()

    def files_named(self, name: str, /) -> list[str]:
        """The readable files in the target with this name (for a citation of a bare name).

        The same walk as the search tools (links out of the target are invisible), and secret
        files are never offered: a name resolves only to a file the checker may read.
        """
        if self.confinement is None or "/" in name or not name:
            return []
        if self._names is None:
            walk = Walk(
                confine=self.confinement,
                base=self.confinement.root,
                depth=None,
                limit=MAX_LISTED_ENTRIES,
                deadline=Deadline(LISTING_SECONDS),
            )
            self._names = {}
            for entry in walk:
                if not entry.is_dir and not is_secret_name(entry.rel):
                    self._names.setdefault(entry.rel.rsplit("/", 1)[-1], []).append(entry.rel)
        return list(self._names.get(name, []))

    def _relative(self, cited: str) -> str | None:
        """The cited path relative to the target, or None when it names a place outside."""
        if cited.startswith("~"):
            return None
        if not cited.startswith("/"):
            return cited
        path, base = PurePosixPath(cited), PurePosixPath(self.target)
        return str(path.relative_to(base)) if path.is_relative_to(base) else None


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
    reader = ConfinedLines.for_run(run)
    method = method_facts(run, steps, reader)
    body = synthesis.output if synthesis and synthesis.status == StepStatus.SUCCEEDED else ""
    body = clean(body)  # no reasoning, no check marks of the model's own
    kept = report_evidence.KeptLines(reader)
    checks = check_all(body, kept)
    specialists = [s for s in steps if s.kind == StepKind.SPECIALIST]
    judged = (
        parse_verdict(clean(validation.output))
        if validation is not None and validation.status == StepStatus.SUCCEEDED
        else None
    )
    # The validator's summary and reasons are checked like the body: a citation there is
    # marked, and a false one counts against the evidence.
    said = {
        "summary": check_all(judged.summary, kept) if judged else [],
        "reasons": check_all(judged.reasons, kept) if judged else [],
    }
    facts = EvidenceFacts.assess(
        body,
        checks,
        failed=failed,
        agents=len(specialists) + len(by_kind),
        elsewhere=[*said["summary"], *said["reasons"]],
    )
    web = WebEvidence.of(run)
    facts = web.facts(body, facts, checks)
    findings = _findings_data(body, checks)
    report_evidence.add_ids(findings, reader.target)
    checked_lines = report_evidence.checked_lines(checks, kept, reader.target)

    if run.status == RunStatus.CANCELLED:
        verdict = Verdict(
            summary="The run was cancelled before it finished; this report is partial.",
            confidence="low",
            reasons="cancelled",
            evidence=(facts.basis(),),
        )
    elif validation is not None and validation.status == StepStatus.SUCCEEDED:
        verdict = final_confidence(judged, facts)
        if judged is not None:
            verdict = replace(
                verdict,
                summary=annotate(judged.summary, said["summary"]),
                model_reasons=annotate(judged.reasons, said["reasons"]),
            )
        # The report is final either way; a run some agents failed in says so in its status.
        run.status = RunStatus.FINISHED_WITH_FAILURES if failed else RunStatus.SUCCEEDED
    else:
        verdict = Verdict(
            summary="The run failed: " + _failure_sentence(steps),
            confidence="low",
            reasons="; ".join(f"{s.key}: {s.error or s.status}" for s in steps if s.key in failed),
            evidence=(facts.basis(),),
        )
        run.status = RunStatus.FAILED
        run.error = _failure_sentence(steps)

    # Compared with the previous run only when this one is complete, every agent included (a
    # partial report would show everything it did not reach as resolved).
    compared = (
        report_evidence.comparison(run, findings) if run.status == RunStatus.SUCCEEDED else None
    )
    marked, checks = report_evidence.mark_changes(body, checks, findings)
    since_text = render_comparison(compared) if compared else ""
    said["since"] = check_all(since_text, kept)
    since = "\n\n" + annotate(since_text, said["since"]) if compared else ""
    linked = neutralise(annotate(marked, checks, link=report_evidence.cite_link(checked_lines)))
    body = web.mark(neutralise(annotate(marked, checks)))
    linked = web.mark(linked)

    run.summary = verdict.summary
    run.confidence = verdict.confidence
    run.report = render_report(verdict=verdict, body=body + since, method=method)
    run.report_data = {
        "summary": verdict.summary,
        "confidence": verdict.confidence,
        "reasons": verdict.reasons,
        "confidence_basis": list(verdict.evidence),
        "confidence_explained": CONFIDENCE_EXPLAINED,
        "body": body,
        "failed_agents": failed,
        "findings": findings,
        "citations": [_citation_data(c) for c in checks]
        + [_citation_data(c, part=part) for part, found in said.items() for c in found],
        "evidence": {
            "findings": facts.findings,
            "backed": facts.backed,
            "verified": facts.verified,
            "broken": facts.broken,
            "single_source": facts.single_source,
            "no_evidence": facts.no_evidence,
        },
        "method": render_method(method),
        "target_state": method.target_state,
        "checked_lines": checked_lines,
        "web": web.data(body),
        "comparison": compared,
        "comparison_unlike": (
            report_evidence.unlike_previous(run)
            if compared is None and run.status == RunStatus.SUCCEEDED
            else None
        ),
        "linked_report": render_report(verdict=verdict, body=linked + since, method=method),
    }
    run.tokens_in = sum(s.tokens_in for s in steps)
    run.tokens_out = sum(s.tokens_out for s in steps)


def method_facts(run: FlowRun, steps: list[FlowStep], reader: ConfinedLines) -> MethodFacts:
    checked = {s.key: check_all(clean(s.output), reader) for s in steps}
    return MethodFacts(
        flow=run.flow,
        band=run.band,
        fast=run.fast,
        model=run.model,
        target_state=_target_state(run, reader),
        # The endpoints one after another (stored comma-joined): a narrow pane wraps between.
        endpoint=", ".join(run.endpoint_url.split(",")),
        slots=_slots(run),
        cache_saved=_cache_saved(steps),
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
                citations_broken=sum(c.flagged for c in checked[s.key]),
                spent_in=s.counters.tokens_spent_in,
                spent_out=s.counters.tokens_spent_out,
                cache_reuse=s.cache_reuse,
                decode_rate=s.decode_rate,
                truncated=s.truncated,
            )
            for s in steps
        ],
    )


def _cache_saved(steps: list[FlowStep]) -> str:
    saving = CacheSaving.of(s.counters for s in steps)
    return saving.sentence if saving is not None else ""


def _target_state(run: FlowRun, reader: ConfinedLines) -> str:
    """Whether the target is as it was when the run started (the reader holds it confined)."""
    if reader.confinement is None:
        return "the target is gone or was replaced; it could not be compared"
    return readonly_proof.target_state(run, reader.confinement.root)


def _findings_data(body: str, checks: list[CitationCheck]) -> list[dict[str, object]]:
    read = read_findings(body, [c.citation.start_offset for c in checks])
    owned = citations_by_finding(read, checks)
    return [
        {
            "claim": f.claim,
            "trust": f.trust,
            "severity": f.severity,
            "single_source": f.single_source,
            "text": f.text,
            "citations": [_citation_data(c) for c in owned.get(f.start, [])],
            "backed": any(c.verified for c in owned.get(f.start, []))
            and not any(c.flagged for c in owned.get(f.start, [])),
        }
        for f in read.findings
    ]


def _citation_data(item: CitationCheck, *, part: str = "body") -> dict[str, object]:
    c = item.citation
    return {
        "citation": c.label,
        "part": part,
        "grade": item.grade.value,
        "reason": item.reason,
        "path": item.path,
        "start": c.start,
        "end": c.end,
        "quote": c.quote,
        "form": c.form,
        "status": item.status.value,
    }


def _slots(run: FlowRun) -> str:
    if run.servers:
        return slot_facts.method_words(run.server_slots_each)
    if not run.slots:  # an older run: the sums only
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
