"""Web citations are checked against the pages fetched during the run; two sources count only
as two verified sites (registrable domains), otherwise the claim is single-source."""

from __future__ import annotations

import socket

import pytest

from flows.report import EvidenceFacts, evidence_ceiling, with_web_evidence
from flows.web_citations import (
    SINGLE_SOURCE_MARK,
    check_web_citations,
    mark_web,
    single_source_count,
    site_of,
)

PAGES = {
    "https://docs.widget.org/retries": "Retries. The retry budget is three attempts per request.",
    "https://blog.example.com/widgets": "We found the retry budget is three attempts per request!",
    "https://wiki.widget.org/retries": "The retry budget is three attempts per request.",
}
QUOTE = "the retry budget is three attempts per request"


def test_sites_are_registrable_domains_from_the_bundled_list_without_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the suffix list must not be fetched")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    assert (
        site_of("https://docs.python.org/3/") == site_of("https://www.python.org/") == "python.org"
    )
    assert site_of("https://news.bbc.co.uk/x") == "bbc.co.uk"
    assert site_of("https://alice.github.io/a") != site_of("https://bob.github.io/b")
    assert site_of("http://127.0.0.2:8000/notes") == "127.0.0.2"


def test_a_quote_found_in_the_fetched_page_is_verified_and_one_that_is_not_is_not():
    body = (
        f'- **Budget** (web: https://docs.widget.org/retries "{QUOTE}")\n'
        '- **Made up** (web: https://docs.widget.org/retries "the budget is unlimited for admins")\n'
        f'- **Never read** (web: https://elsewhere.org/x "{QUOTE}")\n'
        '- **Too short** (web: https://docs.widget.org/retries "Retries")\n'
    )
    checks = check_web_citations(body, PAGES)
    assert [c.verified for c in checks] == [True, False, False, False]
    assert "not in the fetched page" in checks[1].reason
    assert "not fetched during this run" in checks[2].reason
    assert "too short" in checks[3].reason


def test_two_verified_sites_corroborate_and_two_pages_of_one_site_do_not():
    body = (
        f'- **Budget** (web: https://docs.widget.org/retries "{QUOTE}") '
        f'(web: https://blog.example.com/widgets "{QUOTE}")\n'
        f'- **Same site twice** (web: https://docs.widget.org/retries "{QUOTE}") '
        f'(web: https://wiki.widget.org/retries "{QUOTE}")\n'
        f'- **One good, one broken** (web: https://docs.widget.org/retries "{QUOTE}") '
        '(web: https://blog.example.com/widgets "a sentence the blog never wrote")\n'
    )
    checks = check_web_citations(body, PAGES)
    assert single_source_count(body, checks) == (2, 1)
    marked = mark_web(body, checks)
    first, second, third = marked.splitlines()
    assert first.endswith("**[corroborated: example.com, widget.org]**")
    assert second.endswith(SINGLE_SOURCE_MARK) and third.endswith(SINGLE_SOURCE_MARK)
    assert "✓ web (widget.org)" in first and "**[unverified web:" in third


def test_a_web_claim_without_a_checked_source_is_single_source_whatever_the_model_wrote():
    body = "- **Everyone agrees** (web, corroborated by many sources)\n"
    assert single_source_count(body, check_web_citations(body, PAGES)) == (1, 0)


@pytest.mark.parametrize(("single", "capped"), [(0, False), (1, True)])
def test_confidence_is_capped_at_medium_by_single_source_web_claims(single, capped):
    facts = with_web_evidence(
        EvidenceFacts(findings=4, backed=4, verified=6, locations=5), single_source=single
    )
    ceiling, why = evidence_ceiling(facts)
    assert (ceiling == "medium") is capped
    assert any("single-source" in reason for reason in why) is capped


def test_a_corroborated_web_finding_is_not_asked_for_code_backing_but_a_single_source_one_is():
    facts = EvidenceFacts(findings=5, backed=4, verified=6, locations=5)
    corroborated = with_web_evidence(facts, single_source=0, corroborated=1)
    assert corroborated.findings == 4
    assert evidence_ceiling(corroborated)[0] == "high"
    single = with_web_evidence(facts, single_source=1, corroborated=0)
    assert single.findings == 5
    assert evidence_ceiling(single)[0] == "medium"
