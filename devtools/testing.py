"""Helpers the tests and the benches share: the shop project, manage.py processes, free ports.

A development aid: the product never imports it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SOURCE_FILES = {
    "app/__init__.py": "",
    "app/settings.py": 'DEBUG = True\nSECRET = "not-a-real-secret"\npassword = "hunter2"\n',
    "app/views.py": (
        "import subprocess\n\n\n"
        "def run(cmd):\n"
        "    # TODO: validate the command before running it\n"
        "    return subprocess.run(cmd, shell=True)\n\n\n"
        "def total(items):\n"
        "    result = 0\n"
        "    for item in items:\n"
        "        result += item.price\n"
        "    return result\n"
    ),
    "tests/test_views.py": (
        "from app.views import total\n\n\ndef test_total():\n    assert total([]) == 0\n"
    ),
    "README.md": "# Shop\n\nA tiny shop used as a review target.\n",
}


def write_project(base: Path) -> Path:
    """Write the small shop project under base (the tests and the benchmarks use it)."""
    root = base / "shop"
    for name, text in SOURCE_FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def database_url(name: str = "") -> str:
    """The test database as a URL, for processes the tests start themselves (`name`: another
    database on the same server)."""
    from django.db import connection

    conf = {**connection.settings_dict, **({"NAME": name} if name else {})}
    auth = conf["USER"] + (f":{conf['PASSWORD']}" if conf["PASSWORD"] else "")
    host = conf["HOST"] or ""
    if host.startswith("/"):
        return f"postgresql://{auth}@/{conf['NAME']}?host={host}"
    port = f":{conf['PORT']}" if conf["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{conf['NAME']}"


def manage_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "ORCHESTRATOR_SWEEP_SECONDS": "0.5",
            **extra,
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_manage(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A real `manage.py` process, output to a log file the test can show on failure."""
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def finish_step(step_id: int, worker: str, **outcome: Any) -> Any:
    """The engine's finish: record the step, then write the report if it was the run's last."""
    from runs.engine.queue import scheduler
    from runs.engine.report import reporting
    from runs.models import FlowStep

    finished = scheduler.finish_step(step_id, worker, **outcome)
    if finished.run_done:
        reporting.finalize_run(FlowStep.objects.get(id=step_id).run_id)
    return finished
