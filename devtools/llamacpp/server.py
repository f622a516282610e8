"""Start and stop a real `llama-server` on 127.0.0.1 for tests, and restart it on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import httpx

# Settings llama-server would read from the environment; the tests pass every option explicitly.
_FOREIGN_ENV_PREFIXES = ("LLAMA_", "HF_")


class ServerStartError(RuntimeError):
    """The server exited or never became healthy; the message carries its log's last lines."""


class LlamaServer:
    """One llama-server process: `start()`, `stop()` (SIGTERM, then SIGKILL) and `restart()`."""

    def __init__(
        self,
        *,
        binary: Path,
        model: Path,
        port: int,
        log_path: Path,
        slots: int | None = 1,
        context: int = 2048,
        threads: int = 1,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary, self.model, self.port, self.log_path = binary, model, port, log_path
        self.slots, self.context, self.threads = slots, context, threads
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The server's root, e.g. `http://127.0.0.1:PORT` (`/health`, `/props`, `/slots`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (`…/v1`), as the orchestrator is configured with."""
        return f"{self.url}/v1"

    def command(self) -> list[str]:
        """The full command line, every option explicit."""
        return [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            # No --parallel means llama-server's own default ("auto"), as a user might run it.
            *(("--parallel", str(self.slots)) if self.slots is not None else ()),
            "--ctx-size",
            str(self.context),
            "--threads",
            str(self.threads),
            "--threads-http",
            str((self.slots or 4) + 2),
            "--jinja",
            "--no-webui",
            "--slots",
            "--metrics",
            "--no-warmup",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and return once `/health` answers 200."""
        if self.process is not None and self.process.poll() is None:
            raise ServerStartError(f"llama-server on port {self.port} is already running")
        self.starts += 1
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_FOREIGN_ENV_PREFIXES)
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for it
            )
        self._wait_healthy(timeout)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; return the exit code (None if not run)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace)
        return process.returncode

    def kill(self) -> None:
        """End the process at once with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, timeout: float = 60.0) -> None:
        """Stop and start again on the same port, as an operator restarting it would."""
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, for failure messages."""
        if not self.log_path.is_file():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    code = self.process.returncode
                    self.process = None
                    raise ServerStartError(
                        f"llama-server exited with {code} while starting:\n{self.log_tail()}"
                    )
                try:
                    response = client.get(f"{self.url}/health")
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as error:
                    last = type(error).__name__
                time.sleep(0.05)
        self.kill()
        raise ServerStartError(
            f"llama-server was not healthy within {timeout:g}s ({last}):\n{self.log_tail()}"
        )


@contextmanager
def running_server(
    *,
    binary: Path,
    model: Path,
    port: int,
    log_path: Path,
    slots: int | None = 1,
    context: int = 2048,
    extra_args: Sequence[str] = (),
) -> Iterator[LlamaServer]:
    """A started server for the length of a `with` block, stopped however the block ends."""
    server = LlamaServer(
        binary=binary,
        model=model,
        port=port,
        log_path=log_path,
        slots=slots,
        context=context,
        extra_args=extra_args,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
