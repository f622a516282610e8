"""`manage.py launch_flow FLOW --target PATH`: start a run; --wait watches it to the report.

With --wait the exit status says how it went: 0 when every agent succeeded, 1 when the run
failed or was cancelled, 3 when the run has its report but some agents failed (the report
names them and its confidence is capped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from flows.models import BANDS
from runs.engine.worker import Engine
from runs.hints import manage_command
from runs.labels import run_state
from runs.models import REPORTED_RUN, FlowRun, RunStatus, StepStatus
from runs.progress import Snapshot, snapshot
from runs.services import LaunchError, launch_run

REFRESH_SECONDS = 0.5
EXIT_RUN_FAILED = 1
EXIT_AGENTS_FAILED = 3


def exit_code(run: FlowRun, say: Callable[[str], object]) -> int:
    """0: every agent succeeded; 3: the report is final but some agents failed (or a run
    that says succeeded has a step that did not); 1: no final report (failed, cancelled)."""
    if run.status not in REPORTED_RUN:
        say(f"run {run_state(run).text}: {run.error or run.summary}")
        return EXIT_RUN_FAILED
    failed = list(run.steps.exclude(status=StepStatus.SUCCEEDED).values_list("key", "status"))
    if run.status == RunStatus.FINISHED_WITH_FAILURES or failed:
        agents = ", ".join(f"{key} ({status})" for key, status in failed)
        say(f"run {run_state(run).text}: {agents}")
        return EXIT_AGENTS_FAILED
    return 0


class Command(BaseCommand):
    help = "Launch a flow on a target directory; --wait watches every agent and prints the report."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("flow", help="flow slug, e.g. code-review")
        parser.add_argument("--target", required=True, help="directory to analyse (read-only)")
        parser.add_argument("--band", default="small", help=f"one of {', '.join(BANDS)}")
        parser.add_argument("--fast", action="store_true", help="cap each agent's depth")
        parser.add_argument(
            "--web",
            action="store_true",
            help="let the flow's web roles search and read the web (needs "
            "ORCHESTRATOR_WEB_SEARCH_URL)",
        )
        parser.add_argument("--focus", default="", help="the question or focus for the agents")
        parser.add_argument("--wait", action="store_true", help="watch the run until it ends")
        parser.add_argument("--output", help="also write the report (Markdown) to this file")
        parser.add_argument("--user", help="owner of the run (username); default: none")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["verbosity"] < 2:  # the progress lines say it all; keep the log quiet
            logging.getLogger("runs").setLevel(logging.WARNING)
        self._ensure_migrated()
        owner = self._owner(options.get("user"))
        try:
            run = launch_run(
                flow=options["flow"],
                target=options["target"],
                band=options["band"],
                fast=options["fast"],
                focus=options["focus"],
                owner=owner,
                web=options["web"],
            )
        except (LaunchError, ImproperlyConfigured) as exc:
            raise CommandError(str(exc)) from None
        if not options["wait"]:
            self.stdout.write(str(run.id))
            return
        self.stdout.write(f"run {run.id}")
        asyncio.run(self._watch(run.id))
        run.refresh_from_db()
        self.stdout.write("")
        self.stdout.write(run.report)
        if options.get("output"):
            self._write_report(Path(options["output"]), run.report)
        if code := exit_code(run, self.stderr.write):
            sys.exit(code)

    def _ensure_migrated(self) -> None:
        """A fresh database gets its tables first: the embedded one is set up here and now
        (as `make run` would), another is the person's to migrate, told in one sentence."""
        try:
            executor = MigrationExecutor(connection)
            pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except DatabaseError as exc:
            raise CommandError(f"cannot use the database: {exc}".strip()) from None
        if not pending:
            return
        if not settings.EMBEDDED_DATABASE:
            raise CommandError(
                "the database has no tables yet (or is behind this version): run "
                f"`make migrate` (or `{manage_command('migrate')}`), then launch again"
            )
        self.stderr.write("Setting up the embedded database first (manage.py migrate)...")
        call_command("migrate", interactive=False, verbosity=0)

    def _owner(self, username: str | None) -> Any:
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        return user

    async def _watch(self, run_id: Any) -> None:
        """Run an engine for this run in-process (harmless beside other workers) and draw it."""
        engine = Engine(run_id=run_id)
        task = asyncio.create_task(engine.run())
        previous: Snapshot | None = None
        try:
            while not task.done():
                previous = await self._draw(run_id, previous)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), REFRESH_SECONDS)
            await self._draw(run_id, previous)
            task.result()
        except (KeyboardInterrupt, asyncio.CancelledError):
            engine.stop()
            await asyncio.gather(task, return_exceptions=True)
            raise

    async def _draw(self, run_id: Any, previous: Snapshot | None) -> Snapshot:
        now = await sync_to_async(snapshot)(run_id)
        warnings = [f"warning: {note}" for note in now.notes]
        if self.stdout.isatty():
            # A live block of one line per agent, redrawn in place.
            if previous is not None:
                height = len(previous.lines) + len(previous.notes) + 1
                self.stdout.write(f"\x1b[{height}F\x1b[J", ending="")
            self.stdout.write("\n".join([now.header, *warnings, *now.lines]))
            self.stdout.flush()
            return now
        # Not a terminal (a log, CI): a line only when the run or an agent changed state.
        stamp = time.strftime("%H:%M:%S")
        if previous is None or now.header != previous.header:
            self.stdout.write(f"[{stamp}] {now.header}")
        for note, warning in zip(now.notes, warnings, strict=True):
            if previous is None or note not in previous.notes:
                self.stdout.write(f"[{stamp}] {warning}")
        for (key, state), line in zip(now.states.items(), now.lines, strict=True):
            if previous is None or previous.states.get(key) != state:
                self.stdout.write(f"[{stamp}] {line}")
        return now

    def _write_report(self, path: Path, report: str) -> None:
        try:
            path.write_text(report, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"could not write the report to {path}: {exc.strerror}") from None
        self.stdout.write(f"report written to {path}")
