"""The pane's WebSocket: a snapshot from the database, then live OOB fragments.

Collapsed agents get status only; an expanded agent is subscribed with the last event id the
browser holds, the missing events are replayed from the database, and live events at or
below what was already sent are dropped: nothing missed, nothing doubled across reconnects.

The channel layer may lose a live message (channels_redis drops one now and then when a
viewer of the same process disconnects mid-receive, or a queue overflows), so the stream
heals itself: each event carries its attempt's session and seq, a live batch that does not
follow the last event sent brings the missing ones from the database first, and a step's
status change (which comes after its last events) catches its expanded stream up too.

What the browser sends is read strictly (runs.socket_messages): a message that cannot be
read gets an error frame (the pane's notice line) and the socket stays open. What a socket
may cost is bounded (runs.socket_limits): a socket over its message rate, or one more than
its user may hold, gets the sentence why as its last frame and is closed. Step ids are checked
against the run's roster, read once on connect (a run's steps are all created at launch), so
ids that are not the run's cost no database round trip.

A consumer handles its messages one at a time, so status redraws (which read the database)
run in a task of their own: the stream fragments queued behind them are not held up, and a
burst of status changes becomes one redraw. A socket redraws at most once per
REDRAW_SECONDS: the first change after a quiet spell is drawn at once, the ones that follow
within the window wait for its end and are drawn together. A redraw reads the run (three
queries) and renders the header's parts, the timeline and the changed rows, a few ms of CPU
with the GIL held on a thread the engine's event loop shares; with many agents changing
state (64 streaming agents start, each "waiting for the first byte", then "generating") a
pane used to redraw back to back and take that time from the streams. Rows and stream
appends target different elements, so their relative order does not matter; redraws stay in
order among themselves and each reads the state as it is when it runs, so the last one shows
the latest state.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from runs import live
from runs.engine.agent.events import run_group
from runs.engine.dbthread import shared_thread_db_async
from runs.models import TERMINAL_STEP, FlowRun, FlowStep
from runs.permissions import can_see
from runs.socket_limits import (
    CLOSE_TOO_FAST,
    CLOSE_TOO_MANY_SOCKETS,
    OPEN_SOCKETS,
    TokenBucket,
)
from runs.socket_messages import Refresh, Refused, Subscribe, Unsubscribe, read_message
from runs.targets import TargetRefused, check_run

log = logging.getLogger(__name__)
CLOSE_FORBIDDEN = 4403
REFRESH_SECONDS = 1.0
REDRAW_SECONDS = 0.1  # a socket's status redraws: at most one per window


@dataclass(frozen=True, kw_only=True)
class Redraw:
    """Parts of the pane to swap: all of them (`whole`), or a live update's."""

    parts: list[tuple[str, str]]  # (element id, OOB fragment)
    whole: bool


