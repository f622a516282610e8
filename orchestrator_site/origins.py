"""Which web pages may open a WebSocket: exact origins (scheme, host and port), nothing else.

A browser sends the session cookie with a WebSocket handshake from any page, so the Origin
header is what keeps another local web app (a dev server on another port) from reading a
pane. Allowed: the site itself and `ORCHESTRATOR_EMBED_ORIGINS`.

"The site itself" is the origin the handshake was addressed to: its Host header (only when
that host is in ALLOWED_HOSTS, as Django checks it for HTTP) with the handshake's own scheme
(`wss` is https). Behind a TLS proxy, the proxy's header says https only when
SECURE_PROXY_SSL_HEADER names it, exactly as Django reads `request.scheme`. A missing Origin,
`null` (sandboxed frames, file:// pages) and every other origin are refused with a 403.

The comparison itself is channels' `OriginValidator` on exact origins; its host-only sibling
`AllowedHostsOriginValidator` lets every port of an allowed host in.
"""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings
from django.http.request import split_domain_port, validate_host


class SiteOriginValidator:
    """ASGI middleware: the WebSocket goes on only from the site's own or an embed origin."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        allowed = [*settings.ORCHESTRATOR_EMBED_ORIGINS, *site_origin(scope)]
        # Built per handshake, because the site's own origin depends on its Host header.
        return await OriginValidator(self.application, allowed)(scope, receive, send)


def site_origin(scope: dict[str, Any]) -> list[str]:
    """The origin this handshake was addressed to, or none when its host is not allowed."""
    headers = _headers(scope)
    host = headers.get("host", "")
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:  # Django's own DEBUG fallback for HTTP
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    # A leading dot would read as "any subdomain" to the validator; no real host has one.
    if not domain or domain.startswith(".") or not validate_host(domain, allowed_hosts):
        return []
    return [f"{_scheme(scope, headers)}://{host.lower()}"]


def _scheme(scope: dict[str, Any], headers: dict[str, str]) -> str:
    """http or https, as Django's request.scheme decides it (the proxy header only when set)."""
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure_value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower()
        if header in headers:
            first = headers[header].split(",", 1)[0].strip()
            return "https" if first == secure_value else "http"
    return "https" if scope.get("scheme") in {"wss", "https"} else "http"


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    """The first value of each header, by lowercase name."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        found.setdefault(name.decode("latin1").lower(), value.decode("latin1"))
    return found
