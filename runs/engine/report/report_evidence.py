"""What a report keeps so that it can be checked and compared later: what each citation's
check saw (its reason, and the lines it named where they exist, with context, redacted,
capped), each finding's stable id, and what changed since the previous run of the same flow
on the same target."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from flows.citations import CheckStatus, CitationCheck, FileIndex, Grade, LineReader
from flows.excerpts import excerpt
from flows.finding_ids import CHANGE_MARKS, compare, finding_id, normalise_path
from flows.findings import read_findings
from runs.engine.storable import clean_text
from runs.engine.target.secrets import redact
from runs.models import FlowRun, RunStatus

MAX_KEPT_EXCERPTS = 300  # citations whose lines a report keeps
MAX_KEPT_CHARS = 400_000  # of kept lines per report
CITE_ANCHOR = "#cite-{}"  # the link target of a ✓ in the pane's copy of the report

# Where a marker goes in a finding's first line: after its bullet, table pipe or hashes.
_LEAD = re.compile(r"[ \t]*(?:(?:[-*+]|\d{1,3}[.)])[ \t]+|\|[ \t]*|#{1,6}[ \t]+)?")


class KeptLines:
    """A citation reader that remembers what it read, so the checked lines can be kept."""

    def __init__(self, reader: LineReader) -> None:
        self.reader = reader
        self.files: dict[str, Sequence[str] | CheckStatus] = {}

    def files_named(self, name: str, /) -> Sequence[str]:
        return self.reader.files_named(name) if isinstance(self.reader, FileIndex) else []

    def __call__(self, cited_path: str, /) -> Sequence[str] | CheckStatus:
        if cited_path not in self.files:
            self.files[cited_path] = self.reader(cited_path)
        return self.files[cited_path]


# Flags whose cited file was read and whose cited lines are in it: the lines are worth seeing
# next to the reason (the quote may sit two lines lower). The other flags keep the reason only.
_LINES_READ = frozenset(
    {CheckStatus.QUOTE_NOT_FOUND, CheckStatus.QUOTE_ELSEWHERE, CheckStatus.SYMBOL_NOT_FOUND}
)


def checked_lines(checks: Sequence[CitationCheck], kept: KeptLines, target: str) -> list[dict]:
    """What each citation's check saw, so a click on any citation can show it: the lines it
    named as the run read them (redacted, capped) where the file and lines exist, with the
    grade and the reason; the reason alone otherwise (no such file, outside the target, a
    secret file: nothing of such a file is ever kept)."""
    result: list[dict[str, Any]] = []
    total = excerpts = 0
    for index, item in enumerate(checks):
        entry: dict[str, Any] = {
            "n": index,
            "citation": item.citation.label,
            "cited_path": item.citation.path,
            "path": normalise_path(item.path, target),
            "quote": item.citation.quote,
            "grade": item.grade.value,
            "reason": item.reason,
        }
        lines = kept.files.get(item.path)
        readable = item.grade in (Grade.VERIFIED, Grade.LINES_EXIST) or item.status in _LINES_READ
        if readable and lines is not None and not isinstance(lines, CheckStatus):
            shown = excerpt(item.citation, lines, redact=lambda text: clean_text(redact(text)))
            size = sum(len(line) for line in shown["lines"])
            # Past the caps a citation keeps its reason, not its lines.
            if excerpts < MAX_KEPT_EXCERPTS and total + size <= MAX_KEPT_CHARS:
                total, excerpts = total + size, excerpts + 1
                entry.update(shown)
        result.append(entry)
    return result


def cite_link(kept: list[dict[str, Any]]) -> Any:
    """A citation whose check was kept (every one, flagged ones too) links to what was
    checked; others stay plain."""
    numbers = {entry["n"] for entry in kept}
    return lambda index: CITE_ANCHOR.format(index) if index in numbers else None


def add_ids(findings: list[dict[str, Any]], target: str) -> None:
    for finding in findings:
        finding["id"] = finding_id(finding, target)


def previous_run(run: FlowRun) -> FlowRun | None:
    """The same owner's latest succeeded run before it of the same flow on the same target,
    with the same band and fast mode: only like runs are compared (a small run does not look
    for what a medium one does, so its findings would read as resolved)."""
    return _earlier_runs(run).filter(band=run.band, fast=run.fast).first()


def unlike_previous(run: FlowRun) -> dict[str, Any] | None:
    """When the latest earlier run of the flow on the target differs in band or fast mode:
    what differs, so the pane can say why nothing was compared."""
    latest = _earlier_runs(run).first()
    if latest is None or (latest.band, latest.fast) == (run.band, run.fast):
        return None
    differs = []
    if latest.band != run.band:
        differs.append(f"band {latest.band}, this run {run.band}")
    if latest.fast != run.fast:
        differs.append(
            f"fast mode {'on' if latest.fast else 'off'}, this run {'on' if run.fast else 'off'}"
        )
    return {"previous": {"id": str(latest.id)}, "differs": differs}


def _earlier_runs(run: FlowRun) -> Any:
    runs = FlowRun.objects.filter(
        owner_id=run.owner_id,
        flow=run.flow,
        status=RunStatus.SUCCEEDED,
        finished_at__isnull=False,
        created_at__lt=run.created_at,
    ).exclude(id=run.id)
    if run.target_real_path:
        runs = runs.filter(target_real_path=run.target_real_path)
    else:
        runs = runs.filter(target=run.target)
    return runs.order_by("-created_at")


def comparison(run: FlowRun, findings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """New / still present / resolved since the previous run; marks each finding's change."""
    previous = previous_run(run)
    if previous is None or previous.finished_at is None:
        return None
    target = previous.target_real_path or previous.target
    before = []
    for old in (previous.report_data or {}).get("findings") or []:
        if isinstance(old, dict):
            before.append({**old, "id": old.get("id") or finding_id(old, target)})
    result = compare(before, findings)
    for finding in findings:
        finding["change"] = result["changes"][finding["id"]]
    return {
        "previous": {
            "id": str(previous.id),
            "finished_at": previous.finished_at.isoformat(),
            # the focus is shown when it differs: the same lens may have looked elsewhere
            "focus": previous.focus if previous.focus != run.focus else None,
        },
        "counts": result["counts"],
        "resolved": [
            {
                "id": old["id"],
                "claim": str(old.get("claim") or ""),
                "citation": _first_citation(old),
            }
            for old in result["resolved"]
        ],
    }


