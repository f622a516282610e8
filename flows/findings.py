"""The claims a report makes, read from its Markdown, each with where it sits in the text.

A finding is a list item (or a row of a findings table) that makes a claim: it has a bold
claim, a trust class, or a citation. Items nested under it are part of it. Sections that do
not make claims (Cut list, Open questions, Agents, Method) are skipped; items under a
No-evidence heading are no-evidence items. A report with no such items is read by its
headings, then by its cited paragraphs, and says so (`structured` is False for paragraphs).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from flows.citation_scan import MAX_SCAN_CHARS

TRUST_CLASSES = ("codebase", "web", "provided", "no evidence")
SEVERITIES = ("critical", "high", "medium", "low")
NO_EVIDENCE = "no evidence"

_ITEM = re.compile(r"(?P<indent>[ \t]*)(?:[-*+]|\d{1,3}[.)])[ \t]+(?P<text>\S.*)")
_HEADING = re.compile(r"[ \t]{0,3}(?P<hashes>#{1,6})(?:[ \t]+(?P<text>.*))?")
_FENCE = re.compile(r"[ \t]*(?:`{3,}|~{3,})")
_BOLD = re.compile(r"\*\*(?P<claim>[^*\n]{1,300})\*\*|__(?P<under>[^_\n]{1,300})__")
_TRUST = re.compile(
    r"[(\[](?P<trust>codebase|web|provided|no evidence)[^)\]\n]{0,200}[)\]]"
    r"|\btrust(?: class)?[*_]{0,2}[ \t]*[:=][*_ \t`]{0,4}"
    r"(?P<field>codebase|web|provided|no evidence)"
    r"|\|[ \t*_`]{0,4}(?P<cell>codebase|web|provided|no evidence)[ \t*_`]{0,4}(?=\|)",
    re.I,
)
# A field of a finding written one per line ("File:", "Line:", "Description:", ...): the
# fields together are one finding, not one each.
_FIELD = re.compile(
    r"[ \t>]*(?:(?:[-*+]|\d{1,3}[.)])[ \t]+)?[*_]{0,2}(?:file|path|location|lines?|description"
    r"|details?|recommendation|fix|remediation|suggested fix|severity|impact|trust(?: class)?"
    r"|evidence|code|snippet|category|type|risk|why|cwe|references?)[*_]{0,2}[ \t]*:",
    re.I,
)
_SEVERITY = re.compile(r"\b(critical|high|medium|low)\b", re.I)
_SKIPPED_SECTION = re.compile(
    r"cut list|open question|reopen|agents|method|not covered|what was not", re.I
)
_NUMBERING = re.compile(r"^[ \t]*(?:finding[ \t]*)?#?\d{1,3}[.):]?[ \t]*", re.I)
_NO_EVIDENCE_SECTION = re.compile(r"no[- ]evidence", re.I)
# | --- | :---: |, written so that no two parts can match the same spaces (no backtracking)
_TABLE_SEPARATOR = re.compile(
    r"[ \t]*(?:\|[ \t]*)?:?-{2,}:?[ \t]*(?:\|[ \t]*:?-{2,}:?[ \t]*)*(?:\|[ \t]*)?"
)


@dataclass(frozen=True, kw_only=True)
class Finding:
    claim: str
    trust: str  # one of TRUST_CLASSES, or "unlabelled" when the agent named none
    severity: str | None
    single_source: bool
    text: str  # the whole item as the report shows it
    start: int  # offsets of the item in the report body
    end: int

    @property
    def no_evidence(self) -> bool:
        return self.trust == NO_EVIDENCE


@dataclass(frozen=True, kw_only=True)
class ReadFindings:
    findings: list[Finding]
    structured: bool  # False when only cited paragraphs could be read as findings


def read_findings(body: str, cited_at: Sequence[int] = ()) -> ReadFindings:
    """The report's findings; `cited_at` are the offsets where citations begin.

    Read up to MAX_SCAN_CHARS, like the citations: a longer report is capped at medium.
    """
    body = body[:MAX_SCAN_CHARS]
    cited = sorted(cited_at)
    lines = list(_lines(body))
    items = _list_findings(body, lines, cited) + _table_findings(body, lines, cited)
    if items:
        return ReadFindings(findings=sorted(items, key=lambda f: f.start), structured=True)
    headed = _heading_findings(body, lines, cited)
    if headed:
        return ReadFindings(findings=headed, structured=True)
    return ReadFindings(findings=_paragraph_findings(body, lines, cited), structured=False)


def parse_findings(body: str) -> list[Finding]:
    """The report's list items that make a claim (citations not considered)."""
    return read_findings(body).findings


@dataclass(frozen=True, kw_only=True)
class _Line:
    start: int
    end: int
    text: str
    section: str  # the text of the nearest heading above
    in_code: bool


def _lines(body: str) -> Iterator[_Line]:
    section = ""
    fence = False
    offset = 0
    for raw in body.split("\n"):
        start, offset = offset, offset + len(raw) + 1
        if _FENCE.match(raw):
            fence = not fence
            yield _Line(start=start, end=start + len(raw), text=raw, section=section, in_code=True)
            continue
        heading = None if fence else _HEADING.fullmatch(raw)
        if heading:
            section = (heading["text"] or "").strip(" #*")
        yield _Line(start=start, end=start + len(raw), text=raw, section=section, in_code=fence)


