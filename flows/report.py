"""The report spine: the verdict on top, the synthesizer's report, then Method.

Confidence follows the evidence: it is computed from what the citation checker found (how many
findings are backed by verified codebase citations, broken citations, failed agents,
single-source web claims, no-evidence items); the validator's own judgement may lower it,
never raise it. The verdict appears once: verdict-like lines the model wrote into the body
are shown as quoted text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Self

from flows.citation_scan import MAX_SCAN_CHARS
from flows.citations import CitationCheck, Grade
from flows.findings import (
    SEVERITIES,
    TRUST_CLASSES,
    Finding,
    ReadFindings,
    parse_findings,
    read_findings,
)
from flows.model_text import MODEL_WRITTEN, imitates_verdict, neutralise

__all__ = [
    "CONFIDENCE_EXPLAINED",
    "CONFIDENCE_LEVELS",
    "SEVERITIES",
    "TRUST_CLASSES",
    "AgentLine",
    "EvidenceFacts",
    "Finding",
    "MethodFacts",
    "Verdict",
    "evidence_ceiling",
    "final_confidence",
    "neutralise",
    "parse_findings",
    "parse_verdict",
    "render_method",
    "render_report",
]

CONFIDENCE_LEVELS = ("low", "medium", "high")
CONFIDENCE_EXPLAINED = (
    "Confidence is how much of this report rests on code the Orchestrator opened and found "
    "exactly as cited (high: nearly every finding; low: little of it), and the model can "
    "lower it but never raise it."
)
HIGH_COVERAGE = 0.8  # share of findings backed by a verified citation that high needs
MEDIUM_COVERAGE = 0.5  # below this, low
HIGH_LOCATIONS = 3  # distinct verified places in the code that high needs
HIGH_BACKED = 2  # backed findings that high needs

# "Summary: ...", also "**Summary:** ..." and "**Summary**: ..." as models like to write it.
_VERDICT_LINE = re.compile(r"^\s*\**(summary|confidence|reasons)\**\s*:\**\s*(.*)$", re.I)
_BLOCK_START = re.compile(r"[ \t]*(?:[#>=+*|-]|\d{1,9}[.)])")


@dataclass(frozen=True, kw_only=True)
class Verdict:
    summary: str
    confidence: str  # one of CONFIDENCE_LEVELS
    reasons: str  # the validator's own words (plus the cap, when one applied)
    evidence: tuple[str, ...] = ()  # what the evidence rule found, one line each
    model_reasons: str = ""  # the validator's words alone (shown quoted, as model text)
    cap: str = ""  # "Capped at ...": what the evidence did to the validator's level


@dataclass(frozen=True, kw_only=True)
class AgentLine:
    key: str
    role: str
    status: str
    attempts: int
    tokens_in: int
    tokens_out: int
    tool_calls: int
    seconds: float | None
    error: str = ""
    citations_verified: int = 0  # this agent's own output, checked like the report
    citations_broken: int = 0
    # Every attempt's tokens, retried, cut off and cancelled ones included (>= the kept ones).
    spent_in: int | None = None
    spent_out: int | None = None
    cache_reuse: float | None = None  # share of prompt tokens the server reused (0..1)
    decode_rate: float | None = None  # tokens per second while generating
    truncated: bool = False  # the answer stopped at the output limit


@dataclass(frozen=True, kw_only=True)
class MethodFacts:
    flow: str
    band: str
    fast: bool
    model: str
    agents: list[AgentLine] = field(default_factory=list)
    # "target unchanged during the run", or what changed ("" when it was not recorded)
    target_state: str = ""
    endpoint: str = ""  # the server the run was launched against
    slots: str = ""  # e.g. "2 slots (the server has 1)"
    # "12,400 prompt tokens reused from the server's cache (71%)", "" when it did not say
    cache_saved: str = ""


def parse_verdict(text: str) -> Verdict | None:
    """Read 'Summary: / Confidence: / Reasons:' from the validator's output, if it gave them."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _VERDICT_LINE.match(line)
        if match:
            current = match.group(1).lower()
            fields[current] = [match.group(2).strip()]
        elif current and line.strip() and not line.lstrip().startswith(("-", "#")):
            fields[current].append(line.strip())
        else:
            current = None
    if "summary" not in fields or "confidence" not in fields:
        return None
    first = fields["confidence"][0].split()
    level = first[0].strip("*.,;:").lower() if first else ""
    if level not in CONFIDENCE_LEVELS:
        return None
    return Verdict(
        summary=" ".join(fields["summary"]).strip(),
        confidence=level,
        reasons=" ".join(fields.get("reasons", [])).strip(),
    )


