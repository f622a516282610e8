"""The flow catalog, validated at import."""

from __future__ import annotations

from flows.catalog import analysis, code_review, drafts, investigate, research
from flows.models import BANDS, FlowDef

# Catalog order is menu order: the slash menu's analysis flows, then the draft flows.
_FLOWS: tuple[FlowDef, ...] = (
    research.FLOW,
    investigate.FLOW,
    code_review.FLOW,
    *analysis.FLOWS,
    *drafts.FLOWS,
)
CATALOG: dict[str, FlowDef] = {flow.slug: flow for flow in _FLOWS}
if len(CATALOG) != len(_FLOWS):  # two modules claiming one slug is a definition bug
    raise ValueError("duplicate flow slugs in the catalog")


class UnknownFlow(LookupError):
    def __init__(self, slug: str) -> None:
        self.slug = slug
        super().__init__(f"unknown flow {slug!r}; valid flows: {', '.join(sorted(CATALOG))}")


class NotInSlashMenu(LookupError):
    def __init__(self, slug: str) -> None:
        self.slug = slug
        names = ", ".join(flow.slug for flow in slash_menu())
        super().__init__(
            f"{slug!r} is not a slash command; type / for one of: {names}. "
            "The Orchestrator button offers the other flows."
        )


class UnknownBand(ValueError):
    def __init__(self, band: str) -> None:
        super().__init__(f"unknown band {band!r}; valid bands: {', '.join(BANDS)}")


def get_flow(slug: str) -> FlowDef:
    try:
        return CATALOG[slug]
    except KeyError:
        raise UnknownFlow(slug) from None


def get_slash_flow(slug: str) -> FlowDef:
    """A flow the slash command may launch: only the slash menu's (the read-only analyses);
    an unknown one gets the same sentence, listing what the menu offers."""
    flow = CATALOG.get(slug)
    if flow is None or not flow.in_slash_menu:
        raise NotInSlashMenu(slug)
    return flow


def check_band(band: str) -> str:
    if band not in BANDS:
        raise UnknownBand(band)
    return band


def slash_menu() -> list[FlowDef]:
    return [flow for flow in CATALOG.values() if flow.in_slash_menu]
