from __future__ import annotations

from flows.models import FlowKind
from flows.spine import Lens, spine_flow

FLOW = spine_flow(
    slug="investigate",
    title="Investigate",
    description="Trace a bug or behaviour to its cause through the code, with hypotheses.",
    kind=FlowKind.ANALYSIS,
    family="investigation",
    in_slash_menu=True,
    lenses=[
        Lens(
            role="reproduction",
            title="Reproduction",
            prompt="Find the entry points and inputs that lead to the behaviour in the focus "
            "text; describe how to reproduce it, citing the code path.",
        ),
        Lens(
            role="root-cause",
            title="Root cause",
            prompt="Follow the code path to the most likely cause; read each function on the "
            "way and cite it. Give the leading hypothesis and its evidence.",
        ),
        Lens(
            role="recent-changes",
            title="Recent changes",
            prompt="Use git history (where available) and TODO/FIXME notes to find changes "
            "near the suspected code that could have introduced the behaviour.",
            from_band="medium",
        ),
        Lens(
            role="alternatives",
            title="Alternative hypotheses",
            prompt="List other causes that would produce the same symptom, with the evidence "
            "for and against each.",
            from_band="large",
        ),
    ],
    synthesizer_prompt="Write an investigation report: ## Leading hypothesis with its evidence, "
    "## Reproduction, ## Alternatives (for/against), ## Next verification step, ## No-evidence "
    "items. Keep citations exactly as given. Name failed agents.",
)