@dataclass(frozen=True, kw_only=True)
class EvidenceFacts:
    """What the report's evidence allows, counted mechanically, not taken from the model."""

    findings: int = 0  # claims weighed (no-evidence items apart)
    backed: int = 0  # of those, backed by a verified citation and no broken one
    verified: int = 0  # citations checked against the target and found
    locations: int = 0  # distinct verified (path, line) places
    broken: int = 0  # flagged citations: missing files, lines, quotes or named code
    lines_exist: int = 0  # citations whose lines exist but which claim nothing checkable
    not_checked: int = 0  # citation-like strings that could not be checked
    single_source: int = 0  # web claims marked single-source
    no_evidence: int = 0  # claims labelled no evidence
    failed_agents: tuple[str, ...] = ()
    agents: int = 0  # agents in the run (0: unknown)
    structured: bool = True  # findings were laid out as items, rows or headings
    checked_in_full: bool = True  # False when the report is longer than the scan cap

    @classmethod
    def assess(
        cls,
        body: str,
        checks: Sequence[CitationCheck],
        *,
        failed: Sequence[str] = (),
        agents: int = 0,
        elsewhere: Sequence[CitationCheck] = (),
    ) -> Self:
        """Count the body's findings and which of them the checked citations back.

        `elsewhere`: citations in other parts of the report (the summary, the validator's
        reasons); they count as citations but belong to no finding.
        """
        read = read_findings(body, [c.citation.start_offset for c in checks])
        per_finding = citations_by_finding(read, checks)
        weighed = [f for f in read.findings if not f.no_evidence]
        backed = 0
        for finding in weighed:
            own = per_finding.get(finding.start, [])
            if any(c.verified for c in own) and not any(c.flagged for c in own):
                backed += 1
        every = [*checks, *elsewhere]
        verified = [c for c in every if c.verified]
        return cls(
            findings=len(weighed),
            backed=backed,
            verified=len(verified),
            locations=len(
                {(c.citation.path.removeprefix("./"), c.citation.start) for c in verified}
            ),
            broken=sum(c.flagged for c in every),
            lines_exist=sum(c.grade == Grade.LINES_EXIST for c in every),
            not_checked=sum(c.grade == Grade.NOT_CHECKED for c in every),
            single_source=sum(f.single_source for f in weighed),
            no_evidence=len(read.findings) - len(weighed),
            failed_agents=tuple(failed),
            agents=agents,
            structured=read.structured,
            checked_in_full=len(body) <= MAX_SCAN_CHARS,
        )

    def basis(self) -> str:
        """One line a person can check: coverage and citation counts."""
        if self.findings:
            share = round(100 * self.backed / self.findings)
            head = (
                f"{self.backed} of {self.findings} findings ({share}%) are backed by verified "
                "codebase citations"
            )
        else:
            head = "the report states no findings to weigh"
        tail = f"{self.verified} citations verified, {self.broken} flagged"
        if self.lines_exist:
            tail += f", {self.lines_exist} with lines that exist but no claim checked"
        if self.not_checked:
            tail += f", {self.not_checked} not checked"
        return f"{head}; {tail}"


