"""`manage.py runworker orchestrator.dispatch`: Channels' worker, with the run engine inside."""

from __future__ import annotations

from typing import Any

from channels.management.commands import runworker

from orchestrator_site.heap import freeze_startup_heap
from runs.engine.worker import EngineWorker


class Command(runworker.Command):
    help = "Run the Orchestrator worker: scheduler and agents (channel: orchestrator.dispatch)."
    worker_class = EngineWorker

    def handle(self, *args: Any, **options: Any) -> None:
        freeze_startup_heap()  # full collections skip what the process keeps (see heap.py)
        super().handle(*args, **options)
