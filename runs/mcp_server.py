"""The flows as MCP tools, and each run's pane as an MCP App (`ui://orchestrator/run/<id>`).

Mounted in the ASGI app at `/mcp` (streamable HTTP, stateless, JSON responses: any web process
answers any request, the database holds the runs). Every request carries the same per-user API
token as the launch API (`Authorization: Bearer ...`, runs.api_tokens); a missing, unknown or
revoked token is a 401 before the MCP SDK sees the request.

Tools: one per slash-menu flow (target, focus, band, fast), `launch_flow` for any flow,
`run_status`, `run_report` and `cancel_run`. They go through runs.services and runs.doors like
the launch API, so the launch rules, their sentences and the per-user limits are the same, and
a token sees only its owner's runs. A launch answers with the run's state as text (for plain
clients), a link to the `ui://` resource, and `_meta.ui.resourceUri` naming it (for hosts that
show MCP Apps); the resource is HTML that frames the live pane and links to it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.template.loader import render_to_string
from mcp.server.apps import APP_MIME_TYPE
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import CallToolResult, ResourceLink, TextContent

from flows.registry import slash_menu
from runs import api_tokens, doors, exports, services
from runs.models import FlowRun, Origin
from runs.permissions import token_runs

MCP_PATH = "/mcp"
USER_KEY = "orchestrator.user"  # where the door leaves the token's owner in the ASGI scope
UI_PREFIX = "ui://orchestrator/run/"


def ui_uri(run_id: Any) -> str:
    return f"{UI_PREFIX}{run_id}"


class Refused(Exception):
    """A tool's input or run cannot be used; the message is the whole answer."""


def _user(ctx: Context) -> Any:
    request = ctx.request_context.request
    user = request.scope.get(USER_KEY) if request is not None else None
    if user is None:  # the door lets no request through without one; this is a second lock
        raise ToolError("a valid API token is required")
    return user


async def _answer(work: Any, ctx: Context, *args: Any, **kwargs: Any) -> CallToolResult:
    """Run work for the token's owner off the event loop; a refusal is an error result whose
    text is the sentence alone (the SDK would prefix its own words to a raised error)."""
    try:
        result = await database_sync_to_async(work)(_user(ctx), *args, **kwargs)
    except Refused as exc:
        return CallToolResult(content=[TextContent(text=str(exc))], is_error=True)
    if isinstance(result, str):
        return CallToolResult(content=[TextContent(text=result)])
    return result


def _run(user: Any, raw_id: str) -> FlowRun:
    try:
        run_id = UUID(str(raw_id).strip())
    except ValueError:
        raise Refused(f"{raw_id!r} is not a run id (a UUID)") from None
    run = token_runs(user).filter(id=run_id).first()
    if run is None:
        raise Refused("no such run")
    return run


def _launch(user: Any, **kwargs: Any) -> CallToolResult:
    try:
        run = services.launch_run(owner=user, origin=Origin.API, **kwargs)
    except services.LaunchError as exc:
        raise Refused(str(exc)) from None
    return _launched(run, user)


def _launched(run: FlowRun, user: Any) -> CallToolResult:
    state = doors.run_state(run, user)
    uri = ui_uri(run.id)
    text = (
        f"{doors.state_line(run)}\n"
        f"Follow it with run_status (run_id {run.id}) and read the report with run_report "
        f"when it is done. Live pane: {settings.ORCHESTRATOR_PUBLIC_URL}{run.get_absolute_url()}"
    )
    return CallToolResult(
        content=[
            TextContent(text=text),
            ResourceLink(uri=uri, name=f"run-{run.id}", mime_type=APP_MIME_TYPE),
        ],
        structured_content=state,
        _meta={"ui": {"resourceUri": uri}},
    )


def _status(user: Any, run_id: str) -> CallToolResult:
    run = _run(user, run_id)
    return CallToolResult(
        content=[TextContent(text=doors.state_line(run))],
        structured_content=doors.run_state(run, user),
    )


def _report(user: Any, run_id: str) -> str:
    run = _run(user, run_id)
    refused = doors.withheld(user, run)  # the same rule and sentence as the pane's exports
    if refused:
        raise Refused(refused)
    if not run.report:
        return f"The report is not written yet. {doors.state_line(run)}"
    return exports.report_markdown(run)


def _cancel(user: Any, run_id: str) -> str:
    run = _run(user, run_id)
    if not services.cancel_run(run.id):
        return f"The run has already ended ({run.status})."
    run.refresh_from_db()
    return doors.state_line(run)


