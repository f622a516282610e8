"""The one function that resets a step's row: what each moment of an attempt's life clears.

A step is claimed (LEASE), given back unfinished (RELEASE), finished (FINISH), stopped with
its run (CANCEL) or made pending again to start afresh (RETRY). Each moment clears the slot,
the phase and the lease its own way; writing them out at every caller let them drift apart
(a retry left `truncated` set and the attempt count running). Callers add the outcome.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db.models import F

from runs.engine.agent.counters import Counters
from runs.models import StepPhase, StepStatus


class Reset(StrEnum):
    LEASE = "lease"  # claimed as the next attempt (resumed from its checkpoint if any)
    RELEASE = "release"  # given back unfinished: any worker may claim it now
    FINISH = "finish"  # its outcome is recorded
    CANCEL = "cancel"  # stopped because its run was cancelled
    RETRY = "retry"  # pending again; its next attempt starts fresh from the upstream outputs


def lease_delta() -> timedelta:
    return timedelta(seconds=settings.ORCHESTRATOR_LEASE_SECONDS)


def reset_step(
    how: Reset, now: datetime, *, holds_slot: bool = False, **outcome: Any
) -> dict[str, Any]:
    """The columns `how` writes, as an UPDATE (or setattr) takes them; `outcome` adds the
    caller's own (status, output, attempt...). `holds_slot`: for CANCEL, the step's request is
    still open, so it keeps its slot and the lease that makes the slot count until its agent
    closes the request."""
    fields: dict[str, Any] = {
        "wants_slot": False,
        "phase": StepPhase.NONE,
        "phase_note": "",
        "phase_until": None,
    }
    if not (how is Reset.CANCEL and holds_slot):
        fields["holds_slot"] = False
    match how:
        case Reset.LEASE:
            fields |= {
                "status": StepStatus.QUEUED,
                "lease_expires_at": now + lease_delta(),
                # Its place in the model's queue for the whole attempt: a step that has started
                # keeps priority over steps claimed after it each time it asks for a slot again.
                "queued_at": now,
                "started_at": None,  # this attempt's, set by its first turn
                "first_token_at": None,
                "error": "",
            }
        case Reset.RELEASE:
            fields["lease_expires_at"] = now
        case Reset.FINISH:
            fields |= {"finished_at": now, "lease_expires_at": None}
        case Reset.CANCEL:
            fields |= {"status": StepStatus.CANCELLED, "finished_at": now}
            if not holds_slot:
                fields["lease_expires_at"] = None
        case Reset.RETRY:
            fields |= {
                "status": StepStatus.PENDING,
                "output": "",
                "error": "",
                "truncated": False,
                "finished_at": None,
                "started_at": None,
                "first_token_at": None,
                "lease_owner": "",
                "lease_expires_at": None,
                # The attempt cap counts from here, and no earlier session is resumed.
                "attempt_base": F("attempt"),
                **Counters().step_fields(),
            }
            # What every attempt spent stays spent: only the kept counters start again.
            for name in ("tokens_spent_in", "tokens_spent_out"):
                fields.pop(name)
    return fields | outcome


def lease_fields() -> list[str]:
    """The columns a claim writes, for a bulk_update of the claimed steps."""
    return ["attempt", "lease_owner", *reset_step(Reset.LEASE, datetime.min)]


def apply(step: Any, fields: dict[str, Any]) -> None:
    """Set reset columns on a loaded row (the caller saves them)."""
    for name, value in fields.items():
        setattr(step, name, value)