class RunConsumer(AsyncWebsocketConsumer):
    run_id: UUID
    group: str
    redrawing: asyncio.Task[None] | None = None
    holder: int | None = None  # the user whose socket count this socket holds
    closing = False  # closed by the server: what the browser had queued is dropped unread

    async def connect(self) -> None:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.sent: dict[int, int] = {}  # expanded step id -> last event id sent
        # expanded step id -> (session, seq) of the last event sent, when known
        self.position: dict[int, tuple[int, int]] = {}
        self.dirty: set[int] = set()  # steps whose row needs a redraw
        self.redraw_all = False  # the whole run needs a redraw (cancel, retry)
        self.refresh = False  # the header and timeline need a redraw (the axis ran out)
        self.refreshed_at = -REFRESH_SECONDS
        self.redrawn_at = -REDRAW_SECONDS  # loop time the last redraw started
        # The markup of each part of the pane last sent (element id -> html): a live update
        # sends only what changed, so an unchanged part (the Cancel button a person has
        # focused, a row's badge) is never swapped under them.
        self.shown: dict[str, str] = {}
        self.bucket = TokenBucket()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Counted before the database is asked anything, so a reconnect loop costs nothing.
        refusal = OPEN_SOCKETS.take(user.pk, settings.ORCHESTRATOR_MAX_SOCKETS_PER_USER)
        if refusal:
            await self.accept()  # accepted only so that the sentence can be sent
            await self._close_with(CLOSE_TOO_MANY_SOCKETS, refusal)
            return
        self.holder = user.pk
        roster = await database_sync_to_async(_roster)(user, self.run_id)
        if roster is None:
            OPEN_SOCKETS.give_back(user.pk)
            self.holder = None
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.steps = roster
        await self.accept()
        self.group = run_group(self.run_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send(
            text_data=self._changed(await database_sync_to_async(_snapshot)(self.run_id))
        )

    async def disconnect(self, code: int) -> None:
        """Everything this socket holds is let go: its group, its redraw, its count."""
        self.closing = True
        if self.redrawing is not None:
            self.redrawing.cancel()
            self.redrawing = None
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.holder is not None:
            OPEN_SOCKETS.give_back(self.holder)
            self.holder = None
        for held in ("sent", "position", "dirty"):
            getattr(self, held, {}).clear()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A bad message gets an error frame and the socket stays open, whatever it was; a
        socket over its rate is closed before its message is read."""
        if self.closing:
            return
        if not self.bucket.take():
            await self._close_with(
                CLOSE_TOO_FAST,
                "this pane's connection was closed: it sent more messages than a pane does "
                "(reload the page to reconnect)",
            )
            return
        message = read_message(text_data, bytes_data)
        try:
            if isinstance(message, Refused):
                await self._refuse(message.reason)
            elif isinstance(message, Subscribe):
                await self._subscribe({message.step: message.after})
            elif isinstance(message, Unsubscribe):
                self.sent.pop(message.step, None)
                self.position.pop(message.step, None)
            elif isinstance(message, Refresh):  # a live timeline reached the end of its axis
                # At most one a second: a browser asking in a loop costs one redraw a second.
                now = asyncio.get_running_loop().time()
                if now - self.refreshed_at >= REFRESH_SECONDS:
                    self.refreshed_at = now
                    self.refresh = True
                    self._schedule_redraw()
            else:
                await self._subscribe(message.have)
        except Exception:
            log.warning("run %s: could not handle a pane message", self.run_id, exc_info=True)
            await self._refuse("the server could not handle that message; it was ignored")

    async def _close_with(self, code: int, reason: str) -> None:
        """Daphne drops a close frame's reason text, so the sentence is the last frame."""
        self.closing = True
        await self._refuse(reason)
        await self.close(code=code)

    async def _refuse(self, reason: str) -> None:
        await self.send(text_data=live.render_socket_error(reason))

    async def _subscribe(self, have: dict[int, int]) -> None:
        """Replay each of the run's steps after the event id the browser holds, all read in
        one trip to the database; ids that are not the run's get one sentence."""
        known = {step: after for step, after in have.items() if step in self.steps}
        unknown = sorted(set(have) - set(known))
        if unknown:
            if len(unknown) == 1:
                await self._refuse(f"step {unknown[0]} is not an agent of this run")
            else:
                await self._refuse(f"{len(unknown)} steps are not agents of this run")
        if not known:
            return
        events = await database_sync_to_async(_events_for)(self.run_id, known)
        for step_id, after_id in known.items():
            self.sent[step_id] = after_id
            self.position.pop(step_id, None)
            await self._send_fresh(step_id, events[step_id])

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections before every handler, on the one thread that
        # all consumers' database calls share. The run.* handlers touch no database (redraws
        # go through database_sync_to_async, which closes old connections itself), and
        # queueing each stream batch behind other panes' queries held tokens up for hundreds
        # of ms under load.
        if str(message.get("type", "")).startswith("run."):
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def run_events(self, message: dict[str, Any]) -> None:
        step_id = message["step_id"]
        if step_id not in self.sent:
            return  # collapsed: status only
        fresh = [e for e in message["events"] if e["id"] > self.sent[step_id]]
        if fresh and not self._follows(step_id, fresh[0]):
            # A live message went missing: send what the database has instead, which
            # includes this message's events (they were committed before being announced).
            await self._catch_up(step_id)
        else:
            await self._send_fresh(step_id, fresh)

    def _follows(self, step_id: int, event: dict[str, Any]) -> bool:
        """Is `event` the next one of the step's stream after the last one sent?"""
        if "session" not in event:
            return True  # nothing to compare with
        last = self.position.get(step_id)
        if last is None:
            # Subscribed when the step had no events yet (or none after the browser's last):
            # a live batch lost between that read and this one would go unseen, so the first
            # batch is checked against the database once.
            return False
        session, seq = last
        return event["seq"] == (seq + 1 if event["session"] == session else 1)

    async def _catch_up(self, step_id: int) -> None:
        if step_id not in self.sent:
            return  # collapsed meanwhile
        events = await database_sync_to_async(live.stored_events)(step_id, self.sent[step_id])
        await self._send_fresh(step_id, events)

    async def _send_fresh(self, step_id: int, events: list[dict[str, Any]]) -> None:
        """Send the events not sent yet. Filtered after every await: a live batch and a
        catch-up may overlap, and each event must reach the browser once."""
        if step_id not in self.sent:
            return  # collapsed meanwhile
        fresh = [e for e in events if e["id"] > self.sent[step_id]]
        if not fresh:
            return
        self.sent[step_id] = fresh[-1]["id"]
        if "session" in fresh[-1]:
            self.position[step_id] = (fresh[-1]["session"], fresh[-1]["seq"])
        await self.send(text_data=live.render_events(step_id, fresh))

    async def run_changed(self, message: dict[str, Any]) -> None:
        self.redraw_all = True
        self._schedule_redraw()

    async def run_step(self, message: dict[str, Any]) -> None:
        self.dirty.add(message["step_id"])
        self._schedule_redraw()

    def _schedule_redraw(self) -> None:
        if self.redrawing is None or self.redrawing.done():
            self.redrawing = asyncio.create_task(self._redraw())

    async def _redraw(self) -> None:
        """Until nothing is left to redraw: the whole run, or the header, the timeline and
        the dirty rows. At most one per REDRAW_SECONDS: what changes meanwhile joins the next."""
        loop = asyncio.get_running_loop()
        while self.redraw_all or self.dirty or self.refresh:
            wait = self.redrawn_at + REDRAW_SECONDS - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.redrawn_at = loop.time()
            everything, steps = self.redraw_all, self.dirty
            self.redraw_all, self.dirty, self.refresh = False, set(), False
            # A step's outcome is recorded with its last events and announced after them, so
            # this is where the end of a stream lost on the way is noticed (a loss mid-stream
            # shows as a seq gap in the next batch): the finished expanded steps among the
            # redrawn rows catch up, read in the same trip to the database as the rows.
            watched = (
                dict(self.sent) if everything else {s: self.sent[s] for s in steps & set(self.sent)}
            )
            try:
                parts, missed = await shared_thread_db_async(_redraw)(
                    self.run_id, None if everything else steps, watched
                )
                html = self._changed(parts)
                if html:
                    await self.send(text_data=html)
                for step_id, events in missed.items():
                    await self._send_fresh(step_id, events)
            except Exception:  # a viewer missing a redraw must not lose its stream too
                log.warning("could not redraw run %s", self.run_id, exc_info=True)

    def _changed(self, parts: Redraw) -> str:
        """A whole redraw's every part; of a live update, the parts whose markup differs from
        what this socket last sent."""
        if parts.whole:
            self.shown = dict(parts.parts)
            return "".join(html for _, html in parts.parts)
        fresh = [(key, part) for key, part in parts.parts if self.shown.get(key) != part]
        self.shown.update(fresh)
        return "".join(part for _, part in fresh)


def _redraw(
    run_id: UUID, step_ids: set[int] | None, watched: dict[int, int]
) -> tuple[Redraw, dict[int, list[dict[str, Any]]]]:
    """The run's redraw (everything when `step_ids` is None, as one string; else its parts)
    and, per finished watched step, the events stored after the last one sent."""
    html = _snapshot(run_id) if step_ids is None else _step_update(run_id, step_ids)
    finished = FlowStep.objects.filter(id__in=watched, status__in=TERMINAL_STEP)
    missed = {
        step_id: live.stored_events(step_id, watched[step_id])
        for step_id in finished.values_list("id", flat=True)
    }
    return html, {step_id: events for step_id, events in missed.items() if events}


def _roster(user: Any, run_id: UUID) -> frozenset[int] | None:
    """The run's step ids, or None when the user may not see the run."""
    run = FlowRun.objects.filter(id=run_id).first()
    if run is None or not can_see(user, run):
        return None
    try:
        check_run(user, run)  # its directory taken back: the pane is refused, like its exports
    except TargetRefused:
        return None
    return frozenset(run.steps.values_list("id", flat=True))


def _snapshot(run_id: UUID) -> Redraw:
    return Redraw(parts=live.snapshot_parts(FlowRun.objects.get(id=run_id)), whole=True)


def _step_update(run_id: UUID, step_ids: set[int]) -> Redraw:
    """The changed rows' parts, the header's and the timeline; every row once the run ends."""
    return Redraw(parts=live.update_parts(FlowRun.objects.get(id=run_id), step_ids), whole=False)


def _events_for(run_id: UUID, have: dict[int, int]) -> dict[int, list[dict[str, Any]]]:
    """Per step of the run, the events stored after the id given."""
    return {step_id: live.stored_events(step_id, after_id) for step_id, after_id in have.items()}
