"""Proof of read-only: the target's fingerprint when a run starts and when its report is written.

The first attempt of a run records the "before" fingerprint (runs.engine.target.fingerprint: taken
without running anything from the target); the report compares it with the target as it is
then and says in Method whether the target was unchanged, or what changed. The per-path
entries stay with the run (bounded by MAX_ENTRIES): a retry's report compares against the
snapshot of the run's first attempt too, and without them every file would look new.
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from runs.engine.storable import storable
from runs.engine.target.fingerprint import Fingerprint, describe, take
from runs.models import FlowRun

# Bounds for a run's fingerprint: it is stored on the run for every report it gets.
MAX_ENTRIES = 50_000
TIME_LIMIT = 10.0


def needs_before(run_id: UUID) -> bool:
    return FlowRun.objects.filter(id=run_id, fingerprint={}).exists()


def take_fingerprint(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The target's fingerprint as storable JSON (names from the target are hostile text)."""
    data: dict[str, Any] = storable(
        take(root, max_entries=MAX_ENTRIES, time_limit=TIME_LIMIT).to_dict()
    )
    return data


def save_before(run_id: UUID, data: dict[str, Any]) -> None:
    """The first attempt's fingerprint wins; a later one never replaces it."""
    FlowRun.objects.filter(id=run_id, fingerprint={}).update(fingerprint=data)


def target_state(run: FlowRun, root: str | os.PathLike[str]) -> str:
    """The Method line: unchanged during the run, or what changed ("" when never recorded)."""
    if not run.fingerprint.get("digest") and not run.fingerprint.get("entries"):
        return ""
    before = Fingerprint.from_dict(run.fingerprint)
    after = Fingerprint.from_dict(take_fingerprint(root))
    return describe(before, after)
