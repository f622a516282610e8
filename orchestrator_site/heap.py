"""The long-running processes' heap, kept out of the garbage collector's full passes.

After start-up a serve or worker process holds about 180,000 objects the collector tracks
(modules, classes, compiled templates, the URL and model registries) that live as long as
the process. Every full (oldest-generation) collection walked all of them: 100-125 ms with
the GIL held, on this kind of machine, every so often while agents stream. That stalled the
event loop (engine and sockets alike) and was most of the stream's tail. Frozen, they sit
in the permanent generation, which collections skip; a full collection then walks only
what was created since (the runs' own objects), and reference cycles among those are
still found.
"""

from __future__ import annotations

import gc


def warm_up() -> None:
    """Import and build what a process would otherwise build on first use, on its event loop
    while other agents stream, so that it is frozen too: the ASGI application (consumers,
    views, URLs), the URL resolver, the pane's compiled template (its partials are thousands
    of nodes), and httpx's transport (httpcore is imported when the first client is made:
    300 ms on the loop, measured under the latency bench)."""
    import httpx
    from django.template.loader import get_template
    from django.urls import get_resolver

    import orchestrator_site.asgi  # noqa: F401

    get_resolver().reverse_dict  # noqa: B018 - populates the resolver
    get_template("runs/pane.html")
    httpx.AsyncClient()  # imports the transport; never used, nothing to close


def freeze_startup_heap() -> int:
    """Collect the start-up garbage, then move every object alive now to the permanent
    generation. Call once, when the process has finished starting, before it serves.
    Returns how many objects are frozen."""
    warm_up()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
