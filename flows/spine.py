"""Build a flow on the shared spine: specialists -> synthesizer (report) -> validator (gate)."""

from __future__ import annotations

from dataclasses import dataclass

from flows.models import BANDS, Band, DepthLimits, FlowDef, FlowKind, StepDef, StepKind

SYNTHESIZER_KEY = "synthesis"
VALIDATOR_KEY = "validation"

VALIDATOR_PROMPT = """\
You are the adversarial validator. Read the report below as a sceptic: check each item of the
checklist, look for claims without evidence, citations that do not support the claim, and
failed agents whose lens is missing. You cannot raise the report's quality, only judge it."""


@dataclass(frozen=True, kw_only=True)
class Lens:
    """One specialist: its role, what it looks for, and the smallest band that includes it."""

    role: str
    title: str
    prompt: str
    from_band: Band = "small"
    web: bool = False  # reads outside sources: offered the web tools when the run allows it

    def bands(self) -> frozenset[Band]:
        return frozenset(BANDS[BANDS.index(self.from_band) :])


def spine_flow(
    *,
    slug: str,
    title: str,
    description: str,
    kind: FlowKind,
    family: str,
    lenses: list[Lens],
    synthesizer_prompt: str,
    in_slash_menu: bool = False,
    depth: DepthLimits | None = None,
) -> FlowDef:
    specialists = [
        StepDef(
            key=lens.role,
            role=lens.role,
            title=lens.title,
            kind=StepKind.SPECIALIST,
            prompt=lens.prompt,
            bands=lens.bands(),
            web=lens.web,
        )
        for lens in lenses
    ]
    synthesizer = StepDef(
        key=SYNTHESIZER_KEY,
        role="synthesizer",
        title="Synthesizer",
        kind=StepKind.SYNTHESIZER,
        prompt=synthesizer_prompt,
        depends_on=tuple(step.key for step in specialists),
        tolerates_failed_deps=True,
    )
    validator = StepDef(
        key=VALIDATOR_KEY,
        role="validator",
        title="Validator",
        kind=StepKind.VALIDATOR,
        prompt=VALIDATOR_PROMPT,
        depends_on=(SYNTHESIZER_KEY,),
    )
    return FlowDef(
        slug=slug,
        title=title,
        description=description,
        kind=kind,
        family=family,
        in_slash_menu=in_slash_menu,
        steps=(*specialists, synthesizer, validator),
        depth=depth or DepthLimits(),
    )
