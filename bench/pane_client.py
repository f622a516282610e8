"""A pane as the browser holds it: a real WebSocket on /ws/runs/<id>/, every step expanded,
each received fragment timestamped on arrival and reduced to (step, event ids, streamed text).

The fragments are the OOB HTML of runs/live.py `render_events`; model text inside them is
HTML-escaped, so no '<' can occur in it and a regular expression reads it back exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

_APPEND = re.compile(r'hx-swap-oob="beforeend:#stream-(\d+)"')
_EVENT = re.compile(r'class="ev ([\w-]+)[^"]*" data-id="(\d+)"')
_TEXT = re.compile(r'<span class="ev (?:text|reasoning)" data-id="\d+">([^<]*)</span>')
# The run's badge (runs/pane.html#run-state), in the snapshot and in every update that
# changes it.
_STATUS = re.compile(r'data-testid="run-status" data-status="(\w+)"')
_FINISHED = {"succeeded", "finished_with_failures", "failed", "cancelled"}
_PIECE = re.compile(r"\S+\s*|\s+")  # the scripted model's token (runs/demo/stream.py)


@dataclass(frozen=True)
class Fragment:
    """One stream-append message: when it arrived, its step, event ids and streamed text."""

    at: float
    step: int
    ids: tuple[int, ...]
    text: str

    @property
    def tokens(self) -> int:
        return len(_PIECE.findall(self.text))


def parse(message: str, at: float) -> Fragment | None:
    append = _APPEND.search(message)
    if append is None:
        return None  # header, rows, report: status only
    ids = tuple(int(m.group(2)) for m in _EVENT.finditer(message))
    text = "".join(html.unescape(m.group(1)) for m in _TEXT.finditer(message))
    return Fragment(at, int(append.group(1)), ids, text)


@dataclass
class Pane:
    """`await Pane(host, run, cookie).open(steps)`, then fragments accumulate until close()."""

    host: str  # 127.0.0.1:port
    run_id: str
    cookie: str
    fragments: list[Fragment] = field(default_factory=list)
    status: str = ""  # the run's, from the header fragments
    closed: str = ""  # how and when the socket closed, if it did before close()
    _ws: ClientConnection | None = None
    _reader: asyncio.Task[None] | None = None

    async def open(self, steps: list[int]) -> Pane:
        """Connect (the snapshot arrives first) and expand every given step."""
        # The Origin must be the site itself (scheme, host and port), as a browser's is.
        self._ws = await connect(
            f"ws://{self.host}/ws/runs/{self.run_id}/",
            origin=f"http://{self.host}",  # type: ignore[arg-type]
            additional_headers={"Cookie": self.cookie},
            max_size=None,
            max_queue=None,  # never push back on the server: the bench measures it, not us
            open_timeout=30,
        )
        self._note_status(str(await self._ws.recv()))  # the snapshot
        self._reader = asyncio.create_task(self._read())
        for step in steps:
            await self._ws.send(json.dumps({"type": "subscribe", "step": step, "after": 0}))
        return self

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                at = time.time()
                self._note_status(str(message))
                fragment = parse(str(message), at)
                if fragment is not None:
                    self.fragments.append(fragment)
        except ConnectionClosed as closed:
            self.closed = f"closed by the server ({closed.rcvd}) at {time.time():.1f}"
        else:
            self.closed = f"socket ended at {time.time():.1f}"

    def _note_status(self, message: str) -> None:
        if status := _STATUS.search(message):
            self.status = status.group(1)

    @property
    def finished(self) -> bool:
        return self.status in _FINISHED

    def ids_by_step(self) -> dict[int, list[int]]:
        received: dict[int, list[int]] = {}
        for fragment in self.fragments:
            received.setdefault(fragment.step, []).extend(fragment.ids)
        return received


def text_by_step(fragments: list[Fragment]) -> dict[int, list[tuple[float, int, int]]]:
    """Per step: (arrival time, streamed characters so far, first event id) after each
    fragment with text."""
    progress: dict[int, list[tuple[float, int, int]]] = {}
    totals: dict[int, int] = {}
    for fragment in fragments:
        if fragment.text:
            totals[fragment.step] = total = totals.get(fragment.step, 0) + len(fragment.text)
            progress.setdefault(fragment.step, []).append((fragment.at, total, fragment.ids[0]))
    return progress


def stream_steps(run_id: Any) -> list[int]:
    """The run's step ids (blocking ORM; call from a thread or before the event loop)."""
    from runs.models import FlowStep

    return list(FlowStep.objects.filter(run_id=run_id).values_list("id", flat=True))