def _list_findings(body: str, lines: list[_Line], cited: list[int]) -> list[Finding]:
    findings = []
    current: tuple[int, int, int, _Line] | None = None  # (indent, start, end, first line)
    fields = False  # the current finding is a group of field lines
    heading: _Line | None = None  # a heading with only blank lines since

    def close() -> None:
        if current is not None:
            _, start, end, first = current
            finding = _finding(body[start:end], start, end, first.section, cited)
            if finding is not None:
                findings.append(finding)

    for line in lines:
        if line.in_code:
            if current is not None:
                current = (current[0], current[1], line.end, current[3])
            continue
        item = _ITEM.fullmatch(line.text)
        if item is None and _HEADING.fullmatch(line.text):
            close()
            current, fields, heading = None, False, line
            continue
        if _FIELD.match(line.text):
            indent = len(line.text) - len(line.text.lstrip(" \t"))
            if current is not None and (fields or indent > current[0]):
                current = (current[0], current[1], line.end, current[3])
                continue
            close()
            first = heading if heading is not None else line
            current, fields = (indent, first.start, line.end, first), True
            if _SKIPPED_SECTION.search(line.section):
                current = None
            continue
        if line.text.strip():
            heading = None
        if item is not None:
            indent = len(item["indent"].expandtabs(4))
            if current is None or indent <= current[0]:
                close()
                current, fields = None, False
                if not _SKIPPED_SECTION.search(line.section):
                    current = (indent, line.start, line.end, line)
                continue
        if current is not None:
            if line.text.strip() and not line.text[:1].isspace() and item is None:
                close()  # a paragraph at the margin ends the list
                current = None
            else:
                current = (current[0], current[1], line.end, current[3])
    close()
    return findings


def _table_findings(body: str, lines: list[_Line], cited: list[int]) -> list[Finding]:
    """Rows of a table that has at least one row with a trust class or a citation."""
    findings: list[Finding] = []
    index = 1
    while index < len(lines):
        line = lines[index]
        if line.in_code or "|" not in line.text or not _TABLE_SEPARATOR.fullmatch(line.text):
            index += 1
            continue
        rows = []
        index += 1
        while index < len(lines) and "|" in lines[index].text and not lines[index].in_code:
            rows.append(lines[index])
            index += 1
        if _SKIPPED_SECTION.search(line.section):
            continue
        table = [_finding(r.text, r.start, r.end, r.section, cited, row=True) for r in rows]
        kept = [f for f in table if f is not None]
        if any(_TRUST.search(f.text) or _has_citation(cited, f.start, f.end) for f in kept):
            findings.extend(kept)
    return findings


def _heading_findings(body: str, lines: list[_Line], cited: list[int]) -> list[Finding]:
    """### headings as findings, each with the text down to the next heading."""
    marks = []
    for line in lines:
        heading = None if line.in_code else _HEADING.fullmatch(line.text)
        if heading:
            marks.append((line, len(heading["hashes"])))
    findings = []
    above: dict[int, str] = {}  # the latest heading text at each level
    for number, (line, level) in enumerate(marks):
        above = {k: v for k, v in above.items() if k < level}
        parent = above[max(above)] if above else ""
        above[level] = line.section
        if level < 3 or _SKIPPED_SECTION.search(parent) or _SKIPPED_SECTION.search(line.section):
            continue
        end = marks[number + 1][0].start - 1 if number + 1 < len(marks) else len(body)
        finding = _finding(body[line.start : end], line.start, end, parent, cited, row=True)
        if finding is not None:
            findings.append(finding)
    if any(_TRUST.search(f.text) or _has_citation(cited, f.start, f.end) for f in findings):
        return findings
    return []


def _paragraph_findings(body: str, lines: list[_Line], cited: list[int]) -> list[Finding]:
    findings = []
    start: int | None = None
    for line in [*lines, None]:
        if line is not None and line.text.strip() and not _HEADING.fullmatch(line.text):
            start = line.start if start is None else start
            continue
        if start is not None:
            end = (line.start - 1) if line is not None else len(body)
            if _has_citation(cited, start, end):
                finding = _finding(body[start:end], start, end, "", cited, row=True)
                if finding is not None:
                    findings.append(finding)
        start = None
    return findings


def _finding(
    text: str, start: int, end: int, section: str, cited: list[int], *, row: bool = False
) -> Finding | None:
    first = text.split("\n", 1)[0]
    item = _ITEM.fullmatch(first)
    shown = (item["text"] if item else first).strip(" |") + text[len(first) :]
    claim = next(
        (m for m in _BOLD.finditer(shown) if not m.group().rstrip("*_").endswith(":")), None
    )
    trust = _TRUST.search(shown)
    heading = _HEADING.fullmatch(first)
    if not (claim or trust or row or _has_citation(cited, start, end)):
        return None  # plain bullets (agent lists, notes) are not findings
    found = (trust["trust"] or trust["field"] or trust["cell"]) if trust else None
    label = found.lower() if found else "unlabelled"
    if label == "unlabelled" and _NO_EVIDENCE_SECTION.search(section):
        label = NO_EVIDENCE
    lowered = shown.lower()
    severity = _SEVERITY.search(lowered)
    claim_text = (claim["claim"] or claim["under"]) if claim else _first_words(shown)
    if heading and heading["text"]:  # a finding laid out as a heading and its fields
        claim_text = _NUMBERING.sub("", heading["text"]).split("(", 1)[0].strip(" *_#")
    return Finding(
        claim=claim_text[:200].strip(),
        trust=label,
        severity=severity[1] if severity else None,
        single_source="single-source" in lowered or "single source" in lowered,
        text=shown.strip(),
        start=start,
        end=end,
    )


def _first_words(text: str) -> str:
    cells = [c.strip(" *`#") for c in text.split("|")]
    return next((c for c in cells if sum(ch.isalpha() for ch in c) >= 3), text)[:200]


def _has_citation(cited: list[int], start: int, end: int) -> bool:
    index = bisect.bisect_left(cited, start)
    return index < len(cited) and cited[index] < end
