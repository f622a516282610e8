"""The citation checker on realistic model answers: every form, true and false, against a key.

tests/data/citation_corpus/ holds answers written in the styles of current open models
(Qwen3, Qwen3-Coder, DeepSeek-R1 with its <think> reasoning, DeepSeek-V3, Llama, Mistral,
gpt-oss), a small target project they cite, and key.toml: every citation-like string in each
answer, the form it is written in, and what the checker must say. The files are read through
the engine's own reader (runs.engine.report.reporting.ConfinedLines), so confinement and secrets apply.
"""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.citations import (
    MARK_LINES_EXIST,
    MARK_VERIFIED,
    CitationCheck,
    Grade,
    annotate,
    check_all,
)
from runs.engine.report.reporting import ConfinedLines

CORPUS = Path(__file__).parent / "data" / "citation_corpus"
TARGET = (CORPUS / "target").resolve()
KEY: dict[str, list[dict[str, str]]] = tomllib.loads((CORPUS / "key.toml").read_text())


TRUE_GRADES = (Grade.VERIFIED.value, Grade.LINES_EXIST.value)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    answer: str
    cite: str
    form: str
    expect: str  # a grade for a true citation (verified, lines exist); a flag's status else
    got: CitationCheck | None  # what the checker said, or None when it did not see it

    @property
    def true_citation(self) -> bool:
        return self.expect in TRUE_GRADES

    @property
    def grade(self) -> str:
        return self.got.grade.value if self.got else "missed"

    @property
    def as_expected(self) -> bool:
        if self.got is None:
            return False
        if self.true_citation:
            return self.grade == self.expect
        return self.got.grade == Grade.FLAGGED and self.got.status.value == self.expect


@pytest.fixture(autouse=True)
def _corpus_target_is_allowed(settings: Any) -> None:
    """The corpus cites a project kept with the tests; the checker reads only allowed roots."""
    settings.ORCHESTRATOR_ALLOWED_ROOTS = [TARGET.resolve()]


def _text(name: str) -> str:
    return (CORPUS / name).read_text().replace("{TARGET}", str(TARGET))


def _checked(name: str) -> list[CitationCheck]:
    return check_all(_text(name), ConfinedLines(str(TARGET)))


def _outcomes() -> tuple[list[Outcome], list[str]]:
    """Each key entry matched with what the checker found; and what it found that is unkeyed."""
    outcomes = []
    unexpected = []
    for name, entries in KEY.items():
        found: dict[str, list[CitationCheck]] = defaultdict(list)
        for check in _checked(name):
            found[check.citation.label].append(check)
        for entry in entries:
            cite = entry["cite"].replace("{TARGET}", str(TARGET))
            match = found[cite].pop(0) if found[cite] else None
            outcomes.append(
                Outcome(
                    answer=name, cite=cite, form=entry["form"], expect=entry["expect"], got=match
                )
            )
        unexpected += [f"{name}: {c.citation.label}" for rest in found.values() for c in rest]
    return outcomes, unexpected


def _report(outcomes: list[Outcome]) -> str:
    """Counts by form and by grade, true and false citations apart."""
    by_form: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        kind = "true" if o.true_citation else "false"
        by_form[o.form.removesuffix(" + quote")][f"{kind} {o.grade}"] += 1
    grades = [g.value for g in Grade] + ["missed"]
    head = f"{'form':38}" + "".join(f"{g:>13}" for g in grades)
    lines = [head]
    for form, n in sorted(by_form.items()):
        cells = "".join(f"{n[f'true {g}']:>6}/{n[f'false {g}']:<6}" for g in grades)
        lines.append(f"{form:38}{cells}")
    true = [o for o in outcomes if o.true_citation]
    false = [o for o in outcomes if not o.true_citation]
    lines += ["(each cell: true/false citations)", ""]
    lines.append(
        f"citation corpus: {len(KEY)} answers, {len(by_form)} forms, {len(outcomes)} citations"
    )
    for label, group in (("true", true), ("false", false)):
        counts = Counter(o.grade for o in group)
        shown = ", ".join(f"{g} {counts[g]}" for g in grades)
        lines.append(f"  {label} citations ({len(group)}): {shown}")
    return "\n".join(lines)


def test_the_corpus_covers_at_least_twelve_forms_true_and_false():
    """The key itself: enough forms, each seen both as a true and as a false citation."""
    forms: dict[str, set[bool]] = defaultdict(set)
    for entries in KEY.values():
        for entry in entries:
            forms[entry["form"].removesuffix(" + quote")].add(entry["expect"] in TRUE_GRADES)
    both = [form for form, kinds in forms.items() if kinds == {True, False}]
    assert len(both) >= 12, sorted(both)
    assert len(KEY) >= 6


def test_every_citation_gets_the_grade_its_key_gives_and_no_false_one_a_check_mark(
    capsys: pytest.CaptureFixture[str],
):
    """True citations are verified (or "lines exist" when they claim nothing checkable); false
    ones are flagged with the right reason; none is missed and none is shown with a ✓."""
    outcomes, unexpected = _outcomes()
    with capsys.disabled():
        print("\n" + _report(outcomes))
    assert [o for o in outcomes if not o.true_citation and o.grade == "verified"] == []
    assert [o for o in outcomes if o.got is None] == []
    assert [(o.answer, o.cite, o.expect, o.got and o.got.reason) for o in outcomes
            if not o.as_expected] == []  # fmt: skip
    assert unexpected == [], "times, versions, URLs and hosts are not citations"


@pytest.mark.parametrize("name", sorted(KEY))
def test_every_checked_citation_carries_a_visible_mark_of_its_grade(name: str):
    """In the annotated Markdown each citation is followed by a mark that names its grade."""
    checks = _checked(name)
    marked = annotate(_text(name), checks)
    for grade in Grade:
        wanted = {_mark_key(c) for c in checks if c.grade == grade}
        shown = {
            Grade.VERIFIED: MARK_VERIFIED,
            Grade.LINES_EXIST: f"**[{MARK_LINES_EXIST}]**",
            Grade.FLAGGED: "**[unverified:",
            Grade.NOT_CHECKED: "**[not checked",
        }[grade]
        assert marked.count(shown) >= len(wanted), grade
    assert "**[unverified:" not in marked or any(c.grade == Grade.FLAGGED for c in checks)


def _mark_key(check: CitationCheck) -> tuple[int, str]:
    return check.citation.mark_offset, check.citation.label
