"""Fixtures for the web tools: the local search stand-in, a transport that refuses anything
but loopback, a resolver that answers whatever address a test names, and runs with the web on.

No test here sends a packet beyond this machine: pages are served on 127.0.0.1 and 127.0.0.2,
and every other address is tried only against the guard's decision, which comes before any
connection; the transport fails a test that reaches it with a non-loopback address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devtools.websearch import SITES, StandIn, serving
from runs.engine.web.fetch import WebHTTP, WebLimits


class LoopbackOnly(httpx.HTTPTransport):
    """Connects only to loopback addresses; anything else is recorded and refused here,
    before a socket is opened."""

    def __init__(self) -> None:
        super().__init__()
        self.connected: list[str] = []
        self.refused: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a name: the fetch must always connect to a checked address
        if not loopback:
            self.refused.append(host)
            raise httpx.ConnectError(f"test transport: no connection to {host}")
        self.connected.append(host)
        return super().handle_request(request)


class Resolver:
    """A DNS stand-in: host -> the answers a test wants, one list per lookup in turn (the
    last list repeats), counting lookups."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self.answers = answers or {}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        turns = self.answers.get(host)
        if not turns:
            raise OSError(-2, "Name or service not known")
        seen = self.lookups.count(host)
        return turns[min(seen, len(turns)) - 1]


@pytest.fixture
def transport() -> Iterator[LoopbackOnly]:
    with LoopbackOnly() as loopback:
        yield loopback


@pytest.fixture
def resolver() -> Resolver:
    return Resolver()


@pytest.fixture
def guarded(transport: LoopbackOnly, resolver: Resolver) -> WebHTTP:
    """The fetch with nothing allow-listed: every address is checked."""
    return WebHTTP(resolver=resolver, transport=transport, limits=WebLimits(seconds=2.0))


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with serving() as running:
        yield running


@pytest.fixture
def allowed(transport: LoopbackOnly, resolver: Resolver) -> WebHTTP:
    """The fetch with the stand-in's two loopback sites allow-listed, as the tests run it."""
    return WebHTTP(
        allow_hosts=SITES, resolver=resolver, transport=transport, limits=WebLimits(seconds=2.0)
    )


@pytest.fixture
def web_on(settings: Any, stand_in: StandIn) -> StandIn:
    settings.ORCHESTRATOR_WEB_SEARCH_URL = stand_in.search_url
    settings.ORCHESTRATOR_WEB_ALLOW_HOSTS = frozenset(SITES)
    return stand_in
