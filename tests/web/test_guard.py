"""The address decision: every address that is not on the public internet is refused after
DNS resolution, before any connection; schemes and credentials are refused before DNS."""

from __future__ import annotations

import pytest

from runs.engine.web.guard import WebRefused, destination

REFUSED_ADDRESSES = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "10.1.2.3": "private",
    "172.16.0.9": "private",
    "192.168.1.1": "private",
    "169.254.10.1": "link-local",
    "fe80::1": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "240.0.0.1": "reserved",
    "192.0.2.1": "private",  # TEST-NET: documentation only, never routed
    "169.254.169.254": "metadata",
    "fd00:ec2::254": "metadata",
    "100.100.100.200": "metadata",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:8.8.8.8": "IPv4-mapped",
    "::127.0.0.1": "IPv4-compatible",
    "2002:7f00:1::1": "embedding",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1": "embedding",  # 6to4 of 169.254.169.254
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "embedding",  # Teredo, client 127.0.0.1
    "64:ff9b::a9fe:a9fe": "embedding",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1": "embedding",  # NAT64 of 127.0.0.1
    "64:ff9b:1::1": "NAT64",
}
PUBLIC = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "64:ff9b::5db8:d70e"]


@pytest.mark.parametrize("address", sorted(REFUSED_ADDRESSES))
def test_a_name_resolving_to_a_non_public_address_is_refused_with_a_sentence(address, resolver):
    """Whatever the name, what it resolves to decides; the sentence names what it found."""
    resolver.answers["docs.example.org"] = [[address]]
    with pytest.raises(WebRefused) as refused:
        destination("https://docs.example.org/page", resolver=resolver)
    assert refused.value.kind == "address"
    message = str(refused.value)
    assert REFUSED_ADDRESSES[address].lower().split()[0] in message.lower()
    assert "ORCHESTRATOR_WEB_ALLOW_HOSTS" in message


@pytest.mark.parametrize("address", sorted(REFUSED_ADDRESSES))
def test_an_address_written_in_the_url_is_refused_without_any_lookup(address, resolver):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(WebRefused):
        destination(f"http://{host}/latest/meta-data/", resolver=resolver)
    assert resolver.lookups == []


@pytest.mark.parametrize("address", PUBLIC)
def test_a_public_address_is_the_destination_and_the_name_travels_beside_it(address, resolver):
    resolver.answers["docs.example.org"] = [[address]]
    where = destination("https://docs.example.org:8443/a?b=c", resolver=resolver)
    assert where.address == address
    assert where.host_header == "docs.example.org:8443"
    assert where.address_url("/a?b=c").startswith("https://")


def test_a_name_with_one_private_answer_among_public_ones_is_refused(resolver):
    """A rebinding name offers both and hopes the connection picks the private one."""
    resolver.answers["rebind.example.org"] = [["93.184.215.14", "127.0.0.1"]]
    with pytest.raises(WebRefused, match="loopback"):
        destination("http://rebind.example.org/", resolver=resolver)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme"),
        ("ftp://example.org/x", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,<script>alert(1)</script>", "scheme"),
        ("dict://127.0.0.1:11211/stat", "scheme"),
        ("https://user:pass@example.org/", "credentials"),
        ("https://token@example.org/", "credentials"),
        ("https://example.org@169.254.169.254/", "credentials"),
        ("http:///nohost", "url"),
        ("http://exa mple.org/", "url"),
        ("http://example.org/\x00", "url"),
        ("http://example.org:99999/", "url"),
    ],
)
def test_schemes_credentials_and_broken_urls_are_refused_before_any_lookup(url, kind, resolver):
    resolver.answers["example.org"] = [["93.184.215.14"]]
    with pytest.raises(WebRefused) as refused:
        destination(url, resolver=resolver)
    assert refused.value.kind == kind
    assert resolver.lookups == []


def test_an_allow_listed_host_skips_the_address_check_but_not_the_scheme_check(resolver):
    resolver.answers["intranet.docs"] = [["10.0.0.5"]]
    where = destination(
        "http://intranet.docs/guide", resolver=resolver, allow_hosts={"intranet.docs"}
    )
    assert where.address == "10.0.0.5"
    with pytest.raises(WebRefused):
        destination("ftp://intranet.docs/guide", resolver=resolver, allow_hosts={"intranet.docs"})
    with pytest.raises(WebRefused):  # another name for the same address is not listed
        destination("http://10.0.0.5/guide", resolver=resolver, allow_hosts={"intranet.docs"})


def test_the_guarded_fetch_refuses_every_non_public_address_before_connecting(
    guarded, resolver, transport, capsys
):
    """The count the issue asks for; the transport shows nothing was even attempted."""
    names = {f"h{n}.example.org": [[a]] for n, a in enumerate(sorted(REFUSED_ADDRESSES))}
    resolver.answers.update(names)
    refused = 0
    for name in names:
        with pytest.raises(WebRefused):
            guarded.fetch(f"https://{name}/")
        refused += 1
    with capsys.disabled():
        print(f"\nSSRF addresses: {refused} of {len(names)} refused, 0 connections attempted")
    assert refused == len(REFUSED_ADDRESSES)
    assert transport.refused == [] and transport.connected == []
