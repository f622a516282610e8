"""Web citations, checked mechanically like code citations.

A web claim cites `(web: <URL> "exact words")`. The check finds the words in the text of that
page as it was fetched during the run (runs.models.WebSource keeps it), case and spacing aside.
Two sources corroborate a claim only when both check out and sit on two different sites:
registrable domains by the Public Suffix List (tldextract's bundled snapshot, private
suffixes included, so two github.io projects are two sites; never fetched from the network);
a bare address is its own site. Anything less leaves a web claim single-source, visibly.

Pure Python: the report code hands in the fetched pages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MIN_QUOTE_CHARS = 12  # shorter words prove nothing ("the", "timeout")
MAX_WEB_CITATIONS = 200
WEB_CITATION = re.compile(
    r"\(web(?:,[^:()\n]{0,40})?:\s*<?(?P<url>https?://[^\s\"<>()]{1,2000}?)>?\s+"
    r"[\"\u201c](?P<quote>[^\"\u201d\n]{1,600})[\"\u201d]\s*\)",
    re.I,
)
MARK_WEB_VERIFIED = "✓ web"
SINGLE_SOURCE_MARK = "**[single-source]**"


@dataclass(frozen=True, kw_only=True)
class WebCheck:
    url: str
    quote: str
    site: str  # registrable domain, or the bare address
    verified: bool
    reason: str  # why not, when not verified
    start: int  # offsets of the citation in the body
    end: int


@dataclass(frozen=True, kw_only=True)
class WebVerdict:
    """One web finding's sources: corroborated needs two verified sites, all cites verified."""

    sites: tuple[str, ...]
    corroborated: bool


@functools.cache
def _extractor() -> Any:
    import tldextract  # bundled snapshot only: suffix_list_urls=() means no network fetch

    return tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, include_psl_private_domains=True
    )


def site_of(url: str) -> str:
    """The registrable domain of a URL's host (a bare address or single label as it is)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return ""
    if not host:
        return ""
    parts = _extractor()(host)
    return str(parts.top_domain_under_public_suffix or host)


def squash(text: str) -> str:
    """Text as quotes are compared: case folded, typographic quotes plain, spacing single."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"')
    return " ".join(text.replace("\u201d", '"').casefold().split())


def check_web_citations(body: str, pages: Mapping[str, str]) -> list[WebCheck]:
    """Every web citation in the body, checked against the pages fetched during the run
    (keyed by the URL asked and by where its redirects ended)."""
    squashed = {normal(url): squash(text) for url, text in pages.items()}
    checks = []
    for match in list(WEB_CITATION.finditer(body))[:MAX_WEB_CITATIONS]:
        url, quote = match.group("url"), match.group("quote").strip()
        page = squashed.get(normal(url))
        if page is None:
            verified, reason = False, "the page was not fetched during this run"
        elif len(quote) < MIN_QUOTE_CHARS:
            verified, reason = False, f"the quote is too short to check (< {MIN_QUOTE_CHARS})"
        elif squash(quote) not in page:
            verified, reason = False, "the quoted words are not in the fetched page"
        else:
            verified, reason = True, ""
        checks.append(
            WebCheck(
                url=url,
                quote=quote,
                site=site_of(url),
                verified=verified,
                reason=reason,
                start=match.start(),
                end=match.end(),
            )
        )
    return checks


def verdict(checks: Sequence[WebCheck]) -> WebVerdict:
    sites = tuple(sorted({c.site for c in checks if c.verified and c.site}))
    return WebVerdict(sites=sites, corroborated=len(sites) >= 2 and all(c.verified for c in checks))


def normal(url: str) -> str:
    return url.strip().rstrip(".,;:!?'\"").split("#", 1)[0]


@dataclass(frozen=True, kw_only=True)
class WebFinding:
    start: int  # the finding's offsets in the body
    end: int
    claim: str
    checks: tuple[WebCheck, ...]
    verdict: WebVerdict


def web_findings(body: str, checks: Sequence[WebCheck]) -> list[WebFinding]:
    """The body's findings that are web claims (trust class web, or citing a web page), each
    with its web citations and whether they corroborate it."""
    from flows.findings import read_findings

    read = read_findings(body, [c.start for c in checks])
    found = []
    for finding in read.findings:
        own = tuple(c for c in checks if finding.start <= c.start < finding.end)
        if not own and finding.trust != "web":
            continue
        found.append(
            WebFinding(
                start=finding.start,
                end=finding.end,
                claim=finding.claim,
                checks=own,
                verdict=verdict(own),
            )
        )
    return found


def single_source_count(body: str, checks: Sequence[WebCheck]) -> tuple[int, int]:
    """(web findings that are single-source, web findings corroborated by two sites)."""
    found = web_findings(body, checks)
    corroborated = sum(f.verdict.corroborated for f in found)
    return len(found) - corroborated, corroborated


def mark_web(body: str, checks: Sequence[WebCheck]) -> str:
    """The body with each web citation marked and each web finding labelled: corroborated
    (naming its two sites) or single-source. The checks must be of this very body."""
    labels: list[tuple[int, str]] = []
    for finding in web_findings(body, checks):
        line_end = body.find("\n", finding.start, finding.end)
        at = finding.end if line_end < 0 else line_end
        if finding.verdict.corroborated:
            label = f" **[corroborated: {', '.join(finding.verdict.sites)}]**"
        else:
            label = f" {SINGLE_SOURCE_MARK}"
        labels.append((at, label))
    marks = [(c.end, _mark(c)) for c in checks] + labels
    pieces = []
    cursor = 0
    for offset, text in sorted(marks, key=lambda m: m[0]):
        pieces.append(body[cursor:offset])
        pieces.append(text)
        cursor = offset
    pieces.append(body[cursor:])
    return "".join(pieces)


def _mark(item: WebCheck) -> str:
    if item.verified:
        return f" {MARK_WEB_VERIFIED} ({item.site})"
    return f" **[unverified web: {item.reason}]**"
