"""One click to check a finding: what the check of a citation saw, as the run read it (the
lines it named where they exist, with the mark's reason; the reason alone where they do not).

Owner-only like every run URL (another user's run is a 404). The lines shown are the ones the
report kept when it was written (read through the tools' confinement and secret rules, then
redacted); the file is read again, through the same reader, only to say whether it changed.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from flows.citations import CheckStatus
from flows.excerpts import file_digest, segments
from runs.engine.report.reporting import ConfinedLines
from runs.markup import framed_tables, sanitised_markdown
from runs.models import FlowRun
from runs.permissions import visible_runs
from runs.targets import TargetRefused, check_run

# The mark of a kept citation links to "#cite-N" in the report's linked copy; in the pane it
# becomes a link to the citation's page that htmx opens inline (a plain link without JS).
_CITE_HREF = re.compile(r'<a href="#cite-(\d{1,6})"')
# The end of a kept citation's link: its lines' slot goes right after it.
_CITE_END = re.compile(
    r'data-cite="(\d{1,6})"[^>]{0,4000}>[^<]{0,4000}(?:<(?!/a>)[^>]{0,400}>[^<]{0,4000}){0,20}</a>'
)
_CHANGE_MARK = re.compile(r"<strong>\[(new|still present|resolved)\]</strong>")


def report_html(run: FlowRun) -> SafeString:
    """The report as the pane shows it: every kept citation links to what was checked."""
    data = run.report_data or {}
    linked = data.get("linked_report") if isinstance(data, dict) else None
    html = sanitised_markdown(linked if isinstance(linked, str) and linked else run.report)
    kept = {int(entry["n"]): entry for entry in _kept(run)}

    def cite_link(match: re.Match[str]) -> str:
        number = int(match[1])
        if number not in kept:
            return '<a class="cite-check"'
        url = escape(reverse("runs:citation", args=[run.id, number]))
        checked = escape(what_was_checked(kept[number]))
        # The lines open in place: in a slot right after the citation, inside its finding.
        return (
            f'<a class="cite-check" href="{url}" hx-get="{url}" '
            f'hx-target="#cite-lines-{number}" hx-swap="innerHTML" title="{checked}" '
            f'aria-label="{checked}; show the checked lines" aria-controls="cite-lines-{number}" '
            f'data-testid="cite-check" data-cite="{number}"'
        )

    def change_mark(match: re.Match[str]) -> str:
        change = match[1]
        return (
            f'<span class="finding-change change-{change.replace(" ", "-")}" '
            f'data-testid="finding-change">{change}</span>'
        )

    html = _CHANGE_MARK.sub(change_mark, _CITE_HREF.sub(cite_link, html))
    html = _CITE_END.sub(
        lambda m: (
            f'{m[0]}<span id="cite-lines-{m[1]}" class="cite-lines" data-testid="cite-lines" '
            'aria-live="polite"></span>'
        ),
        html,
    )
    # Its tables framed last: the pattern above counts the tags inside a citation's link.
    return mark_safe(framed_tables(html))  # noqa: S308 (sanitised by nh3; only our own markup added)


@login_required
def citation(request: HttpRequest, run_id: UUID, number: int) -> HttpResponse:
    """The cited lines with context, the quote highlighted; a fragment for htmx."""
    run = get_object_or_404(visible_runs(request.user), id=run_id)
    try:
        check_run(request.user, run)
    except TargetRefused as exc:
        raise PermissionDenied(str(exc)) from None
    entry = next((e for e in _kept(run) if e.get("n") == number), None)
    if entry is None:
        raise Http404("nothing was kept for this citation")
    has_lines = "lines" in entry  # a flag such as "no such file" keeps its reason only
    context = {
        "run": run,
        "entry": entry,
        "rows": _rows(entry) if has_lines else [],
        "changed": _changed(run, entry) if has_lines else "",
    }
    template = "runs/citation.html#excerpt" if _is_htmx(request) else "runs/citation.html"
    return render(request, template, context)


def what_was_checked(entry: dict[str, Any]) -> str:
    """The mark's words on hover, to screen readers and on the opened lines: what the
    checker found."""
    citation, grade = str(entry.get("citation") or ""), entry.get("grade", "verified")
    if grade == "verified":
        if entry.get("quote"):
            return f"{citation} verified: the quoted code is at the cited lines"
        return f"{citation} verified: code its sentence names is at the cited lines"
    if grade == "lines exist":
        return f"{citation}: the lines exist, but the citation claims nothing that could be checked"
    return f"{citation} not verified: {entry.get('reason') or grade}"


def _kept(run: FlowRun) -> list[dict[str, Any]]:
    data = run.report_data if isinstance(run.report_data, dict) else {}
    kept = data.get("checked_lines") or []
    return [e for e in kept if isinstance(e, dict) and isinstance(e.get("n"), int)]


def _rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per kept line: its number, whether it was cited, its text cut by the quote."""
    marks: dict[int, list[list[int]]] = {}
    for number, start, end in entry.get("marks") or []:
        marks.setdefault(int(number), []).append([int(start), int(end)])
    first, start = int(entry["first"]), int(entry["start"])
    last_cited = int(entry.get("cited_end") or entry["end"])
    return [
        {
            "number": first + offset,
            "cited": start <= first + offset <= last_cited,
            "segments": segments(str(text), marks.get(first + offset, [])),
        }
        for offset, text in enumerate(entry.get("lines") or [])
    ]


def _changed(run: FlowRun, entry: dict[str, Any]) -> str:
    """Whether the file still reads as it did when the run checked it (same reader)."""
    lines = ConfinedLines.for_run(run)(str(entry.get("cited_path") or ""))
    if isinstance(lines, CheckStatus):
        return f"the file cannot be read now ({lines.value}); these are the lines the run checked"
    if file_digest(lines) != entry.get("digest"):
        return "the file has changed since this run; these are the lines the run checked"
    return ""


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"
