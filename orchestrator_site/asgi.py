"""ASGI entry point: HTTP, WebSockets (exact origins checked here, the owner in the consumer)
and the worker channel."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from orchestrator_site.origins import SiteOriginValidator  # noqa: E402
from runs.engine.worker import DispatchConsumer  # noqa: E402
from runs.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        "channel": ChannelNameRouter({"orchestrator.dispatch": DispatchConsumer.as_asgi()}),
    }
)
