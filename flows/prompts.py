"""Rendering an agent's messages: shared prefix first, per-agent text last."""

from __future__ import annotations

from dataclasses import dataclass

from flows.contracts import VALIDATOR_OUTPUT, checklist_for, shared_contracts, web_part
from flows.models import Depth, FlowDef, FlowKind, StepDef, StepKind

PREAMBLE = """\
You are one agent of the Orchestrator, a deterministic multi-agent flow running on a local
model. Several agents examine the same target through different lenses; a synthesizer merges
their findings into a report and a validator checks that report before anyone reads it."""


@dataclass(frozen=True, kw_only=True)
class UpstreamOutput:
    """What a dependency produced, handed to the steps that depend on it."""

    key: str
    role: str
    succeeded: bool
    text: str


@dataclass(frozen=True, kw_only=True)
class RunBrief:
    flow: FlowDef
    band: str
    fast: bool
    focus: str
    target_name: str
    web: bool = False  # the run allows the web (and a search endpoint is configured)


def system_prompt(brief: RunBrief, step: StepDef, depth: Depth) -> str:
    """Identical for every agent of the run up to the 'Your part' heading."""
    shared = "\n\n".join(
        [
            PREAMBLE,
            shared_contracts(producing=brief.flow.kind == FlowKind.DRAFT, web=brief.web),
            f"## This run\nFlow: {brief.flow.slug} ({brief.flow.title})\nBand: {brief.band}"
            f"\nFast mode: {'on' if brief.fast else 'off'}",
        ]
    )
    own = [
        "## Your part",
        f"Step kind: {step.kind.value}",
        f"Agent role: {step.role}",
        f"Step: {step.key} ({step.title})",
        f"Limits: at most {depth.max_turns} turns and {depth.max_tool_calls} tool calls.",
        "",
        step.prompt.strip(),
    ]
    if step.web:
        own += ["", web_part(allowed=brief.web)]
    if step.kind == StepKind.VALIDATOR:
        checklist = "\n".join(f"- {item}" for item in checklist_for(brief.flow.family))
        own += ["", "## Checklist", checklist, "", VALIDATOR_OUTPUT]
    return shared + "\n\n" + "\n".join(own)


def user_prompt(brief: RunBrief, step: StepDef, upstream: list[UpstreamOutput]) -> str:
    lines = [f"Target: {brief.target_name}", f"Focus: {brief.focus.strip()}"]
    if step.kind == StepKind.SPECIALIST:
        lines.append("Examine the target through your lens and report your findings.")
    for item in upstream:
        state = "" if item.succeeded else " (failed)"
        body = item.text.strip() if item.succeeded else "This agent failed; no output."
        lines += ["", f"### Output of {item.key} ({item.role}){state}", body]
    return "\n".join(lines)
