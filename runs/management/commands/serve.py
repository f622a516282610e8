"""`manage.py serve`: daphne (HTTP + WebSockets) and the run engine in one process.

One process is what makes the in-process channel layer work when REDIS_URL is unset; with
Redis, more workers can run beside it (`manage.py runworker orchestrator.dispatch`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator_site.heap import freeze_startup_heap
from runs.engine.agent.modelconfig import resolve_model
from runs.hints import manage_command
from runs.socket_messages import MAX_MESSAGE_CHARS

log = logging.getLogger("runs")


class Command(BaseCommand):
    help = "Serve the Orchestrator (web + worker) on 127.0.0.1:PORT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--no-worker", action="store_true", help="serve the web only")

    def first_time_hint(self, url: str) -> None:
        """How to create a login, said only while there is none to sign in with."""
        from django.contrib.auth import get_user_model
        from django.db import DatabaseError

        try:
            if get_user_model().objects.exists():
                return
        except DatabaseError:  # not migrated yet: certainly no login either
            pass
        create_user = manage_command("createsuperuser")
        self.stdout.write(
            f"First time? Create your login with `make user` (or `{create_user}`), "
            f"then open {url}workspace/"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Daphne installs its Twisted reactor on import, so it is imported only here.
        from daphne.server import Server
        from twisted.internet import reactor

        from orchestrator_site.asgi import application
        from orchestrator_site.websocket_server import pace_websockets
        from runs.engine.worker import EngineWorker

        self._check_model()
        app = ASGIStaticFilesHandler(application)
        worker: EngineWorker | None = None
        if not options["no_worker"]:
            from channels.layers import get_channel_layer

            worker = EngineWorker(
                application=application,
                channels=["orchestrator.dispatch"],
                channel_layer=get_channel_layer(),
            )
            worker.handle_signals = False

        def on_ready() -> None:
            # Before the reactor runs, so every WebSocket connection is a paced one.
            pace_websockets(server)
            if worker is not None:
                asyncio.get_event_loop().create_task(worker.handle())

        def stop_worker() -> None:
            from runs.engine.worker import current_engine

            engine = current_engine()
            if engine is not None:
                engine.stop()

        reactor.addSystemEventTrigger("before", "shutdown", stop_worker)  # type: ignore[arg-type]
        url = f"http://{options['host']}:{options['port']}/"
        self.stdout.write(f"Orchestrator serving {url}  (Ctrl-C stops)")
        self.first_time_hint(url)
        server = Server(
            application=app,
            endpoints=[f"tcp:port={options['port']}:interface={options['host']}"],
            ready_callable=on_ready,
            verbosity=0,
            # A frame the consumer would refuse anyway is not buffered whole: over this
            # the connection closes (1009). Four bytes a character: every message within
            # the consumer's own limit (runs.socket_messages) still reaches it.
            websocket_max_message_size=4 * MAX_MESSAGE_CHARS,
            websocket_max_frame_size=4 * MAX_MESSAGE_CHARS,
        )
        # Last, once everything the process keeps is built: full collections skip it.
        freeze_startup_heap()
        server.run()
        self._embedded_database_note()

    def _embedded_database_note(self) -> None:
        """The embedded PostgreSQL outlives this process (the CLI and workers share it); say
        so, unless `make run` is about to stop it."""
        from django.conf import settings

        if settings.EMBEDDED_DATABASE and not os.environ.get("MAKELEVEL"):
            self.stdout.write(
                "The embedded PostgreSQL keeps running (data in var/pgdata); "
                "`make db-stop` stops it."
            )

    def _check_model(self) -> None:
        from runs.engine.agent.backends.base import BackendError
        from runs.engine.agent.backends.openai import probe_models

        try:
            model = resolve_model()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        urls = model.endpoints or (model.endpoint.base_url,)  # each server of the model
        if model.is_demo:
            self.stdout.write(f"Model: {model.model_id} (scripted demo model at {', '.join(urls)})")
            return
        for url in urls:
            try:
                served = asyncio.run(probe_models(url))
            except BackendError as exc:
                self.stdout.write(
                    self.style.WARNING(
                        f"No model server answers at {url} ({exc}).\n"
                        "Start llama-swap (or any OpenAI-compatible server), point "
                        "ORCHESTRATOR_BASE_URL at it, or try the scripted demo model: "
                        "make run MODEL=demo"
                    )
                )
                continue
            note = "" if model.name in served else f" (the server lists: {', '.join(served[:5])})"
            self.stdout.write(f"Model: {model.model_id} at {url}{note}")
