"""The shape of a flow: a DAG of agent steps, with roster breadth per band and depth limits.

Pure pydantic, no Django. Every flow is validated when the catalog is imported, so a broken
definition stops the service at start-up instead of failing in the middle of a run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Band = Literal["small", "medium", "large"]
BANDS: tuple[Band, ...] = ("small", "medium", "large")
SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,48}$"


class StepKind(StrEnum):
    SPECIALIST = "specialist"  # reads the target through a lens and reports findings
    SYNTHESIZER = "synthesizer"  # merges the specialists' findings into the report
    VALIDATOR = "validator"  # the adversarial gate: checks the report, emits Summary + Confidence


class FlowKind(StrEnum):
    ANALYSIS = "analysis"  # read-only analysis / review; the report is a findings report
    DRAFT = "draft"  # planning / authoring; the report is a draft document


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Depth(Frozen):
    """How deep one agent may go: model turns, tool calls and output tokens per turn."""

    max_turns: int = Field(ge=1, le=100)
    max_tool_calls: int = Field(ge=0, le=500)
    max_output_tokens: int = Field(ge=64, le=65_536)


class DepthLimits(Frozen):
    normal: Depth = Depth(max_turns=12, max_tool_calls=24, max_output_tokens=4096)
    fast: Depth = Depth(max_turns=4, max_tool_calls=6, max_output_tokens=1024)

    def for_mode(self, *, fast: bool) -> Depth:
        return self.fast if fast else self.normal

    @model_validator(mode="after")
    def _fast_is_not_deeper(self) -> Self:
        for field in ("max_turns", "max_tool_calls", "max_output_tokens"):
            if getattr(self.fast, field) > getattr(self.normal, field):
                raise ValueError(f"fast mode must not allow more {field} than normal mode")
        return self


class StepDef(Frozen):
    key: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")
    role: str = Field(pattern=SLUG_PATTERN)
    title: str = Field(min_length=1, max_length=80)
    kind: StepKind
    prompt: str = Field(min_length=20)
    depends_on: tuple[str, ...] = ()
    # Bands whose roster includes this step; breadth grows small -> medium -> large.
    bands: frozenset[Band] = frozenset(BANDS)
    # A synthesizer still runs when some specialists failed, and says which; other steps are
    # skipped when a dependency did not succeed.
    tolerates_failed_deps: bool = False
    # Offered web_search and web_fetch when the run allows the web (the outside-sources lens).
    web: bool = False


class FlowDef(Frozen):
    slug: str = Field(pattern=SLUG_PATTERN)
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(min_length=10, max_length=200)
    kind: FlowKind
    family: str = Field(pattern=SLUG_PATTERN)  # selects the validator checklist
    in_slash_menu: bool = False
    steps: tuple[StepDef, ...]
    depth: DepthLimits = DepthLimits()

    @model_validator(mode="after")
    def _is_a_valid_dag(self) -> Self:
        keys = [step.key for step in self.steps]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise ValueError(f"flow {self.slug}: duplicate step keys {sorted(duplicates)}")
        known = set(keys)
        for step in self.steps:
            unknown = set(step.depends_on) - known
            if unknown:
                raise ValueError(
                    f"flow {self.slug}: {step.key} depends on unknown {sorted(unknown)}"
                )
        _check_acyclic(self.slug, self.steps)
        for band in BANDS:
            _check_band_spine(self, band)
        return self

    def roster(self, band: Band) -> tuple[StepDef, ...]:
        """The steps this band runs, with dependencies narrowed to steps in the same roster."""
        included = {step.key for step in self.steps if band in step.bands}
        return tuple(
            step.model_copy(
                update={"depends_on": tuple(d for d in step.depends_on if d in included)}
            )
            for step in self.steps
            if step.key in included
        )

    def step(self, key: str) -> StepDef:
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)


def _check_acyclic(slug: str, steps: tuple[StepDef, ...]) -> None:
    deps = {step.key: set(step.depends_on) for step in steps}
    done: set[str] = set()
    while deps:
        ready = [key for key, wanted in deps.items() if wanted <= done]
        if not ready:
            raise ValueError(f"flow {slug}: dependency cycle among {sorted(deps)}")
        for key in ready:
            done.add(key)
            del deps[key]


def _check_band_spine(flow: FlowDef, band: Band) -> None:
    """Every band runs specialists -> one synthesizer -> one validator gate at the end."""
    roster = flow.roster(band)
    by_kind = {kind: [s for s in roster if s.kind == kind] for kind in StepKind}
    where = f"flow {flow.slug} band {band}"
    if not by_kind[StepKind.SPECIALIST]:
        raise ValueError(f"{where}: needs at least one specialist")
    if len(by_kind[StepKind.SYNTHESIZER]) != 1 or len(by_kind[StepKind.VALIDATOR]) != 1:
        raise ValueError(f"{where}: needs exactly one synthesizer and one validator")
    synthesizer = by_kind[StepKind.SYNTHESIZER][0]
    validator = by_kind[StepKind.VALIDATOR][0]
    if synthesizer.key not in validator.depends_on:
        raise ValueError(f"{where}: the validator must depend on the synthesizer")
    if any(validator.key in step.depends_on for step in roster):
        raise ValueError(f"{where}: nothing may depend on the validator; it is the last gate")
    specialists = {s.key for s in by_kind[StepKind.SPECIALIST]}
    if not specialists & set(synthesizer.depends_on):
        raise ValueError(f"{where}: the synthesizer must depend on the specialists")