def citations_by_finding(
    read: ReadFindings, checks: Sequence[CitationCheck]
) -> dict[int, list[CitationCheck]]:
    """Each finding's citations, keyed by the finding's start offset."""
    spans = [(f.start, f.end) for f in read.findings]
    owned: dict[int, list[CitationCheck]] = {}
    index = 0
    for item in sorted(checks, key=lambda c: c.citation.start_offset):
        offset = item.citation.start_offset
        while index < len(spans) and spans[index][1] <= offset:
            index += 1
        if index < len(spans) and spans[index][0] <= offset:
            owned.setdefault(spans[index][0], []).append(item)
    return owned


def evidence_ceiling(facts: EvidenceFacts) -> tuple[str, list[str]]:
    """The highest confidence the evidence allows, and every reason that limits it."""
    ceiling = "high"
    why: list[str] = []

    def cap(level: str, reason: str) -> None:
        nonlocal ceiling
        ceiling = _lower(ceiling, level)
        why.append(reason)

    cited = facts.verified + facts.broken
    if facts.verified == 0:
        cap("low", "no verified codebase citation")
    if facts.broken:
        severe = facts.broken * 4 >= cited
        cap(
            "low" if severe else "medium",
            f"{facts.broken} of {cited} citations could not be verified",
        )
    if facts.findings and facts.verified:
        share = facts.backed / facts.findings
        if share < HIGH_COVERAGE:
            reason = (
                f"only {facts.backed} of {facts.findings} findings are backed by a verified "
                "citation"
            )
            cap("low" if share < MEDIUM_COVERAGE else "medium", reason)
    if not facts.checked_in_full:
        cap(
            "medium",
            f"the report is longer than {MAX_SCAN_CHARS:,} characters; its tail was not checked",
        )
    if not facts.structured and facts.findings:
        cap("medium", "the findings are not laid out as a list, so claims and evidence blur")
    if facts.failed_agents:
        most = facts.agents and len(facts.failed_agents) * 2 >= facts.agents
        names = ", ".join(facts.failed_agents)
        cap("low" if most else "medium", f"{len(facts.failed_agents)} agent(s) failed: {names}")
    if facts.single_source:
        cap("medium", f"{facts.single_source} single-source web claim(s)")
    if facts.no_evidence >= 3 or (facts.no_evidence and facts.no_evidence >= facts.findings):
        cap("medium", f"{facts.no_evidence} claims without evidence")
    if facts.verified and (facts.locations < HIGH_LOCATIONS or facts.backed < HIGH_BACKED):
        cap(
            "medium",
            f"{facts.locations} verified place(s) in the code backing {facts.backed} finding(s): "
            "too little for high",
        )
    return ceiling, why


def final_confidence(verdict: Verdict | None, facts: EvidenceFacts) -> Verdict:
    """The model's judgement may lower confidence, never raise it above the evidence."""
    ceiling, why = evidence_ceiling(facts)
    evidence = (facts.basis(), *why)
    if verdict is None:
        return Verdict(
            summary="The validator gave no verdict; read the report with care.",
            confidence="low",
            reasons="no validator verdict",
            evidence=evidence,
        )
    level = _lower(verdict.confidence, ceiling)
    reasons = verdict.reasons
    cap = f"Capped at {level}: {'; '.join(why)}." if level != verdict.confidence else ""
    if cap:
        reasons = f"{reasons} {cap}".strip()
    return Verdict(
        summary=verdict.summary,
        confidence=level,
        reasons=reasons,
        evidence=evidence,
        model_reasons=verdict.reasons,
        cap=cap,
    )


def render_report(*, verdict: Verdict, body: str, method: MethodFacts) -> str:
    evidence = [f"- {_inline(line)}" for line in verdict.evidence]
    own = verdict.model_reasons
    if verdict.cap:
        evidence.append(f"- {_inline(verdict.cap)}")
    elif not own and verdict.reasons:
        evidence.append(f"- {_inline(verdict.reasons)}")  # the Orchestrator's own reason
    if own.strip():
        # The validator's words are model text: quoted, never a line of the basis.
        evidence += ["", f"> *(the validator's own words, not the verdict)* {_inline(own)}"]
    summary = _inline(verdict.summary)
    parts = [
        "## Summary",
        MODEL_WRITTEN + summary if imitates_verdict(summary) else summary,
        "",
        f"## Confidence: {verdict.confidence}",
        f"_{CONFIDENCE_EXPLAINED}_",
        "",
        *(evidence or ["(no reasons given)"]),
        "",
        neutralise(body.strip()) or "_The synthesizer produced no report._",
        "",
        render_method(method),
    ]
    return "\n".join(parts).strip() + "\n"


