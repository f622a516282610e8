"""What an engine knows about the model servers it talks to: each run's endpoints and slots.

A run records its endpoints at launch; every worker resolves them with its own provider
settings. The first time an endpoint is used, its server is asked how many requests it
serves at once (llama.cpp's `/props` `total_slots`): that is the endpoint's slot cap when no
cap is set (ORCHESTRATOR_SLOTS, or the provider's `slots`), and a setting above it is warned
about in the log and, through the run's row, in the CLI and the pane (requests beyond the
server's slots would wait in its own queue, looking like a slow first byte).

An endpoint that goes away (refused, reset, silent) while its model has another is marked
down in the database (`model_endpoints`), so every worker's placement skips it at once; the
worker that saw it go probes its `/props` every PROBE_SECONDS and marks it up when it answers.
The mark lapses by itself after DOWN_SECONDS (should that worker die too): the next turn
placed there is then the probe, and a failure marks it down again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs import server_slots as slot_facts
from runs.engine.agent.backends.base import ServerProps
from runs.engine.agent.backends.openai import probe_props
from runs.engine.agent.modelconfig import ModelTarget, resolve_model
from runs.engine.dbthread import db_async
from runs.engine.storable import clean_text
from runs.models import FlowRun, ModelEndpoint
from runs.server_slots import ServerSlots

log = logging.getLogger(__name__)
REPROBE_SECONDS = 60.0  # a server that did not say (down, loading a model) is asked again
DOWN_SECONDS = 60.0  # an endpoint marked down is skipped this long unless a probe sees it back
PROBE_SECONDS = 2.0  # how often the worker that saw an endpoint go asks its /props again
NOTED_RUNS = 10_000  # runs whose slot facts this engine wrote, remembered so it writes once


class ServerDirectory:
    """Targets by (model id, run endpoint), with the slot count their server reports."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], ModelTarget] = {}
        self._props: dict[tuple[str, str], tuple[ServerProps | None, float]] = {}
        self._slots: dict[tuple[str, str], dict[str, int]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._warned: set[tuple[str, str]] = set()
        self._noted: OrderedDict[UUID, tuple[int, int | None, tuple[ServerSlots, ...]]] = (
            OrderedDict()
        )
        self._watching: dict[str, asyncio.Task[None]] = {}

    async def target(self, model_id: str, endpoint_url: str = "") -> ModelTarget:
        key = (model_id, endpoint_url)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one resolution and one probe at a time per endpoint
            model = self._targets.get(key)
            if model is None:
                # Off the event loop: selecting the demo model may start its server.
                model = await asyncio.to_thread(resolve_model, model_id, base_url=endpoint_url)
            model = await self._with_server_slots(model)
            self._targets[key] = model
        # A run without recorded endpoints (the demo model each worker starts itself, older
        # runs) uses each worker's own server: one line for them all, as one endpoint "".
        self._slots[key] = model.caps() if endpoint_url else {"": model.slots}
        return model

    def slots(self, model_id: str, endpoint_url: str = "") -> dict[str, int]:
        """Each endpoint's slot cap, once `target` has resolved the model (else none)."""
        return self._slots.get((model_id, endpoint_url), {})

    async def _with_server_slots(self, model: ModelTarget) -> ModelTarget:
        urls = model.endpoints or (model.endpoint.base_url,)
        found = await asyncio.gather(*(self._server_props(model.at(url)) for url in urls))
        servers = []
        for url, props in zip(urls, found, strict=True):
            has = None if props is None else props.total_slots
            cap = model.slots_setting or has or model.slots
            servers.append(ServerSlots(url=url, cap=cap, has=has, set=bool(model.slots_setting)))
            if props is not None and model.slots_setting > props.total_slots:
                self._warn_above(model, url, props)
        known = [server.has for server in servers if server.has is not None]
        if not known:
            return dataclasses.replace(model, servers=tuple(servers))
        return dataclasses.replace(
            model,
            servers=tuple(servers),
            slots=sum(server.cap for server in servers),
            server_slots=sum(known) if len(known) == len(urls) else None,
        )

    def _warn_above(self, model: ModelTarget, url: str, props: ServerProps) -> None:
        warned = (model.model_id, url)
        if warned in self._warned:
            return
        self._warned.add(warned)
        setting = (
            "ORCHESTRATOR_SLOTS"
            if settings.ORCHESTRATOR_SLOTS
            else f"ORCHESTRATOR_PROVIDERS[{model.provider!r}] slots"
        )
        log.warning(
            "%s is %d but the model server at %s has %d slot(s) "
            "(%s): requests beyond that wait in the server's own queue",
            setting,
            model.slots_setting,
            url,
            props.total_slots,
            props.source,
        )

    async def endpoint_lost(self, model: ModelTarget, url: str, reason: str) -> None:
        """`url` went away: every worker's placement skips it until a probe sees it back."""
        log.warning("model server %s went away (%s): routing around it", url, reason)
        await db_async(mark_down)(url, reason)
        if url not in self._watching or self._watching[url].done():
            self._watching[url] = asyncio.create_task(self._watch(model.at(url)))

    async def _watch(self, model: ModelTarget) -> None:
        """Ask the lost server's /props until it answers, then mark it up again."""
        url = model.endpoint.base_url
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            if await probe_props(url, model.name) is not None:
                log.info("model server %s is back", url)
                await db_async(mark_up)(url)
                return

    async def aclose(self) -> None:
        tasks, self._watching = list(self._watching.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _server_props(self, model: ModelTarget) -> ServerProps | None:
        key = (model.endpoint.base_url, model.name)
        known = self._props.get(key)
        now = time.monotonic()
        if known is not None and (known[0] is not None or now - known[1] < REPROBE_SECONDS):
            return known[0]
        props = await probe_props(model.endpoint.base_url, model.name)
        self._props[key] = (props, now)
        if props is not None:
            log.info(
                "model server %s has %d slot(s) (%s)",
                model.endpoint.base_url,
                props.total_slots,
                props.source,
            )
        return props

    async def note_run(self, run_id: UUID, model: ModelTarget) -> None:
        """Record on the run the slot cap applied and the server's own count, in sum and
        for each server (once per run and engine, and again should they change), for the
        CLI, the pane and the report to show."""
        facts = (model.slots, model.server_slots, model.servers)
        if self._noted.get(run_id) == facts:
            return
        await db_async(record_slots)(run_id, model.slots, model.server_slots, model.servers)
        self._noted[run_id] = facts
        while len(self._noted) > NOTED_RUNS:
            self._noted.popitem(last=False)


def record_slots(
    run_id: UUID, slots: int, server_slots: int | None, servers: Sequence[ServerSlots] = ()
) -> None:
    with transaction.atomic():
        run = FlowRun.objects.select_for_update().filter(id=run_id).first()
        if run is None:
            return
        # What another engine learnt of a server that did not answer this one is kept.
        each = slot_facts.merged(slot_facts.read(run.servers or []), servers)
        run.servers = [server.as_json() for server in each]
        run.slots = slots
        if server_slots is not None:
            run.server_slots = server_slots
        elif each and all(server.has is not None for server in each):
            run.server_slots = sum(server.has or 0 for server in each)
        run.save(update_fields=["servers", "slots", "server_slots"])


def mark_down(url: str, reason: str) -> None:
    until = timezone.now() + timedelta(seconds=DOWN_SECONDS)
    # One statement (INSERT ... ON CONFLICT UPDATE): two workers losing it at once both win.
    ModelEndpoint.objects.bulk_create(
        [ModelEndpoint(url=url[:500], down_until=until, reason=clean_text(reason)[:300])],
        update_conflicts=True,
        unique_fields=["url"],
        update_fields=["down_until", "reason"],
    )


def mark_up(url: str) -> None:
    ModelEndpoint.objects.filter(url=url[:500]).update(down_until=None, reason="")


def down_endpoints(urls: list[str]) -> set[str]:
    """The endpoints among `urls` no turn goes to now."""
    now = timezone.now()
    return set(
        ModelEndpoint.objects.filter(url__in=urls, down_until__gt=now).values_list("url", flat=True)
    )


def gone_endpoints(urls: list[str]) -> set[str]:
    """The endpoints among `urls` that went away and no probe has seen back since: marked
    down, whether or not the mark has lapsed (a lapsed mark is only a chance to try)."""
    went = ModelEndpoint.objects.filter(url__in=urls, down_until__isnull=False)
    return set(went.values_list("url", flat=True))
