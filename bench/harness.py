"""Processes for the live benches: the scripted model in a child process, `manage.py serve`
and `runworker` on the bench database, their CPU and memory, and a logged-in session.

The model server gets a process of its own so its pacing threads and the bench's clients do
not share one GIL; its clock is the same machine's `time.time()` as everyone else's.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

_FOCUS = re.compile(r"^Focus:[ \t]*(.*)$", re.M)
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text()[-3000:]
                raise RuntimeError(f"the server did not come up:\n{tail}") from None
            time.sleep(0.1)


# --- the scripted model --------------------------------------------------------------------


def _model_main(conn: Connection, options: dict[str, Any]) -> None:
    """Child process: serve until told; `collect` answers with the emission log, `set`
    changes the server's plain attributes (token_rate, first_byte_delay)."""
    from runs.demo.server import ScriptedModelServer

    server = ScriptedModelServer(**options).start()
    conn.send(server.url)
    try:
        while True:
            if not conn.poll(5.0):
                # Long soaks: the request log is only for tests; keep the child's memory flat.
                with server._lock:
                    server.requests.clear()
                    server.timings.clear()
                continue
            command = conn.recv()
            if isinstance(command, tuple) and command[0] == "set":
                for name, value in command[1].items():
                    setattr(server, name, value)
                conn.send("ok")
            elif command == "collect":
                labels = {sid: _label(body) for sid, body in server.stream_bodies.items()}
                conn.send((server.emissions or [], labels))
            elif command == "stop":
                return
    finally:
        server.stop()


def _label(body: dict[str, Any]) -> tuple[str, str]:
    """(run focus, agent role): which step a stream belongs to, when each run has its focus."""
    from runs.demo.scripts import marker

    focus = ""
    for message in body.get("messages") or []:
        match = _FOCUS.search(str(message.get("content") or ""))
        if message.get("role") == "user" and match:
            focus = match.group(1).strip()
            break
    return focus, marker(body, "Agent role") or "?"


class ModelProcess:
    """The scripted model server (runs.demo.server) in its own process."""

    def __init__(self, **options: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_model_main, args=(child, options), daemon=True)
        self._process.start()
        self.url: str = self._conn.recv()

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def set(self, **attributes: Any) -> None:
        self._conn.send(("set", attributes))
        self._conn.recv()

    def collect(self) -> tuple[list[tuple[str, int, float]], dict[str, tuple[str, str]]]:
        """The emission log and (focus, role) per stream id (record_emissions=True)."""
        self._conn.send("collect")
        result: Any = self._conn.recv()
        return result

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


# --- orchestrator processes ---------------------------------------------------------------


def orchestrator_env(model_url: str, root: Path, **extra: str) -> dict[str, str]:
    """manage.py's environment: the bench database, the scripted model at model_url."""
    from devtools.testing import manage_env

    env = manage_env(
        ORCHESTRATOR_MODEL="demo/scripted",
        ORCHESTRATOR_BASE_URL=model_url,
        ORCHESTRATOR_ALLOWED_ROOTS=str(root),
        ORCHESTRATOR_SHARED_ROOTS=str(root),  # the bench's users share its project
        ORCHESTRATOR_MAX_PENDING_RUNS_PER_USER="0",  # its bursts wait uncapped
        # One bench user launches every run: fair use's cap of active runs per user would hold
        # most of them back and the bench would measure the cap, not the path it is about.
        # `require_admitted` checks that the server really runs them all.
        ORCHESTRATOR_MAX_ACTIVE_RUNS_PER_USER="0",
        LOG_LEVEL="WARNING",
        **extra,
    )
    if "REDIS_URL" not in extra:
        env.pop("REDIS_URL", None)  # one process, in-memory channel layer, unless asked
    return env


class ManageProcess:
    """A `manage.py` command (serve, runworker) with its CPU time and resident memory."""

    def __init__(self, *args: str, env: dict[str, str], log: Path, port: int | None = None):
        from devtools.testing import start_manage

        self.log = log
        self.process = start_manage(*args, env=env, log=log)
        if port is not None:
            wait_for_port(port, self.process, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(model_url: str, root: Path, log: Path, **extra: str) -> tuple[ManageProcess, str]:
    """`manage.py serve` (web + engine) on a free port; returns it and its base URL."""
    from devtools.testing import free_port

    port = free_port()
    env = orchestrator_env(model_url, root, **extra)
    process = ManageProcess("serve", "--port", str(port), env=env, log=log, port=port)
    return process, f"127.0.0.1:{port}"


def require_admitted(run_ids: list[Any], timeout: float = 60.0) -> None:
    """Wait until none of the runs is `pending` (claimed by the server's engine) or raise:
    a bench whose runs are held back (a cap, too few worker places) measures nothing."""
    from runs.models import FlowRun, RunStatus

    deadline = time.monotonic() + timeout
    while True:
        waiting = FlowRun.objects.filter(id__in=run_ids, status=RunStatus.PENDING).count()
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"bench setup failed: {waiting} of {len(run_ids)} runs still pending after "
                f"{timeout:g} s (a cap of active runs per user, or too few worker places?)"
            )
        time.sleep(0.1)


# --- a person ------------------------------------------------------------------------------


def session_cookie(username: str = "bench") -> tuple[Any, str]:
    """A user and a logged-in session stored in the database: (user, Cookie header)."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(username, password=f"{username}-pass-123")
    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    return user, f"{name}={client.cookies[name].value}"
