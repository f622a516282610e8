"""What one model message and one step attempt may cost, whatever the model sends.

A message asking for more tool calls than the cap gets the rest answered "not run" (one event
says so); an attempt storing more events than the cap fails with that reason. Both come from
settings (ORCHESTRATOR_MAX_TOOL_CALLS_PER_MESSAGE, ORCHESTRATOR_MAX_EVENTS_PER_STEP).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


class CapExceeded(Exception):
    """A step attempt went past a cap; the message is what the person reads."""


@dataclass(frozen=True, kw_only=True)
class AgentLimits:
    tool_calls_per_message: int
    events_per_step: int

    @classmethod
    def from_settings(cls) -> AgentLimits:
        return cls(
            tool_calls_per_message=settings.ORCHESTRATOR_MAX_TOOL_CALLS_PER_MESSAGE,
            events_per_step=settings.ORCHESTRATOR_MAX_EVENTS_PER_STEP,
        )

    def check_events(self, count: int) -> None:
        """Raise CapExceeded once an attempt has stored more events than allowed."""
        if count > self.events_per_step:
            raise CapExceeded(
                f"the agent produced more than {self.events_per_step} events in this attempt "
                "(ORCHESTRATOR_MAX_EVENTS_PER_STEP); stopped"
            )
