from __future__ import annotations

from flows.models import FlowKind
from flows.spine import Lens, spine_flow

FLOW = spine_flow(
    slug="code-review",
    title="Code review",
    description="Review the code for defects, risks and maintainability, with cited evidence.",
    kind=FlowKind.ANALYSIS,
    family="review",
    in_slash_menu=True,
    lenses=[
        Lens(
            role="correctness",
            title="Correctness",
            prompt="Look for logic errors, unhandled errors, edge cases and broken contracts "
            "between functions. Read the code paths you flag.",
        ),
        Lens(
            role="security",
            title="Security",
            prompt="Look for injection, unsafe deserialisation, secrets in code, missing "
            "authorisation and unsafe subprocess or file handling.",
        ),
        Lens(
            role="maintainability",
            title="Maintainability",
            prompt="Look for tangled responsibilities, duplication, dead code and names that "
            "mislead. Flag only what makes the next change harder.",
            from_band="medium",
        ),
        Lens(
            role="tests",
            title="Tests",
            prompt="Look at what the tests cover and what they miss; flag behaviour that "
            "matters and has no test, and tests that cannot fail.",
            from_band="medium",
        ),
        Lens(
            role="performance",
            title="Performance",
            prompt="Look for work repeated in loops, N+1 queries, unbounded reads and blocking "
            "calls on hot paths.",
            from_band="large",
        ),
        Lens(
            role="docs",
            title="Documentation",
            prompt="Check that README, docstrings and comments agree with the code they "
            "describe; flag the places where they disagree.",
            from_band="large",
        ),
    ],
    synthesizer_prompt="Merge the specialists' findings into one code-review report: "
    "## Findings ordered by severity (critical, high, medium, low), each with its trust class "
    "and citation; then ## No-evidence items; then ## Conflicts. Keep every citation exactly "
    "as the specialist gave it. Name any agent that failed and the lens that is not covered.",
)
