"""The web part of a run's report: its web citations checked against the pages the run
fetched (runs.models.WebSource), the single-source count the confidence rule uses, the marks
in the body, and the list of pages read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flows.citations import CitationCheck
from flows.findings import read_findings
from flows.report import EvidenceFacts, citations_by_finding, with_web_evidence
from flows.web_citations import (
    WebCheck,
    check_web_citations,
    mark_web,
    site_of,
    web_findings,
)
from runs.models import FlowRun, WebSource


@dataclass(frozen=True, kw_only=True)
class WebEvidence:
    pages: dict[str, str]  # URL asked and URL reached -> the text fetched during the run
    sources: list[dict[str, Any]]  # the pages read, for the report's list

    @classmethod
    def of(cls, run: FlowRun) -> WebEvidence:
        pages: dict[str, str] = {}
        sources = []
        for page in WebSource.objects.filter(run=run, kind=WebSource.Kind.PAGE):
            pages[page.url] = page.text
            if page.final_url:
                pages[page.final_url] = page.text
            sources.append(
                {
                    "url": page.url,
                    "final_url": page.final_url or page.url,
                    "site": site_of(page.final_url or page.url),
                    "chars": len(page.text),
                    "agent": page.step_key,
                }
            )
        return cls(pages=pages, sources=sources)

    def checks(self, body: str) -> list[WebCheck]:
        return check_web_citations(body, self.pages)

    def facts(
        self, body: str, facts: EvidenceFacts, code_checks: Sequence[CitationCheck]
    ) -> EvidenceFacts:
        """Single-source claims counted mechanically: web findings not corroborated by two
        verified sites, and any other finding the model itself marked single-source.
        Corroborated web findings without code citations are not asked for code backing."""
        checks = self.checks(body)
        found = web_findings(body, checks)
        web_starts = {f.start for f in found}
        single = sum(not f.verdict.corroborated for f in found)
        read = read_findings(body, [c.citation.start_offset for c in code_checks])
        single += sum(f.single_source and f.start not in web_starts for f in read.findings)
        owned = citations_by_finding(read, code_checks)
        corroborated = sum(f.verdict.corroborated and not owned.get(f.start) for f in found)
        return with_web_evidence(facts, single_source=single, corroborated=corroborated)

    def mark(self, body: str) -> str:
        """The body with web citations and web findings marked, and the pages read listed."""
        checks = self.checks(body)
        marked = mark_web(body, checks)
        if not self.sources:
            return marked
        lines = [
            f"- `{source['final_url'].replace('`', '%60')}` ({source['site']}, "
            f"{source['chars']} characters, read by {source['agent'] or 'an agent'})"
            for source in self.sources
        ]
        return marked + "\n\n## Web pages read during the run\n" + "\n".join(lines)

    def data(self, body: str) -> dict[str, Any]:
        checks = self.checks(body)
        found = web_findings(body, checks)
        return {
            "pages": self.sources,
            "citations": [
                {
                    "url": c.url,
                    "quote": c.quote,
                    "site": c.site,
                    "verified": c.verified,
                    "reason": c.reason,
                }
                for c in checks
            ],
            "findings": [
                {
                    "claim": f.claim,
                    "sites": list(f.verdict.sites),
                    "corroborated": f.verdict.corroborated,
                }
                for f in found
            ],
        }
