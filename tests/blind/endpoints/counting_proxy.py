"""A counting HTTP proxy in front of one real llama-server, written for the blind endpoint tests.

The orchestrator is pointed at the proxy; the proxy forwards every request to the server and
counts the completion requests open through it at once (and the most ever open), so a test
can say whether an endpoint ever had more requests than its slots without reading the
orchestrator's code. A completion request counts as open from the moment its body has arrived
until its answer's last chunk has been read from the server (it is uncounted just before that
last chunk goes to the client, so a client that sends its next request as soon as it reads
the end is never counted twice), or until either side hangs up.

`pause()` closes the listening socket and cuts every open connection, as a server that died
would look to a client (connection refused); `resume()` listens again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field

from devtools.testing import free_port


@dataclass
class Counts:
    open: int = 0
    max_open: int = 0
    started: int = 0
    answered: int = 0  # completed with a 2xx status and a whole body
    not_ok: int = 0  # an error status, a hang-up or an unreachable server
    start_times: list[float] = field(default_factory=list)


class CountingProxy:
    """`CountingProxy(upstream_port)`: serves at `base_url` (…/v1) while started."""

    def __init__(
        self, upstream_port: int, *, first_byte_delay: float = 0.0, max_tokens: int | None = None
    ) -> None:
        self.upstream_port = upstream_port
        self.max_tokens = max_tokens
        self.first_byte_delay = first_byte_delay
        self.port = free_port()
        self.counts = Counts()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def started_since(self, moment: float) -> int:
        with self._lock:
            return sum(1 for started in self.counts.start_times if started > moment)

    # --- lifecycle (called from the test's thread) -------------------------------------------

    def start(self) -> CountingProxy:
        self._thread.start()
        self.resume()
        return self

    def resume(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def pause(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.pause()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- inside the proxy's loop -------------------------------------------------------------

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._clients):
            writer.transport.abort()

    def _open(self) -> None:
        with self._lock:
            self.counts.open += 1
            self.counts.started += 1
            self.counts.max_open = max(self.counts.max_open, self.counts.open)
            self.counts.start_times.append(time.monotonic())

    def _close_one(self, *, answered: bool) -> None:
        with self._lock:
            self.counts.open -= 1
            if answered:
                self.counts.answered += 1
            else:
                self.counts.not_ok += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        counted = [False]  # still counted as open (the relay clears it when it uncounts)
        finished = False
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, headers = _parse_head(head)
            method, path = request_line.split(" ")[:2]
            body = await _read_body(reader, headers)
            if method == "POST" and "completions" in path:
                counted[0] = True
                self._open()
                body = self._capped(body)
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
            except OSError:
                writer.transport.abort()  # the server is gone: the client sees a hang-up
                return
            kept = [
                (name, value)
                for name, value in headers
                if name.lower() not in ("connection", "host", "content-length", "keep-alive")
                and name.lower() != "transfer-encoding"
            ]
            lines = [
                f"{method} {path} HTTP/1.1",
                f"Host: 127.0.0.1:{self.upstream_port}",
                "Connection: close",
                f"Content-Length: {len(body)}",
                *(f"{name}: {value}" for name, value in kept),
            ]
            upstream_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await upstream_writer.drain()
            relay = asyncio.ensure_future(self._relay(upstream_reader, writer, counted))
            hangup = asyncio.ensure_future(reader.read(1))
            done, _ = await asyncio.wait({relay, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if relay in done:
                hangup.cancel()
                finished = relay.result()
            else:
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await relay
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            if counted[0]:
                self._close_one(answered=False)
            self._clients.discard(writer)
            for each in (upstream_writer, writer):
                if each is not None:
                    each.transport.abort() if not finished else each.close()

    def _capped(self, body: bytes) -> bytes:
        """The request with its answer length capped (a test's speed, not its subject)."""
        if self.max_tokens is None:
            return body
        try:
            request = json.loads(body)
        except ValueError:
            return body
        if not isinstance(request, dict):
            return body
        for name in ("max_tokens", "max_completion_tokens", "n_predict"):
            asked = request.get(name)
            if not isinstance(asked, int) or asked < 0 or asked > self.max_tokens:
                request[name] = self.max_tokens
        return json.dumps(request).encode()

    async def _relay(
        self, upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, counted: list[bool]
    ) -> bool:
        """Forward one response; True when it arrived whole (and was uncounted here)."""
        head = await upstream.readuntil(b"\r\n\r\n")
        status_line, headers = _parse_head(head)
        status = int(status_line.split(" ")[1])
        if counted[0] and self.first_byte_delay:
            await asyncio.sleep(self.first_byte_delay)
        names = {name.lower(): value for name, value in headers}
        kept = [(n, v) for n, v in headers if n.lower() not in ("connection", "keep-alive")]
        out = [status_line, *(f"{n}: {v}" for n, v in kept), "Connection: close"]
        writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))

        def uncount() -> None:
            if counted[0]:
                counted[0] = False
                self._close_one(answered=200 <= status < 300)

        def finish(last: bytes) -> bool:
            uncount()
            writer.write(last)
            return True

        if "chunked" in names.get("transfer-encoding", "").lower():
            while True:
                size_line = await upstream.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    trailer = b""
                    while True:
                        line = await upstream.readuntil(b"\r\n")
                        trailer += line
                        if line == b"\r\n":
                            break
                    finish(size_line + trailer)
                    break
                data = await upstream.readexactly(size + 2)
                if b"data: [DONE]" in data:
                    uncount()  # the stream's end: the server freed the slot before sending it
                writer.write(size_line + data)
                await writer.drain()
        elif "content-length" in names:
            data = await upstream.readexactly(int(names["content-length"]))
            finish(data)
        else:
            data = await upstream.read()
            finish(data)
        await writer.drain()
        return True


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


async def _read_body(reader: asyncio.StreamReader, headers: list[tuple[str, str]]) -> bytes:
    names = {name.lower(): value for name, value in headers}
    if "chunked" in names.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return body
            body += (await reader.readexactly(size + 2))[:-2]
    return await reader.readexactly(int(names.get("content-length", "0") or 0))
