"""All outbound web HTTP: the page fetch (guarded) and the search service's request.

A fetch asks runs.engine.web.guard for each hop's destination and connects to the address the
guard checked, never to a name: the URL sent to the transport carries that address, the Host
header and TLS (SNI and the certificate check) carry the name. Redirects are followed by hand,
a few at most, each one checked again like a new URL. No cookies are kept or sent, no proxy or
.netrc from the environment is used, no credentials go out, and the user agent says who asks.
The body is read up to a size cap under one deadline (a server trickling bytes cannot hold the
agent), only text types are read, and an HTML page is reduced to its main text by trafilatura.
What comes back is hostile input: made storable (NUL-safe) and with URL credentials redacted.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from runs.engine.storable import clean_text
from runs.engine.target.secrets import redact
from runs.engine.web.guard import Destination, Resolver, WebRefused, destination, system_resolver

USER_AGENT = "Orchestrator-web-fetch/1 (read-only research agent; no crawling)"
REDIRECTS = {301, 302, 303, 307, 308}
TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown")


@dataclass(frozen=True, kw_only=True)
class WebLimits:
    max_bytes: int = 2_000_000  # body bytes read; more is refused, not truncated silently
    seconds: float = 15.0  # one deadline for a whole fetch, redirects and body included
    max_redirects: int = 5
    max_text_chars: int = 100_000  # page text kept with the run


@dataclass(frozen=True, kw_only=True)
class Page:
    url: str  # as asked
    final_url: str  # after redirects
    content_type: str
    text: str  # the main text, storable and redacted
    redirects: int


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: int
    body: bytes
    content_type: str


class WebHTTP:
    """The one door to the web. `transport` and `resolver` are the tests' seams."""

    def __init__(
        self,
        *,
        allow_hosts: Collection[str] = (),
        resolver: Resolver = system_resolver,
        transport: httpx.BaseTransport | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        self.allow_hosts = frozenset(allow_hosts)
        self.resolver = resolver
        self.transport = transport
        self.limits = limits or WebLimits()

    def fetch(self, url: str) -> Page:
        """A page's main text; WebRefused says why not, in a sentence."""
        deadline = time.monotonic() + self.limits.seconds
        current = url
        with self._client() as client:
            for hop in range(self.limits.max_redirects + 1):
                where = destination(current, resolver=self.resolver, allow_hosts=self.allow_hosts)
                response = self._send(client, where, deadline)
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECTS and location:
                        current = urljoin(current, location.strip())
                        continue
                    if response.status_code >= 400:
                        raise WebRefused(
                            f"{_shown(current)} answered HTTP {response.status_code}",
                            kind="status",
                        )
                    kind = _content_type(response)
                    if kind not in TEXT_TYPES:
                        raise WebRefused(
                            f"{_shown(current)} is {kind or 'of no stated type'}, not a text "
                            "page; only HTML and plain text are read",
                            kind="content-type",
                        )
                    body = self._read(response, deadline, current)
                finally:
                    response.close()
                text = page_text(body, kind, response.encoding or "utf-8")
                return Page(
                    url=url,
                    final_url=current,
                    content_type=kind,
                    text=text[: self.limits.max_text_chars],
                    redirects=hop,
                )
        raise WebRefused(
            f"more than {self.limits.max_redirects} redirects from {_shown(url)}", kind="redirects"
        )

    def get_trusted(self, url: str, params: dict[str, str]) -> Answer:
        """The operator's own search service (configured, not chosen by an agent): no address
        check, the same caps."""
        deadline = time.monotonic() + self.limits.seconds
        with self._client() as client:
            request = httpx.Request("GET", url, params=params, headers=_headers())
            try:
                response = client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise WebRefused(f"the search service could not be reached ({_why(exc)})") from None
            try:
                body = self._read(response, deadline, url)
            finally:
                response.close()
            return Answer(
                status=response.status_code, body=body, content_type=_content_type(response)
            )

    def _client(self) -> httpx.Client:
        timeout = httpx.Timeout(self.limits.seconds)
        return httpx.Client(
            transport=self.transport,
            follow_redirects=False,
            trust_env=False,  # no proxy, no .netrc from the environment
            timeout=timeout,
        )

    def _send(self, client: httpx.Client, where: Destination, deadline: float) -> httpx.Response:
        parts = urlsplit(where.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {**_headers(), "Host": where.host_header}
        remaining = max(0.1, deadline - time.monotonic())
        extensions: dict[str, Any] = {
            "timeout": {"connect": remaining, "read": remaining, "write": remaining, "pool": 1.0}
        }
        if where.scheme == "https":
            extensions["sni_hostname"] = where.host  # TLS checks the name, not the address
        # Built by hand, not by client.build_request: no cookie from any jar goes out.
        request = httpx.Request(
            "GET", where.address_url(path), headers=headers, extensions=extensions
        )
        try:
            return client.send(request, stream=True)
        except httpx.TimeoutException:
            raise WebRefused(
                f"{_shown(where.url)} did not answer within {self.limits.seconds:g} s",
                kind="time",
            ) from None
        except httpx.HTTPError as exc:
            raise WebRefused(
                f"{_shown(where.url)} could not be fetched ({_why(exc)})", kind="connect"
            ) from None
        finally:
            client.cookies.clear()

    def _read(self, response: httpx.Response, deadline: float, url: str) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise WebRefused(f"{_shown(url)} is too large ({declared} bytes)", kind="size")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_raw():
                size += len(chunk)
                if size > cap:
                    raise WebRefused(
                        f"{_shown(url)} is too large (more than {cap} bytes)", kind="size"
                    )
                if time.monotonic() > deadline:
                    raise WebRefused(
                        f"{_shown(url)} was still sending after {self.limits.seconds:g} s",
                        kind="time",
                    )
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise WebRefused(
                f"{_shown(url)} stopped sending before the page ended", kind="time"
            ) from None
        except httpx.HTTPError as exc:
            raise WebRefused(f"{_shown(url)} broke off ({_why(exc)})", kind="connect") from None
        return _decoded(b"".join(chunks), response.headers.get("content-encoding", ""))


def page_text(body: bytes, kind: str, encoding: str) -> str:
    """The main text of a page, as hostile text made safe to store and show."""
    if b"\x00" in body[:4096]:
        raise WebRefused("the page is binary (it holds NUL bytes), not text", kind="binary")
    try:
        raw = body.decode(encoding, errors="replace")
    except LookupError:
        raw = body.decode("utf-8", errors="replace")
    if kind in ("text/html", "application/xhtml+xml"):
        import trafilatura  # imported on first use: lxml and friends load in ~0.3 s

        raw = trafilatura.extract(raw, include_comments=False, include_tables=True) or ""
    return redact(clean_text(raw)).strip()


def _decoded(body: bytes, encoding: str) -> bytes:
    """Bodies are asked for uncompressed; a server that compresses anyway is refused rather
    than inflated past the size cap."""
    if encoding.strip().lower() not in ("", "identity"):
        raise WebRefused(f"the page came compressed ({encoding[:40]}); not read", kind="binary")
    return body


def _headers() -> dict[str, str]:
    return {
        "User-Agent": USER_AGENT,
        "Accept": "text/html, text/plain;q=0.9, application/json;q=0.8",
        "Accept-Encoding": "identity",
    }


def _content_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _shown(url: str) -> str:
    return redact(clean_text(url))[:300]


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return clean_text(f"{exc.__class__.__name__}: {text[:160]}" if text else exc.__class__.__name__)
