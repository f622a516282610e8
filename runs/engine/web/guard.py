"""The address decision: which URLs the web fetch may open, and at which address.

One owner for the rule (docs/architecture.md, "The web trust boundary"). A URL is refused
before any connection when its scheme is not http(s), when it carries credentials, or when its
host resolves to an address that is not on the public internet: loopback, private, link-local,
CGNAT, unique-local, multicast, reserved, unspecified, cloud metadata, IPv4-mapped or
-compatible IPv6, and 6to4, Teredo or NAT64 addresses that embed one of those. A name that
resolves to several addresses is refused if any of them is refused (a rebinding name offers a
public and a private answer and hopes the connection picks the second). The fetch then
connects to the very address this module returned, so no second lookup can change it.

Hosts in ORCHESTRATOR_WEB_ALLOW_HOSTS skip the address check (an intranet docs server; the
tests' pages on 127.0.0.1), never the scheme and credential checks.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses a lookup gave (tests pass a stand-in that answers anything)
type Resolver = Callable[[str, int], list[str]]

MAX_URL_CHARS = 2000
SCHEMES = {"http": 80, "https": 443}
METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local use, never public


class WebRefused(Exception):
    """A URL or a page the web tools will not open or return; the message is the sentence
    the agent and the pane read. `kind` counts refusals by reason in the tests."""

    def __init__(self, message: str, *, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, kw_only=True)
class Destination:
    """Where one request goes: the URL as asked, and the checked address to connect to."""

    url: str
    scheme: str
    host: str  # as written in the URL, lower-cased (IPv6 without brackets)
    port: int
    address: str  # the checked address; the connection goes here and nowhere else

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else _ascii_host(self.host)
        return host if SCHEMES[self.scheme] == self.port else f"{host}:{self.port}"

    def address_url(self, path_and_query: str) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{address}:{self.port}{path_and_query}"


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL the fetch may try; WebRefused names what is wrong."""
    if len(url) > MAX_URL_CHARS:
        raise WebRefused(f"the URL is too long ({len(url)} characters)", kind="url")
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise WebRefused("the URL contains spaces or control characters", kind="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebRefused(f"the URL cannot be read ({exc})", kind="url") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        shown = scheme or "none"
        raise WebRefused(f"only http and https URLs are fetched (scheme: {shown})", kind="scheme")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebRefused("URLs with credentials in them are not fetched", kind="credentials")
    host = (parts.hostname or "").rstrip(".") if parts.hostname != "." else ""
    if not host:
        raise WebRefused("the URL has no host", kind="url")
    return scheme, host, port or SCHEMES[scheme]


def address_refusal(address: IPAddress) -> str | None:
    """Why the fetch must not connect to this address, or None for a public one."""
    if address.version == 6:
        assert isinstance(address, ipaddress.IPv6Address)
        if address.scope_id:
            return "a scoped IPv6 address"
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        if address in ipaddress.ip_network("::/96") and int(address) > 1:
            return "an IPv4-compatible IPv6 address"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = address_refusal(embedded)
            if inner:
                return f"an IPv6 address embedding {inner} ({embedded})"
            if address in NAT64:
                return None  # a public IPv4 address reached through a NAT64 gateway
        if address in NAT64_LOCAL:
            return "a local-use NAT64 address"
    if address in METADATA:
        return "a cloud metadata address"
    for test, words in (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
    ):
        if getattr(address, test):
            return words
    if address.version == 4 and address in CGNAT:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if address.version == 6 and address in ipaddress.ip_network("fc00::/7"):
        return "a unique-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4, Teredo or NAT64 address carries (where it leads)."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        server, client = address.teredo
        return client if address_refusal(client) else server
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def destination(url: str, *, resolver: Resolver, allow_hosts: Collection[str] = ()) -> Destination:
    """The checked destination of `url`: resolved, every answer checked, the first kept."""
    scheme, host, port = check_url(url)
    literal = _literal(host)
    if literal is not None:
        answers = [str(literal)]
    else:
        try:
            answers = resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise WebRefused(f"{host} could not be resolved ({_why(exc)})", kind="dns") from None
        if not answers:
            raise WebRefused(f"{host} has no address", kind="dns")
    if host not in allow_hosts:
        for answer in answers:
            parsed = _literal(answer)
            reason = "an address that cannot be read" if parsed is None else None
            reason = reason or address_refusal(parsed)  # type: ignore[arg-type]
            if reason:
                raise WebRefused(
                    f"{host} is not fetched: it resolves to {reason} ({answer}); only public "
                    "addresses are, unless the host is listed in ORCHESTRATOR_WEB_ALLOW_HOSTS",
                    kind="address",
                )
    return Destination(url=url, scheme=scheme, host=host, port=port, address=answers[0])


def _ascii_host(host: str) -> str:
    """An internationalised name as the Host header and TLS carry it (punycode)."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise WebRefused(f"the host name {host[:100]!r} cannot be encoded", kind="url") from None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or exc.__class__.__name__