def rate(tokens_per_second: float | None) -> str:
    """A speed in tokens per second, as wide as its precision needs: 42.5; 312; 2,480; 31k
    (a demo model's tens of thousands fit the pane's cell at every width). Nothing generated
    (a speed of 0) or nothing measured is "" (a dash where it is shown), never "0.0". The
    one rule for a speed: the Method table here, the pane, the CLI (runs.labels)."""
    if tokens_per_second is None or not 0 < tokens_per_second < 1e12:
        return ""
    if tokens_per_second < 100:
        return f"{tokens_per_second:.1f}"
    if tokens_per_second < 10_000:
        return f"{tokens_per_second:,.0f}"
    return f"{tokens_per_second / 1000:,.0f}k"


def render_method(method: MethodFacts) -> str:
    lines = [
        "## Method",
        f"Flow `{method.flow}`, band {method.band}, fast mode {'on' if method.fast else 'off'}, "
        f"model `{method.model}`"
        + (f" at {method.endpoint}" if method.endpoint else "")
        + (f", {method.slots}" if method.slots else "")
        + ".",
        *([f"Read-only check: {_inline(method.target_state)}."] if method.target_state else []),
        *([f"Prompt cache: {method.cache_saved}."] if method.cache_saved else []),
        "",
        "| agent | status | attempts | tokens in/out | spent in/out | cache reuse | decode tok/s "
        "| tool calls | citations ok/broken | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    reasons: list[str] = []
    for a in method.agents:
        seconds = f"{a.seconds:.1f}s" if a.seconds is not None else "-"
        # The cell holds the status word only; why an agent failed (or its answer was cut
        # off) is a line under the table, so the table stays as narrow as its numbers.
        status = a.status + (" (cut off)" if a.truncated else "")
        if a.error:
            reasons.append(f"- {a.key}: {_inline(a.error)}")
        if a.truncated:
            reasons.append(f"- {a.key}: answer cut off at the output limit")
        spent = f"{_or(a.spent_in, a.tokens_in)}/{_or(a.spent_out, a.tokens_out)}"
        cache = f"{a.cache_reuse:.0%}" if a.cache_reuse is not None else "-"
        # The unit is in the header: a cell of one number never wraps onto two lines.
        speed = (rate(a.decode_rate) if a.tokens_out else "") or "-"
        lines.append(
            f"| {a.key} | {status} | {a.attempts} | {a.tokens_in}/{a.tokens_out} | {spent} "
            f"| {cache} | {speed} | {a.tool_calls} | {a.citations_verified}/{a.citations_broken} "
            f"| {seconds} |"
        )
    if reasons:
        lines += ["", *reasons]
    return "\n".join(lines)


def _inline(text: str) -> str:
    """Model text shown on one line that cannot start a heading, list or quote."""
    flat = " ".join(text.split())
    return "\\" + flat if _BLOCK_START.match(flat) else flat


def _same_path(path: str) -> str:
    while path.startswith("./"):
        path = path[2:]
    return path


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _lower(level: str, ceiling: str) -> str:
    return min(level, ceiling, key=CONFIDENCE_LEVELS.index)


def with_web_evidence(
    facts: EvidenceFacts, *, single_source: int, corroborated: int = 0
) -> EvidenceFacts:
    """The facts with web claims counted mechanically (flows.web_citations): a web claim not
    corroborated by two verified sites is single-source, whatever the model wrote of it; a
    corroborated one (without code citations) stands on its own evidence, so it leaves the
    share of findings that codebase citations must back."""
    return dataclasses.replace(
        facts,
        single_source=single_source,
        findings=max(0, facts.findings - corroborated),
    )
