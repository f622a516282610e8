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

from flows.citations import MARK_VERIFIED, CitationCheck, annotate, check_all
from runs.engine.report.reporting import ConfinedLines

CORPUS = Path(__file__).parent / "data" / "citation_corpus"
TARGET = (CORPUS / "target").resolve()
KEY: dict[str, list[dict[str, str]]] = tomllib.loads((CORPUS / "key.toml").read_text())


@dataclass(frozen=True, kw_only=True)
class Outcome:
    answer: str
    cite: str
    form: str
    expect: str
    got: str | None  # the checker's status, or None when it did not see the citation

    @property
    def true_citation(self) -> bool:
        return self.expect == "verified"

    @property
    def silently_passed(self) -> bool:
        """Neither verified nor flagged (missed), or a false citation shown as verified."""
        return self.got is None or (not self.true_citation and self.got == "verified")


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
                    answer=name,
                    cite=cite,
                    form=entry["form"],
                    expect=entry["expect"],
                    got=match.status.value if match else None,
                )
            )
        unexpected += [f"{name}: {c.citation.label}" for rest in found.values() for c in rest]
    return outcomes, unexpected


def _report(outcomes: list[Outcome]) -> str:
    by_form: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        kind = "true" if o.true_citation else "false"
        by_form[o.form.removesuffix(" + quote")][f"{kind}"] += 1
        if o.got is None:
            by_form[o.form.removesuffix(" + quote")][f"{kind} missed"] += 1
        elif o.true_citation and o.got == "verified":
            by_form[o.form.removesuffix(" + quote")]["true verified"] += 1
        elif not o.true_citation and o.got != "verified":
            by_form[o.form.removesuffix(" + quote")]["false flagged"] += 1
    lines = [f"{'form':36} {'true verified':>14} {'false flagged':>14} {'missed':>7}"]
    for form, n in sorted(by_form.items()):
        lines.append(
            f"{form:36} {n['true verified']:>6}/{n['true']:<7} {n['false flagged']:>6}/{n['false']:<7}"
            f" {n['true missed'] + n['false missed']:>7}"
        )
    true = [o for o in outcomes if o.true_citation]
    false = [o for o in outcomes if not o.true_citation]
    verified = sum(o.got == "verified" for o in true)
    flagged = sum(o.got not in (None, "verified") for o in false)
    missed = sum(o.got is None for o in outcomes)
    silent = sum(o.silently_passed for o in outcomes)
    lines += [
        f"citation corpus: {len(KEY)} answers, {len(by_form)} forms, {len(outcomes)} citations",
        f"  true citations verified: {verified}/{len(true)} ({100 * verified / len(true):.1f}%)",
        f"  false citations flagged: {flagged}/{len(false)} ({100 * flagged / len(false):.1f}%)",
        f"  missed (neither verified nor flagged): {missed}; silently passed: {silent}",
    ]
    return "\n".join(lines)


def test_the_corpus_covers_at_least_twelve_forms_true_and_false():
    """The key itself: enough forms, each seen both as a true and as a false citation."""
    forms: dict[str, set[bool]] = defaultdict(set)
    for entries in KEY.values():
        for entry in entries:
            forms[entry["form"].removesuffix(" + quote")].add(entry["expect"] == "verified")
    both = [form for form, kinds in forms.items() if kinds == {True, False}]
    assert len(both) >= 12, sorted(both)
    assert len(KEY) >= 6


def test_true_citations_are_verified_and_false_ones_flagged_and_none_pass_silently(
    capsys: pytest.CaptureFixture[str],
):
    """>= 95% of true citations verified, 100% of false ones flagged (with the right reason)."""
    outcomes, unexpected = _outcomes()
    with capsys.disabled():
        print("\n" + _report(outcomes))
    true = [o for o in outcomes if o.true_citation]
    wrong_true = [o for o in true if o.got != "verified"]
    assert len(wrong_true) <= 0.05 * len(true), wrong_true
    wrong_false = [o for o in outcomes if not o.true_citation and o.got != o.expect]
    assert wrong_false == []
    assert [o for o in outcomes if o.silently_passed] == []
    assert unexpected == [], "times, versions, URLs and hosts are not citations"


@pytest.mark.parametrize("name", sorted(KEY))
def test_every_checked_citation_carries_a_visible_mark(name: str):
    """In the annotated Markdown each citation is followed by ✓ or an [unverified: ...] label."""
    text = _text(name)
    checks = _checked(name)
    marked = annotate(text, checks)
    for check in checks:
        if check.citation.in_code_block:
            assert f"`{check.citation.label}` " in marked
        elif check.verified:
            assert marked.count(MARK_VERIFIED) >= 1
    broken = {
        c.citation.end_offset for c in checks if not c.verified and not c.citation.in_code_block
    }
    blocks = [c for c in checks if c.citation.in_code_block and not c.verified]
    assert marked.count("**[unverified:") == len(broken) + len(blocks)
    verified_marks = {c.citation.end_offset for c in checks if c.verified}
    assert marked.count(MARK_VERIFIED) >= len(verified_marks - broken)
