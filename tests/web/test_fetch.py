"""The fetch against real HTTP on loopback: it reads allowed pages, connects to the address it
checked, follows redirects by hand and checks every hop, and refuses hostile pages with a
sentence. Every other address meets the guard before the transport."""

from __future__ import annotations

import json

import pytest

from devtools.websearch import AGREED, SITES
from runs.engine.web.fetch import USER_AGENT, WebHTTP, WebLimits
from runs.engine.web.guard import WebRefused


def test_an_allowed_page_returns_its_main_text_without_the_chrome(allowed, stand_in, transport):
    page = allowed.fetch(stand_in.url(SITES[0], "/docs/retries"))
    assert AGREED in page.text
    assert "Home | Docs" not in page.text and "Copyright" not in page.text
    assert page.content_type == "text/html" and page.redirects == 0
    assert transport.connected == ["127.0.0.1"] and transport.refused == []


def test_a_loopback_page_not_in_the_allow_list_is_refused_before_connecting(
    guarded, stand_in, transport
):
    with pytest.raises(WebRefused, match="loopback address") as refused:
        guarded.fetch(stand_in.url(SITES[0], "/docs/retries"))
    assert "ORCHESTRATOR_WEB_ALLOW_HOSTS" in str(refused.value)
    assert transport.connected == [] and stand_in.requests == []


def test_the_connection_goes_to_the_checked_address_with_the_name_in_the_host_header(
    stand_in, resolver, transport
):
    """The second lookup of a rebinding name would answer 10.0.0.1: it is never made."""
    resolver.answers["docs.widget.test"] = [["127.0.0.1"], ["10.0.0.1"]]
    http = WebHTTP(allow_hosts={"docs.widget.test"}, resolver=resolver, transport=transport)
    port = stand_in.ports[SITES[0]]
    page = http.fetch(f"http://docs.widget.test:{port}/docs/retries")
    assert AGREED in page.text
    assert resolver.lookups == ["docs.widget.test"]
    assert transport.connected == ["127.0.0.1"]
    assert stand_in.requests[-1][2] == f"docs.widget.test:{port}"


def test_a_rebinding_name_is_connected_at_the_public_address_it_was_checked_at(
    guarded, resolver, transport
):
    """Checked public, then answering loopback: the connection still targets the checked
    address (which the test transport stops before any packet), never the rebound one."""
    resolver.answers["rebind.example.org"] = [["93.184.215.14"], ["127.0.0.1"]]
    with pytest.raises(WebRefused, match="could not be fetched"):
        guarded.fetch("http://rebind.example.org/")
    assert transport.refused == ["93.184.215.14"]
    assert transport.connected == []
    assert resolver.lookups == ["rebind.example.org"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/hostile/redirect-3", "cloud metadata"),
        ("/hostile/to-private", "private address"),
        ("/hostile/to-file", "only http and https"),
        ("/hostile/loop", "more than 5 redirects"),
    ],
)
def test_redirects_are_followed_by_hand_and_checked_at_every_hop(
    allowed, stand_in, transport, path, words
):
    with pytest.raises(WebRefused, match=words):
        allowed.fetch(stand_in.url(SITES[0], path))
    assert set(transport.connected) == {"127.0.0.1"}
    assert transport.refused == []


def test_no_cookie_a_page_sets_is_sent_back_and_the_user_agent_says_who_asks(allowed, stand_in):
    page = allowed.fetch(stand_in.url(SITES[0], "/hostile/cookie"))
    seen = json.loads(page.text)
    assert "cookie" not in seen and "authorization" not in seen
    assert seen["user-agent"] == USER_AGENT
    assert page.redirects == 1


def test_hostile_pages_are_refused_or_defanged_and_counted(stand_in, resolver, transport, capsys):
    http = WebHTTP(
        allow_hosts=SITES, resolver=resolver, transport=transport, limits=WebLimits(seconds=1.0)
    )
    refused: dict[str, str] = {}
    for name in ("huge", "huge-undeclared", "binary", "binary-as-text", "slow"):
        with pytest.raises(WebRefused) as caught:
            http.fetch(stand_in.url(SITES[0], f"/hostile/{name}"))
        refused[name] = caught.value.kind
    assert refused == {
        "huge": "size",
        "huge-undeclared": "size",
        "binary": "content-type",
        "binary-as-text": "binary",
        "slow": "time",
    }
    injected = http.fetch(stand_in.url(SITES[0], "/hostile/injection"))
    assert "<script" not in injected.text and "onerror" not in injected.text
    assert "Ignore all previous instructions" in injected.text  # text to report, nothing more
    with capsys.disabled():
        print(f"\nhostile pages: {len(refused)} of 5 refused ({refused}); injection defanged")


def test_text_from_a_page_is_nul_safe_and_its_url_credentials_are_redacted():
    from runs.engine.web.fetch import page_text

    text = page_text(
        b"see https://admin:hunter2@db.example.org/x and \x1b[31mred\x7f", "text/plain", "utf-8"
    )
    assert "hunter2" not in text
    assert "\x1b" not in text and "\x7f" not in text
    with pytest.raises(WebRefused, match="binary"):
        page_text(b"PK\x03\x04\x00\x00", "text/plain", "utf-8")


def test_schemes_redirects_and_rebinding_attempts_are_all_refused_and_counted(
    allowed, guarded, stand_in, resolver, transport, capsys
):
    schemes = [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://127.0.0.1/",
        "dict://127.0.0.1:11211/stat",
        "ldap://127.0.0.1/",
        "https://user:pw@127.0.0.1/",
        "http://127.0.0.1@169.254.169.254/",
    ]
    redirects = ["redirect-1", "redirect-3", "to-private", "to-file", "loop"]
    resolver.answers["mixed.example.org"] = [["93.184.215.14", "10.0.0.1"]]
    resolver.answers["v6-mixed.example.org"] = [["2606:4700::1", "::ffff:169.254.169.254"]]
    resolver.answers["rebound.example.org"] = [["127.0.0.1"]]
    rebinding = ["mixed.example.org", "v6-mixed.example.org", "rebound.example.org"]
    counts = {"schemes": 0, "redirects": 0, "rebinding": 0}
    for url in schemes:
        with pytest.raises(WebRefused):
            allowed.fetch(url)
        counts["schemes"] += 1
    for name in redirects:
        with pytest.raises(WebRefused):
            allowed.fetch(stand_in.url(SITES[0], f"/hostile/{name}"))
        counts["redirects"] += 1
    for host in rebinding:
        with pytest.raises(WebRefused, match="is not fetched"):
            guarded.fetch(f"http://{host}/")
        counts["rebinding"] += 1
    with capsys.disabled():
        print(
            f"\nschemes and credentials: {counts['schemes']} of {len(schemes)} refused; "
            f"redirect chains: {counts['redirects']} of {len(redirects)} refused at the bad hop; "
            f"rebinding names: {counts['rebinding']} of {len(rebinding)} refused"
        )
    assert counts == {"schemes": 7, "redirects": 5, "rebinding": 3}
    assert transport.refused == []  # nothing was even attempted beyond loopback
    assert set(transport.connected) <= {"127.0.0.1"}