def mark_changes(
    body: str, checks: list[CitationCheck], findings: list[dict[str, Any]]
) -> tuple[str, list[CitationCheck]]:
    """The body with `[new]` / `[still present]` before each finding, citations moved along."""
    changes = [f.get("change") for f in findings]
    if not any(changes):
        return body, checks
    read = read_findings(body, [c.citation.start_offset for c in checks])
    inserts: list[tuple[int, str]] = []
    for found, change in zip(read.findings, changes, strict=False):
        if change in CHANGE_MARKS:
            lead = _LEAD.match(body, found.start)
            inserts.append((lead.end() if lead else found.start, CHANGE_MARKS[change] + " "))
    pieces, cursor = [], 0
    for position, text in inserts:
        pieces += [body[cursor:position], text]
        cursor = position
    pieces.append(body[cursor:])
    positions = [p for p, _ in inserts]
    grown = [0]
    for _, text in inserts:
        grown.append(grown[-1] + len(text))

    def moved(offset: int, *, before_marker: bool) -> int:
        count = (bisect.bisect_right if before_marker else bisect.bisect_left)(positions, offset)
        return offset + grown[count]

    shifted = [
        replace(
            item,
            citation=replace(
                item.citation,
                start_offset=moved(item.citation.start_offset, before_marker=True),
                end_offset=moved(item.citation.end_offset, before_marker=False),
                mark_at=(
                    moved(item.citation.mark_at, before_marker=False)
                    if item.citation.mark_at >= 0
                    else -1
                ),
            ),
        )
        for item in checks
    ]
    return "".join(pieces), shifted


def _first_citation(finding: dict[str, Any]) -> str:
    for citation in finding.get("citations") or []:
        if isinstance(citation, dict) and citation.get("citation"):
            return str(citation["citation"])
    return ""
