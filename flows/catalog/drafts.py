"""Planning and authoring flows (launcher only): their report is a draft document.

They still only read the target; the draft lives in the report, never in the project.
"""

from __future__ import annotations

from flows.models import FlowDef, FlowKind
from flows.spine import Lens, spine_flow

_CONTEXT = Lens(
    role="context",
    title="Context",
    prompt="Read the code and docs the focus text touches; cite what exists today.",
)
_CONSTRAINTS = Lens(
    role="constraints",
    title="Constraints",
    prompt="Find hard constraints: interfaces, data, dependencies and tests that a change "
    "must respect; cite them.",
)
_RISKS = Lens(
    role="risks",
    title="Risks",
    from_band="medium",
    prompt="Find what could go wrong: fragile code, missing tests, coupled modules; cite them.",
)
_PRIOR_ART = Lens(
    role="prior-art",
    title="Prior art",
    from_band="large",
    prompt="Find similar solutions already in the project and what they teach.",
)


def _draft(slug: str, title: str, description: str, document: str) -> FlowDef:
    return spine_flow(
        slug=slug,
        title=title,
        description=description,
        kind=FlowKind.DRAFT,
        family="planning",
        lenses=[_CONTEXT, _CONSTRAINTS, _RISKS, _PRIOR_ART],
        synthesizer_prompt=f"Write the draft {document}. Every proposed part cites its evidence "
        "(user value, hard dependency or measured signal); everything else goes to a "
        "## Cut list with reopen triggers. Keep citations exactly as given; name failed agents.",
    )


FLOWS = (
    _draft(
        "feature-specification",
        "Feature specification",
        "Draft a feature spec grounded in the current code: behaviour, scope, cut list.",
        "feature specification (## Problem, ## Behaviour, ## Scope, ## Open questions)",
    ),
    _draft(
        "implementation-plan",
        "Implementation plan",
        "Draft an ordered implementation plan with checks for each step.",
        "implementation plan (## Steps in dependency order, each with its done-check)",
    ),
    _draft(
        "refactor-plan",
        "Refactor plan",
        "Plan a behaviour-preserving refactor in safe, tested steps.",
        "refactor plan (## Target shape, ## Steps, ## Safety net of tests)",
    ),
    _draft(
        "migration-plan",
        "Migration plan",
        "Plan a migration (data, dependency or platform) with rollback at each stage.",
        "migration plan (## Stages, ## Rollback per stage, ## Verification)",
    ),
    _draft(
        "architecture-decision-record",
        "Architecture decision record",
        "Draft an ADR: context, options with evidence, decision, consequences.",
        "ADR (## Context, ## Options, ## Decision, ## Consequences)",
    ),
    _draft(
        "api-design",
        "API design",
        "Draft an API design consistent with the project's existing interfaces.",
        "API design (## Resources or functions, ## Errors, ## Compatibility)",
    ),
    _draft(
        "runbook",
        "Runbook",
        "Draft an operational runbook from the project's real config and scripts.",
        "runbook (## Start and stop, ## Health checks, ## Common failures and fixes)",
    ),
    _draft(
        "incident-postmortem",
        "Incident postmortem",
        "Draft a blameless postmortem from the incident in the focus text and the code.",
        "postmortem (## Timeline, ## Cause with evidence, ## Actions)",
    ),
    _draft(
        "release-plan",
        "Release plan",
        "Draft a release plan: what ships, checks before release, rollback.",
        "release plan (## Contents, ## Pre-release checks, ## Rollback)",
    ),
    _draft(
        "documentation-draft",
        "Documentation draft",
        "Draft documentation for the part of the project named in the focus text.",
        "documentation (## Overview, ## Usage, ## Reference), true to the code",
    ),
    _draft(
        "issue-breakdown",
        "Issue breakdown",
        "Break a large piece of work into small, ordered, independently shippable issues.",
        "issue breakdown (## Issues in order, each with scope and done-check)",
    ),
)
