"""A research run with the web on: its web role is offered web_search and web_fetch, reads the
stand-in's two sites, and the report shows a web finding verified against both. With the
switch off, or no search endpoint, no agent is offered a web tool."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from runs.demo.scripts import marker
from runs.models import AgentEvent, RunStatus, WebSource
from runs.services import LaunchError, launch_run

pytestmark = pytest.mark.django_db(transaction=True)
WEB_TOOLS = {"web_search", "web_fetch"}


def offered_by_role(scripted_model) -> dict[str, set[str]]:
    """Role -> every tool name the engine offered it, from the model's own request log."""
    offered: dict[str, set[str]] = {}
    for body in scripted_model.requests:
        names = {(t.get("function") or {}).get("name") for t in body.get("tools") or []}
        offered.setdefault(marker(body, "Agent role") or "?", set()).update(names)
    return offered


def test_a_research_run_with_the_web_reports_a_finding_verified_against_two_sites(
    web_on, scripted_model, target_dir: Path, run_to_end
):
    run = launch_run(
        flow="research", band="medium", target=str(target_dir), focus="widget retries", web=True
    )
    run = run_to_end(run)
    assert run.status == RunStatus.SUCCEEDED, run.error
    offered = offered_by_role(scripted_model)
    assert offered["web-sources"] >= WEB_TOOLS
    assert all(not (WEB_TOOLS & names) for role, names in offered.items() if role != "web-sources")
    assert "**[corroborated: 127.0.0.1, 127.0.0.2]**" in run.report
    assert "✓ web (127.0.0.1)" in run.report and "✓ web (127.0.0.2)" in run.report
    assert "**[single-source]**" in run.report
    assert "## Web pages read during the run" in run.report
    assert run.report_data["evidence"]["single_source"] >= 1
    corroborated = [f for f in run.report_data["web"]["findings"] if f["corroborated"]]
    assert [f["sites"] for f in corroborated] == [["127.0.0.1", "127.0.0.2"]]
    assert WebSource.objects.filter(run=run, kind=WebSource.Kind.PAGE).count() == 2
    summaries = [
        e.payload["summary"]
        for e in AgentEvent.objects.filter(session__step__run=run, kind="tool_result")
        if e.payload.get("name") in WEB_TOOLS
    ]
    assert summaries[0] == "searched 'widget retries': 2 results"
    assert [s.split(" (")[0] for s in summaries[1:]] == [
        f"fetched {r['url']}" for r in web_on.results()[:2]
    ]


def test_with_the_switch_off_no_agent_is_offered_a_web_tool_and_none_may_browse(
    web_on, scripted_model, target_dir: Path, run_to_end
):
    run = run_to_end(launch_run(flow="research", band="medium", target=str(target_dir)))
    assert run.status == RunStatus.SUCCEEDED, run.error
    offered = offered_by_role(scripted_model)
    assert "web-sources" in offered
    assert all(not (WEB_TOOLS & names) for names in offered.values())
    prompts = [  # the agent's part is in its first user message
        body["messages"][1]["content"]
        for body in scripted_model.requests
        if marker(body, "Agent role") == "web-sources"
    ]
    assert prompts and all("You cannot browse" in p for p in prompts)
    assert not web_on.requests


def test_a_run_whose_endpoint_was_removed_since_its_launch_offers_no_web_tool(
    web_on, settings, scripted_model, target_dir: Path, run_to_end
):
    run = launch_run(flow="research", band="medium", target=str(target_dir), web=True)
    settings.ORCHESTRATOR_WEB_SEARCH_URL = ""
    run = run_to_end(run)
    offered = offered_by_role(scripted_model)
    assert offered, "the run's agents were offered tools"
    assert all(not (WEB_TOOLS & names) for names in offered.values())


def test_the_web_is_refused_with_a_sentence_where_no_search_endpoint_is_configured(
    settings, target_dir: Path
):
    settings.ORCHESTRATOR_WEB_SEARCH_URL = ""
    with pytest.raises(LaunchError, match="set ORCHESTRATOR_WEB_SEARCH_URL"):
        launch_run(flow="research", target=str(target_dir), web=True)
    with pytest.raises(CommandError, match="set ORCHESTRATOR_WEB_SEARCH_URL"):
        call_command("launch_flow", "research", target=str(target_dir), web=True, stdout=StringIO())


def test_the_launcher_offers_the_web_switch_only_where_search_is_configured(
    settings, client, alice, target_dir: Path
):
    client.force_login(alice)
    settings.ORCHESTRATOR_WEB_SEARCH_URL = ""
    page = client.get("/workspace/").content.decode()
    assert 'data-testid="launcher-web-off"' in page and 'name="web"' not in page
    refused = client.post("/launch/", {"flow": "research", "target": str(target_dir), "web": "1"})
    assert refused.status_code == 400 and "ORCHESTRATOR_WEB_SEARCH_URL" in refused.json()["error"]
    settings.ORCHESTRATOR_WEB_SEARCH_URL = "http://127.0.0.1:9/search"
    assert 'name="web"' in client.get("/workspace/").content.decode()
    launched = client.post("/launch/", {"flow": "research", "target": str(target_dir), "web": "1"})
    assert launched.status_code == 201
    from runs.models import FlowRun

    assert FlowRun.objects.get(id=launched.json()["id"]).web is True


def test_hostile_pages_among_the_results_cannot_derail_a_run_or_reach_the_report(
    settings, scripted_model, target_dir: Path, run_to_end, capsys
):
    """Prompt injection, script payloads, a redirect chain to the metadata address, a huge
    and a binary body: each fetch ends in text or a sentence, and the run still reports."""
    from devtools.websearch import HOSTILE_RESULTS, SITES, serving

    with serving(hostile=True) as stand_in:
        settings.ORCHESTRATOR_WEB_SEARCH_URL = stand_in.search_url
        settings.ORCHESTRATOR_WEB_ALLOW_HOSTS = frozenset(SITES)
        run = launch_run(
            flow="research", band="medium", target=str(target_dir), focus="widgets", web=True
        )
        run = run_to_end(run)
        served = [path for _, path, _ in stand_in.requests]
    assert run.status == RunStatus.SUCCEEDED, run.error
    results = [
        e.payload
        for e in AgentEvent.objects.filter(session__step__run=run, kind="tool_result")
        if e.payload.get("name") == "web_fetch"
    ]
    refused = [r for r in results if not r["ok"]]
    assert len(results) == 2 + len(HOSTILE_RESULTS)
    assert [r["summary"].split(":")[0] for r in refused] == ["web_fetch refused"] * 3
    assert any("cloud metadata" in r["content"] for r in refused)
    assert "<script" not in run.report and "onerror" not in run.report
    assert "/latest/meta-data/" not in served  # the redirect's last hop never left the guard
    with capsys.disabled():
        print(f"\nhostile web pages in a run: {len(refused)} refused, 1 injection read as text")
