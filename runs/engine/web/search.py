"""web_search against a SearXNG-compatible JSON endpoint (ORCHESTRATOR_WEB_SEARCH_URL).

SearXNG answers `format=json` only when `json` is listed in its `search.formats` (403
otherwise) and its limiter answers scripts with 429; both become a sentence saying what to
change on the search service, never a traceback. Results are hostile input: only http(s) URLs
without credentials are kept, titles and snippets are made storable and redacted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from runs.engine.storable import clean_text
from runs.engine.target.secrets import redact
from runs.engine.web.fetch import WebHTTP
from runs.engine.web.guard import WebRefused, check_url

MAX_RESULTS = 8


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    title: str
    url: str
    snippet: str


def web_search(
    http: WebHTTP, endpoint: str, query: str, *, limit: int = MAX_RESULTS
) -> list[SearchResult]:
    answer = http.get_trusted(endpoint, {"q": query, "format": "json"})
    if answer.status == 403:
        raise WebRefused(
            "the search service refused to answer in JSON (HTTP 403): add `json` to "
            "`search.formats` in its settings.yml (SearXNG) and restart it",
            kind="search",
        )
    if answer.status == 429:
        raise WebRefused(
            "the search service is rate-limiting this server (HTTP 429): turn its limiter off "
            "for this host (SearXNG: `server.limiter: false`, or list the address under "
            "`botdetection.ip_lists.pass_ip` in limiter.toml), or search again later",
            kind="search",
        )
    if answer.status != 200:
        raise WebRefused(f"the search service answered HTTP {answer.status}", kind="search")
    try:
        data = json.loads(answer.body)
    except (ValueError, RecursionError):
        raise WebRefused(
            "the search service did not answer JSON; is ORCHESTRATOR_WEB_SEARCH_URL its "
            "/search endpoint?",
            kind="search",
        ) from None
    raw = data.get("results") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        raise WebRefused("the search service's answer has no results list", kind="search")
    results: list[SearchResult] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            continue
        url = clean_text(item["url"].strip())
        try:
            check_url(url)  # scheme and credentials only; the address is checked on fetch
        except WebRefused:
            continue
        if url in seen:
            continue
        seen.add(url)
        results.append(
            SearchResult(
                title=_text(item.get("title"), 200),
                url=url,
                snippet=_text(item.get("content"), 400),
            )
        )
        if len(results) >= limit:
            break
    return results


def _text(value: object, cap: int) -> str:
    return redact(clean_text(str(value)))[:cap].strip() if isinstance(value, str) else ""
