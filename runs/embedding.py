"""Who may frame the pane and talk to it: the site itself and ORCHESTRATOR_EMBED_ORIGINS.

One list serves the three places that ask: the pane's `frame-ancestors` (django-csp's
per-response override; every other page keeps refusing frames), the origins the pane posts
its events to and accepts commands from (docs/embedding.md), and, through
orchestrator_site.origins, the run's WebSocket.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

# The postMessage contract's version (docs/embedding.md); a change a host could notice
# raises it.
MESSAGE_VERSION = 1


def host_origins(request: HttpRequest) -> list[str]:
    """The exact origins allowed to frame this pane: the site's own, then the embed origins."""
    own = f"{request.scheme}://{request.get_host()}"
    return [own, *(o for o in settings.ORCHESTRATOR_EMBED_ORIGINS if o != own)]


def allow_framing(response: HttpResponse) -> HttpResponse:
    """Let the embed origins frame this one response; X-Frame-Options cannot name them, so
    it is left off (browsers that know CSP obey frame-ancestors and ignore it anyway)."""
    response._csp_replace = {  # type: ignore[attr-defined]
        "frame-ancestors": ["'self'", *settings.ORCHESTRATOR_EMBED_ORIGINS]
    }
    response.xframe_options_exempt = True
    return response
