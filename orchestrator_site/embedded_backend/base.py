"""Django's PostgreSQL backend, pointed at the embedded server once something connects.

Settings only describe the embedded database; starting it at import would start a server for
every `manage.py` command and for mypy's Django plugin. The first connection starts (or reuses)
it and fills in the socket, user and database.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base

from orchestrator_site.embedded_db import embedded_database_url
from orchestrator_site.env import database_from_url

_lock = threading.Lock()
_started: dict[Path, dict[str, Any]] = {}


def _connection_settings(data_dir: Path) -> dict[str, Any]:
    with _lock:
        if data_dir not in _started:
            url = embedded_database_url(data_dir)
            entry = database_from_url("DATABASE_URL", url)
            _started[data_dir] = {k: entry[k] for k in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}
        return _started[data_dir]


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        if not self.settings_dict.get("HOST"):
            started = _connection_settings(Path(self.settings_dict["EMBEDDED_PGDATA"]))
            # A connection made without a database (test set-up) keeps its own NAME.
            name = self.settings_dict.get("NAME")
            self.settings_dict.update(started)
            if name is None:
                self.settings_dict["NAME"] = None
        return super().get_connection_params()
