"""Rendering an agent's opening messages: everything the agents of a run share first,
byte for byte, and each agent's own part last.

A llama.cpp server reuses the longest token prefix a new prompt shares with what its slot
holds, and the agents of a run take turns on few slots: the longer their common prefix, the
less each first turn costs. Chat templates (Qwen3/3.5's among them) render the tools list
right after the system message's text, so per-agent text in the system message would sit
before the shared tools and cut the shared prefix there. Hence the order, which
`opening_messages` owns:

1. the system message: preamble, contracts and the run's facts, the same for every agent;
2. (the template adds the tools: the same list for every agent, shared tools first);
3. the first user message: the target's shared context (target, focus), then "## Your part"
   (step kind, role, limits, the step's prompt, its checklist), then the upstream outputs.

llama.cpp also keeps a context checkpoint where a user message starts, which is what a hybrid
(recurrent) or sliding-window model can go back to: the shared prefix ends right there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flows.contracts import VALIDATOR_OUTPUT, checklist_for, shared_contracts, web_part
from flows.models import Depth, FlowDef, FlowKind, StepDef, StepKind

PREAMBLE = """\
You are one agent of the Orchestrator, a deterministic multi-agent flow running on a local
model. Several agents examine the same target through different lenses; a synthesizer merges
their findings into a report and a validator checks that report before anyone reads it.
Your own part (step kind, role, limits, what to do) is in the first user message."""

PART_HEADING = "## Your part"


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


def opening_messages(
    brief: RunBrief, step: StepDef, depth: Depth, upstream: list[UpstreamOutput]
) -> list[dict[str, Any]]:
    """An agent's first two messages: the run's shared system message, then its user message."""
    return [
        {"role": "system", "content": system_prompt(brief)},
        {"role": "user", "content": user_prompt(brief, step, depth, upstream)},
    ]


def system_prompt(brief: RunBrief) -> str:
    """The same for every agent of the run, byte for byte: nothing of one agent's own."""
    return "\n\n".join(
        [
            PREAMBLE,
            shared_contracts(producing=brief.flow.kind == FlowKind.DRAFT, web=brief.web),
            f"## This run\nFlow: {brief.flow.slug} ({brief.flow.title})\nBand: {brief.band}"
            f"\nFast mode: {'on' if brief.fast else 'off'}",
        ]
    )


def shared_context(brief: RunBrief) -> str:
    """The target's context every agent of the run reads first in its user message."""
    return f"Target: {brief.target_name}\nFocus: {brief.focus.strip()}"


def agent_part(brief: RunBrief, step: StepDef, depth: Depth) -> str:
    """This agent's own instructions: what the system message leaves out."""
    own = [
        PART_HEADING,
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
    return "\n".join(own)


def user_prompt(
    brief: RunBrief, step: StepDef, depth: Depth, upstream: list[UpstreamOutput]
) -> str:
    """The shared context, this agent's part, then what its dependencies produced."""
    lines = [shared_context(brief), "", agent_part(brief, step, depth)]
    if step.kind == StepKind.SPECIALIST:
        lines += ["", "Examine the target through your lens and report your findings."]
    for item in upstream:
        state = "" if item.succeeded else " (failed)"
        body = item.text.strip() if item.succeeded else "This agent failed; no output."
        lines += ["", f"### Output of {item.key} ({item.role}){state}", body]
    return "\n".join(lines)
