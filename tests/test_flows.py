"""The flow catalog and prompts: pure Python, no database (citations and confidence have
their own files: test_citations.py, test_confidence.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.docs import DOC_PATH, render_catalog
from flows.models import BANDS, FlowKind, StepDef, StepKind
from flows.prompts import RunBrief, system_prompt
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
    """Contracts come first and identically, so the model server's prompt cache can reuse them."""
    flow = get_flow("code-review")
    brief = RunBrief(flow=flow, band="large", fast=False, focus="auth", target_name="shop")
    prompts = [system_prompt(brief, s, flow.depth.normal) for s in flow.roster("large")]
    prefixes = {p.split("## Your part")[0] for p in prompts}
    assert len(prefixes) == 1
    shared = prefixes.pop()
    assert "## Evidence rule" in shared and "## Read-only contract" in shared
    assert "YAGNI" not in shared
    assert all("Agent role: " in p.split("## Your part")[1] for p in prompts)


def test_draft_flows_carry_the_yagni_rule_and_analysis_flows_do_not():
    """The YAGNI rule applies to producing flows only."""
    for flow in CATALOG.values():
        brief = RunBrief(flow=flow, band="small", fast=True, focus="", target_name="t")
        prompt = system_prompt(brief, flow.roster("small")[0], flow.depth.fast)
        assert ("## YAGNI rule" in prompt) == (flow.kind == FlowKind.DRAFT), flow.slug


def test_the_validator_gets_its_checklist_and_output_format():
    """The gate checks the common evidence list plus its family's list."""
    flow = get_flow("investigate")
    brief = RunBrief(flow=flow, band="small", fast=False, focus="", target_name="t")
    prompt = system_prompt(brief, flow.step("validation"), flow.depth.normal)
    assert "Every finding names a trust class" in prompt
    assert "Alternative hypotheses are listed" in prompt
    assert "Confidence: high|medium|low" in prompt


def test_docs_flows_md_is_generated_from_the_definitions():
    """Regenerate with `python -m flows.docs` when a flow changes."""
    assert DOC_PATH.read_text() == render_catalog()


def test_lenses_join_bands_from_their_smallest_one():
    """from_band=medium means medium and large."""
    assert Lens(role="x-y", title="X", prompt="p" * 30, from_band="medium").bands() == {
        "medium",
        "large",
    }
