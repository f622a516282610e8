from __future__ import annotations

from flows.models import FlowKind
from flows.spine import Lens, spine_flow

FLOW = spine_flow(
    slug="research",
    title="Research",
    description="Answer a question about the project from its code, docs and history.",
    kind=FlowKind.ANALYSIS,
    family="research",
    in_slash_menu=True,
    lenses=[
        Lens(
            role="codebase-evidence",
            title="Codebase evidence",
            prompt="Find what the code, tests and config say about the question; cite them.",
        ),
        Lens(
            role="docs-history",
            title="Docs and history",
            prompt="Find what the README, docs, comments and git history say about the "
            "question, and where they disagree with the code.",
        ),
        Lens(
            role="web-sources",
            title="Outside sources",
            prompt="Name the outside knowledge the question depends on (libraries, protocols, "
            "standards) and what the sources say about it.",
            from_band="medium",
            web=True,
        ),
        Lens(
            role="counterpoint",
            title="Counterpoint",
            prompt="Look for evidence against the most likely answer: exceptions, config "
            "switches, code paths that behave differently.",
            from_band="large",
        ),
    ],
    synthesizer_prompt="Write a research report: ## Answer first (direct, two or three "
    "sentences), then ## Findings with trust class and citations, ## Open questions with what "
    "would settle each, and ## Conflicts. Keep citations exactly as given. Name failed agents.",
)
