"""What the pane may send on its socket, read strictly: a message or the sentence why not.

Everything here comes from a browser, so from anyone: frames of any size and kind, text that
is not JSON or is JSON only Python accepts (NaN, Infinity), numbers of any size, any nesting.
Reading never raises; a bad message becomes `Refused`, which the consumer answers with an
error frame while the socket stays open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_CHARS = 64 * 1024  # a resume of every agent of the largest run is well under 8 KB
# Ids in one resume: the largest roster has 8 agents (fabricated benchmark runs 20); every id
# costs a look-up, so a message may not carry more than a pane could ever have expanded.
MAX_RESUMED_STEPS = 64
MAX_ID = 2**63 - 1  # ids are PostgreSQL bigints


@dataclass(frozen=True)
class Subscribe:
    step: int
    after: int  # the last event id the browser holds for this agent (0: none)


@dataclass(frozen=True)
class Unsubscribe:
    step: int


@dataclass(frozen=True)
class Resume:
    have: dict[int, int]  # expanded agent -> the last event id the browser holds


@dataclass(frozen=True)
class Refresh:
    """A live timeline reached the end of its axis and asks for a redraw."""


@dataclass(frozen=True)
class Refused:
    reason: str  # a sentence for the person (never echoes what was sent)


Message = Subscribe | Unsubscribe | Resume | Refresh | Refused


def read_message(text_data: str | None, bytes_data: bytes | None) -> Message:
    """The message in one frame, or why it cannot be one."""
    if text_data is None:
        return Refused("a binary frame was ignored: the pane speaks JSON text")
    if len(text_data) > MAX_MESSAGE_CHARS:
        return Refused(f"a message over {MAX_MESSAGE_CHARS} characters was ignored")
    try:
        message = json.loads(text_data, parse_constant=_no_constant)
    except RecursionError:
        return Refused("a message nested too deeply was ignored")
    except ValueError:  # not JSON, NaN/Infinity, or an integer of thousands of digits
        return Refused("a message that is not JSON was ignored")
    if not isinstance(message, dict):
        return Refused("a message that is not a JSON object was ignored")
    return _read_object(message)


def _read_object(message: dict[str, Any]) -> Message:
    kind = message.get("type")
    if kind == "subscribe":
        step, after = _id(message.get("step")), _id(message.get("after") or 0, minimum=0)
        if step is None or after is None:
            return Refused("subscribe needs a step id and the last event id held (0 for none)")
        return Subscribe(step=step, after=after)
    if kind == "unsubscribe":
        step = _id(message.get("step"))
        if step is None:
            return Refused("unsubscribe needs a step id")
        return Unsubscribe(step=step)
    if kind == "resume":
        return _read_resume(message.get("have"))
    if kind == "refresh":
        return Refresh()
    return Refused("an unknown message type was ignored (subscribe, unsubscribe, resume, refresh)")


def _read_resume(have: Any) -> Message:
    if not isinstance(have, dict) or len(have) > MAX_RESUMED_STEPS:
        return Refused(f"resume needs an object of at most {MAX_RESUMED_STEPS} step ids")
    read: dict[int, int] = {}
    for raw_step, raw_after in have.items():
        step, after = _id(raw_step), _id(raw_after, minimum=0)
        if step is None or after is None:
            return Refused("resume maps step ids to the last event id held (0 for none)")
        read[step] = after
    return Resume(have=read)


def _id(value: Any, *, minimum: int = 1) -> int | None:
    """A database id: a JSON integer, or its decimal digits (object keys are strings)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if minimum <= value <= MAX_ID else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
