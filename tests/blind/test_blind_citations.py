"""Blind citation corpus: every keyed citation must carry the mark the report promises.

The answers and the key (data/citations/) were written from the promise alone: ✓ only where
what the citation claims is at the cited lines, a weaker mark where nothing is checkable, a
flag with a reason otherwise, and no citation-like string left without a mark.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.blind.conftest import contract


def _span(text: str, locator: str) -> tuple[int, int]:
    start = text.index(locator)
    return start, start + len(locator)


def _overlapping(checks: list[Any], span: tuple[int, int]) -> list[Any]:
    return [
        check
        for check in checks
        if check.citation.start_offset < span[1] and span[0] < check.citation.end_offset
    ]


def measure(key: list[dict[str, Any]], answers: dict[str, str], target: Path) -> dict[str, Any]:
    """Check every answer and give each keyed citation the grade of the checks over it."""
    check_all, grade = contract("flows.citations", "check_all", "Grade")
    (confined_lines,) = contract("runs.engine.report.reporting", "ConfinedLines")
    checks = {
        name: list(check_all(text, confined_lines(str(target)))) for name, text in answers.items()
    }
    rows = []
    for entry in key:
        found = _overlapping(
            checks[entry["answer"]], _span(answers[entry["answer"]], entry["locator"])
        )
        grades = {check.grade for check in found}
        if not found:
            mark = "no mark"
        elif grade.VERIFIED in grades and grade.FLAGGED not in grades:
            mark = "verified"
        elif grade.FLAGGED in grades:
            mark = "flagged"
        elif grade.LINES_EXIST in grades:
            mark = "lines exist"
        else:
            mark = "not checked"
        shown_check = grade.VERIFIED in grades
        reasons = "; ".join(str(check.status) for check in found)
        rows.append({**entry, "mark": mark, "shown_check": shown_check, "reasons": reasons})
    return {"rows": rows}


def summary(rows: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
    true_checkable = [r for r in rows if r["truth"] == "true" and r["checkable"]]
    true_plain = [r for r in rows if r["truth"] == "true" and not r["checkable"]]
    false = [r for r in rows if r["truth"] == "false"]
    verified = [r for r in true_checkable if r["mark"] == "verified"]
    false_shown = [r for r in false if r["shown_check"]]
    unmarked = [r for r in rows if r["mark"] == "no mark"]
    share = 100 * len(verified) / len(true_checkable)
    lines = [
        f"true checkable citations verified: {len(verified)}/{len(true_checkable)} ({share:.0f}%)",
        "true uncheckable citations by grade: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["mark"] for r in true_plain).items())),
        "false citations by grade: "
        + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["mark"] for r in false).items())),
        f"false citations shown with ✓: {len(false_shown)}",
        f"citations with no check at all (no mark): {len(unmarked)}",
        "misses:",
    ]
    for r in rows:
        miss = (
            (r["truth"] == "true" and r["checkable"] and r["mark"] != "verified")
            or (r["truth"] == "false" and r["shown_check"])
            or r["mark"] == "no mark"
        )
        if miss:
            lines.append(
                f"  [{r['truth']}, {r['mark']}] {r['form']}: {r['answer']}: {r['locator']!r}"
                + (f" (why false: {r['why']})" if r.get("why") else "")
                + (f" -> {r['reasons']}" if r["reasons"] else "")
            )
    counts = {
        "verified": len(verified),
        "true_checkable": len(true_checkable),
        "false_shown": len(false_shown),
        "unmarked": len(unmarked),
    }
    return "\n".join(lines), counts


def test_the_key_names_each_citation_once_in_an_existing_answer(citation_key, citation_answers):
    """A harness check: every locator occurs exactly once in its answer, and the key's values
    are the ones the measure reads."""
    assert len(citation_answers) >= 14
    assert len(citation_key) >= 150
    for entry in citation_key:
        text = citation_answers[entry["answer"]]
        assert text.count(entry["locator"]) == 1, entry
        assert entry["truth"] in ("true", "false"), entry
        assert isinstance(entry["checkable"], bool), entry
        assert entry["form"], entry
        assert entry["truth"] == "true" or entry.get("why"), entry
    shares = Counter(entry["truth"] for entry in citation_key)
    assert 0.55 <= shares["true"] / len(citation_key) <= 0.65, shares


def test_the_target_has_the_shapes_people_cite(citation_target):
    """A space in a name, a CRLF file, two utils.py, a 1,000-line module, five languages."""
    assert (citation_target / "tools" / "export report.py").is_file()
    assert b"\r\n" in (citation_target / "app" / "legacy_import.py").read_bytes()
    assert len(list(citation_target.rglob("utils.py"))) == 2
    assert len((citation_target / "app" / "ledger.py").read_text().splitlines()) >= 1000
    suffixes = {path.suffix for path in citation_target.rglob("*") if path.is_file()}
    assert {".py", ".tsx", ".go", ".yaml", ".md"} <= suffixes


def test_blind_citations_get_the_mark_they_deserve(citation_key, citation_answers, citation_target):
    """True checkable citations are verified (95% or more), no false citation shows ✓, and
    every citation-like string carries some mark."""
    measured = measure(citation_key, citation_answers, citation_target)
    report, counts = summary(measured["rows"])
    print("\n" + report)
    assert counts["verified"] >= 0.95 * counts["true_checkable"], report
    assert counts["false_shown"] == 0, report
    assert counts["unmarked"] == 0, report
