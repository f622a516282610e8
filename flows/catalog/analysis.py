"""The other read-only analysis flows of the slash menu, each on the shared spine."""

from __future__ import annotations

from flows.models import FlowDef, FlowKind
from flows.spine import Lens, spine_flow


def _analysis(
    slug: str, title: str, description: str, family: str, lenses: list[Lens], report: str
) -> FlowDef:
    return spine_flow(
        slug=slug,
        title=title,
        description=description,
        kind=FlowKind.ANALYSIS,
        family=family,
        in_slash_menu=True,
        lenses=lenses,
        synthesizer_prompt=report + " Keep every citation exactly as the specialist gave it; "
        "name any agent that failed and the lens that is not covered.",
    )


ARCHITECTURAL_ANALYSIS = _analysis(
    "architectural-analysis",
    "Architectural analysis",
    "Map the system's structure, boundaries and dependencies, and where they strain.",
    "review",
    [
        Lens(
            role="structure",
            title="Structure",
            prompt="Map the modules, their responsibilities and entry points; cite them.",
        ),
        Lens(
            role="dependencies",
            title="Dependencies",
            prompt="Trace which modules import which; flag cycles and layering breaks.",
        ),
        Lens(
            role="data-flow",
            title="Data flow",
            from_band="medium",
            prompt="Follow the main data from input to storage to output; cite each hop.",
        ),
        Lens(
            role="boundaries",
            title="Boundaries",
            from_band="large",
            prompt="Find where external systems are touched and how failures cross them.",
        ),
    ],
    "Write an architecture report: ## Overview (components and their jobs), ## Findings "
    "(strains, with severity and citations), ## No-evidence items.",
)

SECURITY_REVIEW = _analysis(
    "security-review",
    "Security review",
    "Find vulnerabilities: injection, secrets, authorisation, unsafe input and file handling.",
    "review",
    [
        Lens(
            role="security",
            title="Injection and input",
            prompt="Look for injection (SQL, shell, template), unsafe deserialisation and "
            "unvalidated input reaching dangerous sinks.",
        ),
        Lens(
            role="secrets",
            title="Secrets and config",
            prompt="Look for credentials in code or config, debug modes, weak crypto.",
        ),
        Lens(
            role="authz",
            title="Authentication and authorisation",
            from_band="medium",
            prompt="Check who may call what; flag missing or bypassable checks.",
        ),
        Lens(
            role="supply-chain",
            title="Dependencies",
            from_band="large",
            prompt="List dependencies and pinning; flag unpinned or risky ones (web claims "
            "about known vulnerabilities are single-source unless corroborated).",
            web=True,
        ),
    ],
    "Write a security report: ## Findings by severity (critical, high, medium, low) with "
    "trust class, citation and exploit sketch; ## No-evidence items; ## Conflicts.",
)

GAP_ANALYSIS = _analysis(
    "gap-analysis",
    "Gap analysis",
    "Compare what the project claims or needs with what the code actually does.",
    "review",
    [
        Lens(
            role="claims",
            title="Claims",
            prompt="Collect what README, docs and the focus text say the system does.",
            web=True,
        ),
        Lens(
            role="reality",
            title="Reality",
            prompt="Check each claim against the code; cite where it holds or breaks.",
        ),
        Lens(
            role="tests",
            title="Test coverage",
            from_band="medium",
            prompt="Find which claims are protected by tests and which are not.",
        ),
    ],
    "Write a gap report: ## Gaps (claim, reality, evidence), ## Holds (claims verified), "
    "## No-evidence items.",
)

DATA_REVIEW = _analysis(
    "data-review",
    "Data review",
    "Review schemas, migrations, queries and data handling for integrity and safety.",
    "review",
    [
        Lens(
            role="schema",
            title="Schema",
            prompt="Read models, schemas and migrations; flag missing constraints/indexes.",
        ),
        Lens(
            role="queries",
            title="Queries",
            prompt="Find queries; flag N+1 patterns, unbounded reads, injection risks.",
        ),
        Lens(
            role="privacy",
            title="Personal data",
            from_band="medium",
            prompt="Find personal or sensitive data and how it is stored, logged, deleted.",
        ),
    ],
    "Write a data review: ## Findings by severity with citations, ## No-evidence items.",
)

DEVOPS_REVIEW = _analysis(
    "devops-review",
    "DevOps review",
    "Review build, CI, deployment and runtime configuration for reliability and safety.",
    "review",
    [
        Lens(
            role="build",
            title="Build and CI",
            prompt="Read build files and CI config; flag flaky, slow or unsafe steps.",
        ),
        Lens(
            role="runtime",
            title="Runtime config",
            prompt="Read service, container and environment config; flag risky defaults.",
        ),
        Lens(
            role="observability",
            title="Observability",
            from_band="medium",
            prompt="Find logging, metrics and health checks; flag blind spots.",
        ),
    ],
    "Write a DevOps review: ## Findings by severity with citations, ## No-evidence items.",
)

ISSUE_TRIAGE = _analysis(
    "issue-triage",
    "Issue triage",
    "Triage a reported problem: locate the code involved, judge severity, suggest an owner.",
    "investigation",
    [
        Lens(
            role="locate",
            title="Locate",
            prompt="Find the code the issue in the focus text is about; cite it.",
        ),
        Lens(
            role="impact",
            title="Impact",
            prompt="Judge who is affected and how badly, from the code paths involved.",
            web=True,
        ),
        Lens(
            role="history",
            title="History",
            from_band="medium",
            prompt="Use git history to find recent changes and their authors near the code.",
        ),
    ],
    "Write a triage note: ## Verdict (severity, area, suggested next step), ## Evidence, "
    "## No-evidence items.",
)

PROJECT_DISCOVERY = _analysis(
    "project-discovery",
    "Project discovery",
    "Orient a newcomer: what the project is, how it is built, run and tested, and where to start.",
    "research",
    [
        Lens(
            role="purpose",
            title="Purpose",
            prompt="Find what the project is for and who uses it, from README and code.",
        ),
        Lens(
            role="layout",
            title="Layout",
            prompt="Map the directories and the main modules; cite entry points.",
        ),
        Lens(
            role="workflow",
            title="Build and test",
            from_band="medium",
            prompt="Find how to install, run and test it; cite the scripts and config.",
        ),
    ],
    "Write an orientation guide: ## What it is, ## Where things are, ## How to run and test, "
    "## Where to start, each with citations.",
)

TEST_PLANNING = _analysis(
    "test-planning",
    "Test planning",
    "Plan the tests that matter: what is untested, what is risky, and in which order to cover it.",
    "planning",
    [
        Lens(
            role="coverage",
            title="Current coverage",
            prompt="Find the existing tests and what behaviour they pin down.",
        ),
        Lens(
            role="risk",
            title="Risky behaviour",
            prompt="Find behaviour that matters and has no test; cite the code.",
        ),
        Lens(
            role="seams",
            title="Test seams",
            from_band="medium",
            prompt="Find where tests can hook in (pure functions, interfaces, fixtures).",
        ),
    ],
    "Write a test plan: ## Priorities (behaviour, risk, cited code, proposed test), "
    "## Cut list (tests not worth writing now, with reopen triggers).",
)

FLOWS = (
    ARCHITECTURAL_ANALYSIS,
    SECURITY_REVIEW,
    GAP_ANALYSIS,
    DATA_REVIEW,
    DEVOPS_REVIEW,
    ISSUE_TRIAGE,
    PROJECT_DISCOVERY,
    TEST_PLANNING,
)
