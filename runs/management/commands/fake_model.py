"""`manage.py fake_model --port N`: the scripted OpenAI-compatible model (test and demo aid)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Serve the scripted model at http://127.0.0.1:N/v1 (deterministic; for tests and demos)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*", help="passed on: --port, --token-rate, --fault ...")

    def run_from_argv(self, argv: list[str]) -> None:
        # The server owns its flags (one parser), so pass everything after the command on.
        from runs.fakemodel.server import main

        raise SystemExit(main(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:  # pragma: no cover - see run_from_argv
        pass
