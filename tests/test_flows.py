"""The flow catalog, prompts, citations and confidence: pure Python, no database."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flows import citations
from flows.docs import DOC_PATH, render_catalog
from flows.models import BANDS, FlowKind, StepDef, StepKind
from flows.prompts import RunBrief, system_prompt
from flows.registry import CATALOG, get_flow, slash_menu
from flows.report import EvidenceFacts, Verdict, final_confidence, parse_verdict
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


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "auth.py").write_text(
        "import hashlib\n\n\ndef check(pw, stored):\n    return hashlib.md5(pw).hexdigest() == stored\n"
    )
    (tmp_path.parent / "outside.py").write_text("secret = 1\n")
    return tmp_path


def test_a_real_citation_with_its_quote_is_verified(repo: Path):
    """path:line inside the target, line present, quoted text found there."""
    [check] = citations.check_all("- **MD5** (codebase) `app/auth.py:5` — `hashlib.md5(pw)`", repo)
    assert check.verified


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("`app/auth.py:99`", citations.CheckStatus.NO_SUCH_LINES),
        ("`app/login.py:3`", citations.CheckStatus.NO_SUCH_FILE),
        ("`app/auth.py:5` — `bcrypt.hashpw(pw)`", citations.CheckStatus.QUOTE_NOT_FOUND),
        ("`../outside.py:1`", citations.CheckStatus.OUTSIDE_ROOT),
        ("`app/auth.py:3-40`", citations.CheckStatus.NO_SUCH_LINES),
    ],
)
def test_a_fabricated_citation_is_caught_and_labelled(repo: Path, text: str, status):
    """The report never presents an unchecked or false citation as verified."""
    [check] = citations.check_all(text, repo)
    assert check.status == status
    marked = citations.annotate(text, [check])
    assert f"[unverified: {status.value}]" in marked
    assert citations.MARK_VERIFIED not in marked


def test_verified_citations_are_marked_in_place(repo: Path):
    """Each citation gets its own mark, right after it."""
    text = "a `app/auth.py:1` b `app/auth.py:50` c"
    marked = citations.annotate(text, citations.check_all(text, repo))
    assert marked == ("a `app/auth.py:1` ✓ b `app/auth.py:50` **[unverified: no such lines]** c")


def test_the_verdict_is_read_from_the_validators_lines():
    """Summary, Confidence and Reasons, tolerant of bold markers."""
    verdict = parse_verdict(
        "**Summary:** Two issues.\n**Confidence:** Medium.\nReasons: one broken"
    )
    assert verdict == Verdict(summary="Two issues.", confidence="medium", reasons="one broken")
    assert parse_verdict("I think it is fine") is None


@pytest.mark.parametrize(
    ("facts", "expected", "why"),
    [
        (EvidenceFacts(verified=5), "high", ""),
        (EvidenceFacts(verified=5, failed_agents=("security",)), "medium", "security"),
        (EvidenceFacts(verified=5, single_source=1), "medium", "single-source"),
        (EvidenceFacts(verified=6, broken=1), "medium", "1 of 7 citations"),
        (EvidenceFacts(verified=1, broken=2), "low", "2 of 3 citations"),
        (EvidenceFacts(verified=0), "low", "no verified codebase citation"),
        (EvidenceFacts(verified=4, no_evidence=3), "medium", "without evidence"),
    ],
)
def test_confidence_comes_from_the_evidence_and_the_model_can_only_lower_it(facts, expected, why):
    """A model saying 'high' gets what the evidence allows, with the reason spelled out."""
    claimed = Verdict(summary="s", confidence="high", reasons="model says so.")
    result = final_confidence(claimed, facts)
    assert result.confidence == expected
    assert why in result.reasons
    humble = final_confidence(Verdict(summary="s", confidence="low", reasons="r"), facts)
    assert humble.confidence == "low"


def test_a_missing_verdict_means_low_confidence():
    """No gate output, no trust."""
    assert final_confidence(None, EvidenceFacts(verified=9)).confidence == "low"


def test_lenses_join_bands_from_their_smallest_one():
    """from_band=medium means medium and large."""
    assert Lens(role="x-y", title="X", prompt="p" * 30, from_band="medium").bands() == {
        "medium",
        "large",
    }
