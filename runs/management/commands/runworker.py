"""`manage.py runworker orchestrator.dispatch`: Channels' worker, with the run engine inside."""

from __future__ import annotations

from channels.management.commands import runworker

from runs.engine.worker import EngineWorker


class Command(runworker.Command):
    help = "Run the Orchestrator worker: scheduler and agents (channel: orchestrator.dispatch)."
    worker_class = EngineWorker
