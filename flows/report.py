"""The report spine: the validator's verdict on top, the synthesizer's report, then Method."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Self

CONFIDENCE_LEVELS = ("low", "medium", "high")
# "Summary: ...", also "**Summary:** ..." and "**Summary**: ..." as models like to write it.
_VERDICT_LINE = re.compile(r"^\s*\**(summary|confidence|reasons)\**\s*:\**\s*(.*)$", re.I)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    summary: str
    confidence: str  # one of CONFIDENCE_LEVELS
    reasons: str


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
    endpoint: str = ""  # the server the run was launched against
    slots: str = ""  # e.g. "2 slots (the server has 1)"


TRUST_CLASSES = ("codebase", "web", "provided", "no evidence")
SEVERITIES = ("critical", "high", "medium", "low")
_FINDING = re.compile(r"^\s*[-*]\s+(?P<text>.+)$")
_BOLD = re.compile(r"\*\*(?P<claim>[^*]+)\*\*")
_TRUST = re.compile(r"\((?P<trust>codebase|web|provided|no evidence)[^)]*\)", re.I)


@dataclass(frozen=True, kw_only=True)
class Finding:
    claim: str
    trust: str  # one of TRUST_CLASSES, or "unlabelled" when the agent named none
    severity: str | None
    single_source: bool
    text: str  # the whole line as the report shows it


def parse_findings(body: str) -> list[Finding]:
    """The report's list items that make a claim: bold claim, trust class, the rest."""
    findings = []
    for line in body.splitlines():
        item = _FINDING.match(line)
        if not item:
            continue
        text = item["text"].strip()
        claim = _BOLD.search(text)
        trust = _TRUST.search(text)
        if claim is None and trust is None:
            continue  # plain bullets (agent lists, notes) are not findings
        lowered = text.lower()
        findings.append(
            Finding(
                claim=(claim["claim"] if claim else text)[:200].strip(),
                trust=trust["trust"].lower() if trust else "unlabelled",
                severity=next((s for s in SEVERITIES if re.search(rf"\b{s}\b", lowered)), None),
                single_source="single-source" in lowered,
                text=text,
            )
        )
    return findings


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
    level = (
        fields["confidence"][0].split()[0].strip("*.,;:").lower() if fields["confidence"][0] else ""
    )
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

    verified: int = 0  # codebase citations checked against the target and found
    broken: int = 0  # citations that point at missing files, lines or quotes
    single_source: int = 0  # web claims marked single-source
    no_evidence: int = 0  # claims labelled no evidence
    failed_agents: tuple[str, ...] = ()

    @classmethod
    def from_report(cls, body: str, *, verified: int, broken: int, failed: list[str]) -> Self:
        lowered = body.lower()
        return cls(
            verified=verified,
            broken=broken,
            single_source=lowered.count("single-source"),
            no_evidence=lowered.count("no evidence"),
            failed_agents=tuple(failed),
        )


def evidence_ceiling(facts: EvidenceFacts) -> tuple[str, list[str]]:
    """The highest confidence the evidence allows, and why it is capped."""
    ceiling = "high"
    why: list[str] = []
    cited = facts.verified + facts.broken
    if facts.verified == 0:
        ceiling = "low"
        why.append("no verified codebase citation")
    elif facts.broken and facts.broken * 4 >= cited:
        ceiling = "low"
        why.append(f"{facts.broken} of {cited} citations could not be verified")
    elif facts.broken:
        ceiling = _lower(ceiling, "medium")
        why.append(f"{facts.broken} of {cited} citations could not be verified")
    if facts.failed_agents:
        ceiling = _lower(ceiling, "medium")
        why.append(f"{len(facts.failed_agents)} agent(s) failed: {', '.join(facts.failed_agents)}")
    if facts.single_source:
        ceiling = _lower(ceiling, "medium")
        why.append(f"{facts.single_source} single-source web claim(s)")
    if facts.no_evidence >= 3:
        ceiling = _lower(ceiling, "medium")
        why.append(f"{facts.no_evidence} claims without evidence")
    return ceiling, why


def final_confidence(verdict: Verdict | None, facts: EvidenceFacts) -> Verdict:
    """The model's judgement may lower confidence, never raise it above the evidence."""
    ceiling, why = evidence_ceiling(facts)
    if verdict is None:
        return Verdict(
            summary="The validator gave no verdict; read the report with care.",
            confidence="low",
            reasons="; ".join(["no validator verdict", *why]),
        )
    level = _lower(verdict.confidence, ceiling)
    reasons = verdict.reasons
    if level != verdict.confidence:
        reasons = f"{reasons} Capped at {level}: {'; '.join(why)}.".strip()
    return Verdict(summary=verdict.summary, confidence=level, reasons=reasons)


def render_report(*, verdict: Verdict, body: str, method: MethodFacts) -> str:
    parts = [
        "## Summary",
        verdict.summary,
        "",
        f"## Confidence: {verdict.confidence}",
        verdict.reasons or "(no reasons given)",
        "",
        body.strip() or "_The synthesizer produced no report._",
        "",
        render_method(method),
    ]
    return "\n".join(parts).strip() + "\n"


def render_method(method: MethodFacts) -> str:
    lines = [
        "## Method",
        f"Flow `{method.flow}`, band {method.band}, fast mode {'on' if method.fast else 'off'}, "
        f"model `{method.model}`"
        + (f" at {method.endpoint}" if method.endpoint else "")
        + (f", {method.slots}" if method.slots else "")
        + ".",
        "",
        "| agent | status | attempts | tokens in/out | spent in/out | cache reuse | decode "
        "| tool calls | citations ok/broken | time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in method.agents:
        seconds = f"{a.seconds:.1f}s" if a.seconds is not None else "-"
        status = a.status + (f" ({a.error})" if a.error else "")
        if a.truncated:
            status += " (answer cut off at the output limit)"
        spent = f"{_or(a.spent_in, a.tokens_in)}/{_or(a.spent_out, a.tokens_out)}"
        cache = f"{a.cache_reuse:.0%}" if a.cache_reuse is not None else "-"
        speed = f"{a.decode_rate:.1f} tok/s" if a.decode_rate is not None else "-"
        lines.append(
            f"| {a.key} | {status} | {a.attempts} | {a.tokens_in}/{a.tokens_out} | {spent} "
            f"| {cache} | {speed} | {a.tool_calls} | {a.citations_verified}/{a.citations_broken} "
            f"| {seconds} |"
        )
    return "\n".join(lines)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _lower(level: str, ceiling: str) -> str:
    return min(level, ceiling, key=CONFIDENCE_LEVELS.index)
