"""`manage.py api_token create|list|revoke --user NAME`: a person's tokens for the API and MCP."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs import api_tokens


class Command(BaseCommand):
    help = "Create, list or revoke a user's API tokens (the launch API and the MCP server)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["create", "list", "revoke"])
        parser.add_argument("--user", required=True, help="the username the token acts for")
        parser.add_argument("--name", default="", help="create: what the token is for")
        parser.add_argument("--prefix", default="", help="revoke: the token's visible prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        user = user_model.objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"no user {options['user']!r}")
        action = options["action"]
        if action == "create":
            token, raw = api_tokens.create_token(user, options["name"])
            self.stdout.write(raw)
            self.stderr.write(
                f"Token {token.prefix} for {user.get_username()}: shown this once; "
                "keep it now (it is stored only as a hash)."
            )
        elif action == "list":
            for token in api_tokens.tokens_of(user):
                state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "active"
                used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
                self.stdout.write(
                    f"{token.prefix}  {state}  created {token.created_at:%Y-%m-%d}  "
                    f"last used {used}  {token.name}"
                )
        else:
            if not options["prefix"]:
                raise CommandError("say which token to revoke: --prefix orc_xxxxxxxx")
            if not api_tokens.revoke(user, options["prefix"]):
                raise CommandError(
                    f"{user.get_username()} has no active token {options['prefix']!r}"
                )
            self.stdout.write(f"token {options['prefix']} revoked")
