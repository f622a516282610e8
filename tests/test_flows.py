"""The flow catalog and prompts: pure Python, no database (citations and confidence have
their own files: test_citations.py, test_confidence.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.docs import DOC_PATH, render_catalog
from flows.models import BANDS, FlowKind, StepDef, StepKind
from flows.prompts import (
    PART_HEADING,
    RunBrief,
    UpstreamOutput,
    opening_messages,
    system_prompt,
    user_prompt,
)
from flows.registry import CATALOG, get_flow, slash_menu
from flows.spine import Lens, spine_flow

SLASH_MENU = [
    "research",
    "investigate",
    "code-review",
    "architectural-analysis",
    "security-review",
    "gap-analysis",
    "data-review",
    "devops-review",
    "issue-triage",
    "project-discovery",
    "test-planning",
]
DRAFTS = [
    "feature-specification",
    "implementation-plan",
    "refactor-plan",
    "migration-plan",
    "architecture-decision-record",
    "api-design",
    "runbook",
    "incident-postmortem",
    "release-plan",
    "documentation-draft",
    "issue-breakdown",
]


def test_the_catalog_has_all_22_flows_and_the_slash_menu_is_exactly_the_11_analysis_ones():
    """Button: everything; slash: the read-only analysis set, in order."""
    assert len(CATALOG) == 22
    assert [f.slug for f in slash_menu()] == SLASH_MENU
    assert sorted(s for s, f in CATALOG.items() if f.kind == FlowKind.DRAFT) == sorted(DRAFTS)


@pytest.mark.parametrize("slug", sorted(CATALOG))
def test_every_flow_runs_the_spine_in_every_band_and_grows_with_it(slug: str):
    """Specialists -> one synthesizer -> one validator, with breadth never shrinking."""
    flow = get_flow(slug)
    sizes = []
    for band in BANDS:
        roster = flow.roster(band)
        kinds = [s.kind for s in roster]
        assert kinds[-2:] == [StepKind.SYNTHESIZER, StepKind.VALIDATOR]
        assert kinds.count(StepKind.SPECIALIST) >= 1
        sizes.append(len(roster))
    assert sizes == sorted(sizes)
    assert flow.depth.fast.max_turns <= flow.depth.normal.max_turns


def test_a_broken_definition_fails_when_it_is_built_not_mid_run():
    """Cycles, unknown dependencies and a missing gate are caught by validation."""
    base = {"role": "a-role", "title": "A", "kind": StepKind.SPECIALIST, "prompt": "x" * 30}
    with pytest.raises(ValidationError, match="needs at least one specialist"):
        spine_flow(
            slug="bad",
            title="Bad",
            description="a broken flow",
            kind=FlowKind.ANALYSIS,
            family="review",
            lenses=[],
            synthesizer_prompt="y" * 30,
        )
    with pytest.raises(ValidationError):
        StepDef(key="BAD KEY", **base)  # type: ignore[arg-type]
    flow = get_flow("research")
    with pytest.raises(ValidationError, match="depends on unknown"):
        flow.model_validate(
            {
                **flow.model_dump(),
                "steps": [
                    {**s.model_dump(), "depends_on": ("ghost",)}
                    if s.key == "synthesis"
                    else s.model_dump()
                    for s in flow.steps
                ],
            }
        )
    with pytest.raises(ValidationError, match="cycle"):
        flow.model_validate(
            {
                **flow.model_dump(),
                "steps": [
                    {**s.model_dump(), "depends_on": ("validation",)}
                    if s.key == "codebase-evidence"
                    else s.model_dump()
                    for s in flow.steps
                ],
            }
        )


def test_every_agent_of_a_run_shares_the_same_prompt_prefix():
    """Contracts come first and identically, so the model server's prompt cache can reuse them:
    the system message is the run's, byte for byte; the user message starts with the shared
    target context, and only then comes each agent's own part."""
    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band="large", fast=False, focus="auth", target_name="shop")
    openings = [opening_messages(brief, s, flow.depth.normal, []) for s in flow.roster("large")]
    systems = {system["content"] for system, _ in openings}
    assert len(systems) == 1
    shared = systems.pop()
    assert "## Evidence rule" in shared and "## Read-only contract" in shared
    assert "YAGNI" not in shared and PART_HEADING not in shared and "Agent role" not in shared
    users = [user["content"] for _, user in openings]
    heads = {text.split(PART_HEADING)[0] for text in users}
    assert heads == {"Target: shop\nFocus: auth\n\n"}
    assert all("Agent role: " in text.split(PART_HEADING)[1] for text in users)
    assert len(set(users)) == len(users)  # every agent still gets its own part


def test_draft_flows_carry_the_yagni_rule_and_analysis_flows_do_not():
    """The YAGNI rule applies to producing flows only."""
    for flow in CATALOG.values():
        brief = RunBrief(flow=flow, band="small", fast=True, focus="", target_name="t")
        prompt = system_prompt(brief)
        assert ("## YAGNI rule" in prompt) == (flow.kind == FlowKind.DRAFT), flow.slug


def test_the_validator_gets_its_checklist_and_output_format():
    """The gate checks the common evidence list plus its family's list."""
    flow = get_flow("investigate")
    brief = RunBrief(flow=flow, band="small", fast=False, focus="", target_name="t")
    prompt = user_prompt(brief, flow.step("validation"), flow.depth.normal, [])
    assert "Every finding names a trust class" in prompt
    assert "Alternative hypotheses are listed" in prompt
    assert "Confidence: high|medium|low" in prompt


def test_each_agent_gets_its_limits_prompt_and_upstream_after_its_part():
    """What the system message no longer carries is in the user message, after the part."""
    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band="small", fast=True, focus="x", target_name="t")
    step = flow.step("synthesis")
    upstream = [UpstreamOutput(key="security", role="security", succeeded=True, text="- a")]
    text = user_prompt(brief, step, flow.depth.fast, upstream)
    part = text.index(PART_HEADING)
    assert part < text.index(step.prompt.strip()[:40]) < text.index("### Output of security")
    assert f"at most {flow.depth.fast.max_turns} turns" in text[part:]


def test_docs_flows_md_is_generated_from_the_definitions():
    """Regenerate with `python -m flows.docs` when a flow changes."""
    assert DOC_PATH.read_text() == render_catalog()


def test_lenses_join_bands_from_their_smallest_one():
    """from_band=medium means medium and large."""
    assert Lens(role="x-y", title="X", prompt="p" * 30, from_band="medium").bands() == {
        "medium",
        "large",
    }
