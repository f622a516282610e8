from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.models import FlowRun
from runs.services import cancel_run


class Command(BaseCommand):
    help = "Cancel a run: running agents stop within a second and nothing new starts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run_id = uuid.UUID(options["run_id"])
        except ValueError:
            raise CommandError(f"{options['run_id']!r} is not a run id (a UUID)") from None
        run = FlowRun.objects.filter(id=run_id).first()
        if run is None:
            raise CommandError(f"no run {run_id}")
        if not cancel_run(run_id):
            raise CommandError(f"run {run_id} already ended ({run.status})")
        self.stdout.write(f"run {run_id} cancelled")
