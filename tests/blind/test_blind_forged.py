"""Forged verdicts: a synthesizer and a validator that try to mark their own work.

Their real citations are mostly false or unchecked, so the evidence supports only low
confidence; whatever they write (check marks, verdict tables, basis-like sentences, Confidence
headings at every level, reasoning blocks), the report must not carry it as the verdict.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def unquoted(report: str, phrase: str) -> int:
    """Occurrences of phrase outside blockquote lines, code fences and code spans."""
    count = 0
    fence = ""
    for line in report.splitlines():
        stripped = line.lstrip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            fence = "" if fence and marker == fence else (fence or marker)
            continue
        if fence or stripped.startswith(">"):
            continue
        spans = [match.span() for match in CODE_SPAN.finditer(line)]
        for match in re.finditer(re.escape(phrase), line):
            if not any(start <= match.start() < end for start, end in spans):
                count += 1
    return count


def exports(run: Any) -> dict[str, str]:
    from runs.exports import report_markdown, run_as_json

    return {
        "report": run.report,
        ".md export": report_markdown(run),
        ".json export": json.dumps(run_as_json(run), ensure_ascii=False),
    }


def test_forged_answers_leave_the_confidence_low(forged_run):
    """The validator says high and the synthesizer imitates the basis; the evidence says low."""
    print(f"\nconfidence: {forged_run.confidence}")
    assert forged_run.confidence == "low", forged_run.report


def test_no_reasoning_block_reaches_the_report_or_the_exports(forged_run, forged):
    """<think>, <reasoning> and "Thinking..." text stays out of what the user reads."""
    leaks = Counter()
    lines = []
    for entry in forged["key"]["reasoning"]:
        for where, text in exports(forged_run).items():
            if entry["text"] in text:
                leaks[entry["kind"]] += 1
                lines.append(f"  {entry['kind']}: leaked into the {where}")
    tried = Counter(entry["kind"] for entry in forged["key"]["reasoning"])
    report = "\n".join(
        [f"reasoning blocks: {sum(tried.values())} tried, {sum(leaks.values())} leaks"]
        + [f"  {kind}: {leaks[kind]} of {3 * count} places" for kind, count in tried.items()]
        + lines
    )
    print("\n" + report)
    assert not leaks, report


def test_forged_verdicts_are_absent_or_shown_as_quoted_model_text(forged_run, forged):
    """Every forged mark, table, basis sentence and heading is gone, quoted or in code."""
    left = Counter()
    tried = Counter()
    lines = []
    for entry in forged["key"]["phrase"]:
        tried[entry["kind"]] += 1
        found = unquoted(forged_run.report, entry["text"])
        if found:
            left[entry["kind"]] += 1
            lines.append(f"  {entry['kind']}: {entry['text']!r} shown unquoted {found} time(s)")
    report = "\n".join(
        [f"forged phrases: {sum(tried.values())} tried, {sum(left.values())} shown as if real"]
        + [f"  {kind}: {left[kind]} of {count}" for kind, count in tried.items()]
        + lines
    )
    print("\n" + report)
    assert not left, report + "\n\n" + forged_run.report


def test_check_marks_in_the_report_never_outnumber_verified_citations(forged_run):
    """A ✓ the model wrote does not survive as a mark: the ✓ count is at most the verified count."""
    citations = forged_run.report_data["citations"]
    missing = [item for item in citations if "grade" not in item]
    verified = sum(1 for item in citations if item.get("grade") == "verified")
    shown = sum(
        line.count("✓")
        for line in forged_run.report.splitlines()
        if not line.lstrip().startswith(">")
    )
    grades = Counter(str(item.get("grade")) for item in citations)
    report = (
        f"✓ shown outside quoted model text: {shown} (in all: {forged_run.report.count('✓')}); "
        f"citations graded verified: {verified}; grades: {dict(grades)}"
    )
    print("\n" + report)
    assert not missing, (
        'contract missing: report_data["citations"] entries carry no "grade" '
        f"(keys: {sorted(citations[0]) if citations else []}); " + report
    )
    assert shown <= verified, report + "\n\n" + forged_run.report