def _pane_html(user: Any, raw_id: str) -> str:
    try:
        run = _run(user, raw_id)
    except Refused as exc:
        return render_to_string("runs/mcp_app.html", {"error": str(exc)})
    origin = settings.ORCHESTRATOR_PUBLIC_URL
    return render_to_string(
        "runs/mcp_app.html",
        {
            "run": run,
            "pane_url": f"{origin}{run.get_absolute_url()}?embed=1",
            "page_url": f"{origin}{run.get_absolute_url()}",
        },
    )


def build_server() -> MCPServer:
    """The server with its tools and the pane resource; built at the first request, once
    settings are read."""
    server: MCPServer = MCPServer(
        name="orchestrator",
        instructions=(
            "Read-only multi-agent analysis of a project directory on this server: launch a "
            "flow on a target, follow it with run_status, read the report with run_report."
        ),
    )
    for flow in slash_menu():
        server.add_tool(_flow_tool(flow.slug), name=flow.slug, description=flow.description)

    async def launch_flow(
        flow: str,
        target: str,
        ctx: Context,
        focus: str = "",
        band: str = "small",
        fast: bool = False,
    ) -> CallToolResult:
        """Launch any flow (see the launch API's /api/v1/flows) on a target directory."""
        return await _answer(
            _launch, ctx, flow=flow, target=target, focus=focus, band=band, fast=fast
        )

    async def run_status(run_id: str, ctx: Context) -> CallToolResult:
        """A run's status and each agent's state."""
        return await _answer(_status, ctx, run_id)

    async def run_report(run_id: str, ctx: Context) -> CallToolResult:
        """The run's report as Markdown once it is done; its status until then."""
        return await _answer(_report, ctx, run_id)

    async def cancel_run(run_id: str, ctx: Context) -> CallToolResult:
        """Stop a run: running agents stop within a second and nothing new starts."""
        return await _answer(_cancel, ctx, run_id)

    for tool in (launch_flow, run_status, run_report, cancel_run):
        server.add_tool(tool, structured_output=False)

    origin = settings.ORCHESTRATOR_PUBLIC_URL

    @server.resource(
        UI_PREFIX + "{run_id}",
        name="run-pane",
        description="A run's live pane, as an MCP App",
        mime_type=APP_MIME_TYPE,
        # The app loads nothing itself; it frames the pane, which talks to its own origin.
        meta={"ui": {"csp": {"frameDomains": [origin], "connectDomains": [origin]}}},
    )
    async def run_pane(run_id: str, ctx: Context) -> str:
        return await database_sync_to_async(_pane_html)(_user(ctx), run_id)

    return server


def _flow_tool(slug: str) -> Any:
    async def launch(
        target: str, ctx: Context, focus: str = "", band: str = "small", fast: bool = False
    ) -> CallToolResult:
        return await _answer(
            _launch, ctx, flow=slug, target=target, focus=focus, band=band, fast=fast
        )

    return launch


class McpDoor:
    """The ASGI app at /mcp: checks the host and the token, then hands over to the SDK.

    The SDK's session manager needs a task group for the life of the process; daphne has no
    ASGI lifespan, so the door starts it on the first request, on the server's own loop.
    """

    def __init__(self) -> None:
        self._server: MCPServer | None = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host, _port = split_domain_port(headers.get("host", ""))
        if not host or not validate_host(host, settings.ALLOWED_HOSTS):
            await _json(send, 400, "this host is not in ALLOWED_HOSTS")
            return
        user = await database_sync_to_async(api_tokens.bearer_user)(
            headers.get("authorization", "")
        )
        if user is None:
            await _json(
                send,
                401,
                "a valid API token is required (Authorization: Bearer <token>)",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        manager = await self._started()
        await manager.handle_request({**scope, USER_KEY: user}, receive, send)

    async def _started(self) -> Any:
        if self._ready is None:
            self._server = build_server()
            # Host checks are Django's (ALLOWED_HOSTS, above); a bearer token is not sent by
            # a browser on its own, so a rebound DNS name gains a page nothing.
            self._server.streamable_http_app(
                streamable_http_path=MCP_PATH,
                stateless_http=True,
                json_response=True,
                transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            )
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
        await self._ready.wait()
        assert self._server is not None
        return self._server.session_manager

    async def _run(self) -> None:
        assert self._server is not None and self._ready is not None
        async with self._server.session_manager.run():
            self._ready.set()
            await asyncio.Event().wait()  # for the life of the process


async def _json(send: Any, status: int, message: str, extra: list[Any] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(extra or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})
