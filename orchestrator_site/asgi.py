"""ASGI entry point: HTTP (Django, and the MCP server at /mcp), WebSockets (exact origins
checked here, the owner in the consumer) and the worker channel."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from orchestrator_site.origins import SiteOriginValidator  # noqa: E402
from runs.engine.worker import DispatchConsumer  # noqa: E402
from runs.mcp_server import MCP_PATH, McpDoor  # noqa: E402
from runs.routing import websocket_urlpatterns  # noqa: E402

mcp_door = McpDoor()


async def http(scope: dict, receive: object, send: object) -> None:
    """/mcp goes to the MCP server (its own token check); everything else to Django."""
    if scope["path"] == MCP_PATH or scope["path"].startswith(MCP_PATH + "/"):
        await mcp_door(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)  # type: ignore[arg-type]


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "channel": ChannelNameRouter({"orchestrator.dispatch": DispatchConsumer.as_asgi()}),
    }
)
