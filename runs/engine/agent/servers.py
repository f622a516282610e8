"""What an engine knows about the model servers it talks to: each run's endpoint and slots.

A run records its endpoint at launch; every worker resolves that endpoint with its own
provider settings. The first time an endpoint is used, the server is asked how many requests
it serves at once (llama.cpp's `/props` `total_slots`): that is the slot cap when
ORCHESTRATOR_SLOTS is not set, and a setting above it is warned about in the log and, through
the run's row, in the CLI and the pane (requests beyond the server's slots would wait in its
own queue, looking like a slow first byte).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import OrderedDict
from uuid import UUID

from runs.engine.agent.backends.base import ServerProps
from runs.engine.agent.backends.openai import probe_props
from runs.engine.agent.modelconfig import ModelTarget, resolve_model
from runs.engine.dbthread import db_async
from runs.models import FlowRun

log = logging.getLogger(__name__)
REPROBE_SECONDS = 60.0  # a server that did not say (down, loading a model) is asked again
NOTED_RUNS = 10_000  # runs whose slot facts this engine wrote, remembered so it writes once


class ServerDirectory:
    """Targets by (model id, run endpoint), with the slot count their server reports."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, str], ModelTarget] = {}
        self._props: dict[tuple[str, str], tuple[ServerProps | None, float]] = {}
        self._slots: dict[str, int] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._warned: set[tuple[str, str]] = set()
        self._noted: OrderedDict[UUID, tuple[int, int | None]] = OrderedDict()

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
        self._slots[model_id] = model.slots
        return model

    def slots(self, model_id: str) -> int:
        """The model's slot count, once `target` has resolved it (else 0)."""
        return self._slots.get(model_id, 0)

    async def _with_server_slots(self, model: ModelTarget) -> ModelTarget:
        props = await self._server_props(model)
        if props is None:
            return model
        slots = model.slots_setting or props.total_slots
        if model.slots_setting > props.total_slots:
            warned = (model.model_id, model.endpoint.base_url)
            if warned not in self._warned:
                self._warned.add(warned)
                log.warning(
                    "ORCHESTRATOR_SLOTS is %d but the model server at %s has %d slot(s) "
                    "(%s): requests beyond that wait in the server's own queue",
                    model.slots_setting,
                    model.endpoint.base_url,
                    props.total_slots,
                    props.source,
                )
        return dataclasses.replace(model, slots=slots, server_slots=props.total_slots)

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
        """Record on the run the slot cap applied and the server's own count (once per run
        and engine, and again should they change), for the CLI and the pane to show."""
        facts = (model.slots, model.server_slots)
        if self._noted.get(run_id) == facts:
            return
        await db_async(record_slots)(run_id, *facts)
        self._noted[run_id] = facts
        while len(self._noted) > NOTED_RUNS:
            self._noted.popitem(last=False)


def record_slots(run_id: UUID, slots: int, server_slots: int | None) -> None:
    run = FlowRun.objects.filter(id=run_id)
    if server_slots is None:  # not known here: keep what another engine may have learnt
        run.update(slots=slots)
    else:
        run.update(slots=slots, server_slots=server_slots)
