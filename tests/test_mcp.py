"""The flows as MCP tools over streamable HTTP, driven by the MCP SDK's own client against a
real server process that runs the run on the scripted model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from flows.registry import slash_menu
from runs.models import FlowRun, Origin, RunStatus
from runs.targets import RUN_REFUSAL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

APP_MIME = "text/html;profile=mcp-app"


async def with_session(url: str, token: str, work: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def test_a_code_review_runs_from_an_mcp_client_to_its_report_and_pane(
    served_site: str, alice, alice_token: str, target_dir: Path
):
    """Tools listed; the launch names its ui:// pane; status until done; report; resource."""

    async def work(session: ClientSession) -> dict[str, Any]:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        launched = await session.call_tool(
            "code-review", {"target": str(target_dir), "focus": "the shell call"}
        )
        assert not launched.is_error, launched.content
        run_id = launched.structured_content["id"]
        statuses = []
        for _ in range(600):
            status = await session.call_tool("run_status", {"run_id": run_id})
            statuses.append(status.structured_content["status"])
            if status.structured_content["finished"]:
                break
            await asyncio.sleep(0.2)
        report = await session.call_tool("run_report", {"run_id": run_id})
        uri = launched.meta["ui"]["resourceUri"]
        pane = await session.read_resource(uri)
        return {
            "tools": tools,
            "launched": launched,
            "run_id": run_id,
            "statuses": statuses,
            "report": report.content[0].text,
            "uri": uri,
            "pane": pane.contents[0],
        }

    seen = asyncio.run(with_session(served_site, alice_token, work))
    assert seen["tools"] == {f.slug for f in slash_menu()} | {
        "launch_flow",
        "run_status",
        "run_report",
        "cancel_run",
    }
    run = FlowRun.objects.get(id=seen["run_id"])
    assert (run.owner, run.origin, run.flow, run.focus) == (
        alice,
        Origin.API,
        "code-review",
        "the shell call",
    )
    assert seen["statuses"][-1] == run.status == RunStatus.SUCCEEDED, run.error
    assert seen["report"] == run.report and run.report
    assert seen["uri"] == f"ui://orchestrator/run/{run.id}"
    links = [c for c in seen["launched"].content if c.type == "resource_link"]
    assert [str(link.uri) for link in links] == [seen["uri"]]
    pane = seen["pane"]
    assert pane.mime_type == APP_MIME
    assert f'src="{served_site}/runs/{run.id}/?embed=1"' in pane.text
    assert pane.meta["ui"]["csp"]["frameDomains"] == [served_site]


def test_an_mcp_launch_with_bad_input_gets_the_launch_forms_sentence(
    served_site: str, alice_token: str, target_dir: Path
):
    async def work(session: ClientSession) -> Any:
        return await session.call_tool(
            "launch_flow", {"flow": "research", "target": str(target_dir), "band": "huge"}
        )

    result = asyncio.run(with_session(served_site, alice_token, work))
    assert result.is_error
    assert result.content[0].text == "unknown band 'huge'; valid bands: small, medium, large"
    assert FlowRun.objects.count() == 0


def test_another_users_run_is_no_such_run_over_mcp(finished_run, served_site: str, bob_token: str):
    """The run is finished before the site (and its engine) starts: nothing claims its steps."""

    async def work(session: ClientSession) -> list[Any]:
        return [
            await session.call_tool(name, {"run_id": str(finished_run.id)})
            for name in ("run_status", "run_report", "cancel_run")
        ]

    for result in asyncio.run(with_session(served_site, bob_token, work)):
        assert result.is_error
        assert result.content[0].text == "no such run"
    finished_run.refresh_from_db()
    assert finished_run.status == RunStatus.SUCCEEDED


def test_run_report_over_mcp_refuses_a_run_whose_directory_was_taken_back(
    finished_run, served_site: str, alice_token: str
):
    """The pane's rule (runs.targets): a directory alice may no longer use gives the same
    sentence as the pane's exports, as a tool error, and no report text."""
    FlowRun.objects.filter(id=finished_run.id).update(target_real_path="/elsewhere/project")

    async def work(session: ClientSession) -> list[Any]:
        return [
            await session.call_tool(name, {"run_id": str(finished_run.id)})
            for name in ("run_report", "run_status")
        ]

    report, status = asyncio.run(with_session(served_site, alice_token, work))
    assert report.is_error
    assert report.content[0].text == RUN_REFUSAL
    assert not status.is_error
    assert status.structured_content["report_withheld"] == RUN_REFUSAL
    assert status.structured_content["summary"] == ""


def test_a_wrong_token_is_refused_before_the_mcp_server(served_site: str, alice):
    """The SDK's client cannot even initialise; a raw request gets a 401 sentence."""

    async def work(session: ClientSession) -> None:
        raise AssertionError("a session opened with a wrong token")

    with pytest.raises(ExceptionGroup) as refused:
        asyncio.run(with_session(served_site, "orc_00000000_wrong", work))
    assert refused.value.subgroup(MCPError) is not None
    assert refused.value.subgroup(AssertionError) is None, "no session may open"
    raw = httpx.post(
        f"{served_site}/mcp",
        headers={"Authorization": "Bearer orc_00000000_wrong"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert raw.status_code == 401
    assert raw.json() == {"error": "a valid API token is required (Authorization: Bearer <token>)"}
