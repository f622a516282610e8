"""A run's model servers as it used them: each one's slot cap and the slots it said it has.

The engine learns them (runs.engine.agent.servers) and stores them on the run
(`FlowRun.servers`); this module says them, so the CLI's and the pane's warning and the
report's Method section name the same servers in the same words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ADVICE_ONE = "set ORCHESTRATOR_SLOTS to the server's --parallel"
ADVICE_SEVERAL = (
    "unset ORCHESTRATOR_SLOTS so each server's own slots are its cap, or set it to at most {}"
)


@dataclass(frozen=True, kw_only=True)
class ServerSlots:
    """One model server of a run: the most requests sent to it at once, and its own count."""

    url: str
    cap: int
    has: int | None = None  # its /props total_slots; None: it did not say (down, or no /props)
    set: bool = False  # the cap is a person's setting (ORCHESTRATOR_SLOTS, a provider's slots)

    def as_json(self) -> dict[str, Any]:
        return {"url": self.url, "cap": self.cap, "has": self.has, "set": self.set}

    @classmethod
    def from_json(cls, value: Any) -> ServerSlots | None:
        """The stored form read back; None for anything else (a row written by hand)."""
        if not isinstance(value, dict):
            return None
        url, cap, has = value.get("url"), value.get("cap"), value.get("has")
        if not isinstance(url, str) or not isinstance(cap, int):
            return None
        return cls(
            url=url,
            cap=cap,
            has=has if isinstance(has, int) else None,
            set=bool(value.get("set")),
        )

    @property
    def name(self) -> str:
        """The server as the pane names it (host:port)."""
        return host_port(self.url) or self.url

    @property
    def over(self) -> bool:
        """More requests are sent than it serves at once: the rest wait in its own queue."""
        return self.has is not None and self.cap > self.has


def host_port(url: str) -> str:
    """An endpoint as the pane names it: its host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def read(stored: Iterable[Any]) -> list[ServerSlots]:
    return [server for item in stored if (server := ServerSlots.from_json(item))]


def merged(known: Sequence[ServerSlots], seen: Sequence[ServerSlots]) -> list[ServerSlots]:
    """`seen` (one engine's), keeping the count another engine learnt of a server that did
    not say it to this one."""
    had = {server.url: server.has for server in known}
    return [
        server
        if server.has is not None or had.get(server.url) is None
        # A count learnt elsewhere: kept, and the cap is the one this engine applies.
        else ServerSlots(url=server.url, cap=server.cap, has=had[server.url], set=server.set)
        for server in seen
    ]


def _slots(n: int) -> str:
    return f"{n} slot{'s' if n != 1 else ''}"


def slot_warning(servers: Sequence[ServerSlots]) -> str:
    """A sentence naming the servers whose cap is above their own slots, else ""."""
    over = [server for server in servers if server.over]
    if not over:
        return ""
    if len(servers) == 1:
        server = over[0]
        return (
            f"the slot cap is {server.cap} but {server.url} has {_slots(server.has or 0)}: "
            f"requests beyond {server.has} wait in the server's own queue, shown as waiting "
            f"for the first byte; {ADVICE_ONE}"
        )
    names = " and ".join(
        f"{server.name} has {_slots(server.has or 0)} but a cap of {server.cap}" for server in over
    )
    least = min(server.has or 0 for server in over)
    return (
        f"{names}: requests beyond a server's own slots wait in its queue, shown as waiting "
        f"for the first byte; {ADVICE_SEVERAL.format(least)}"
    )


def method_words(servers: Sequence[ServerSlots]) -> str:
    """The slots of the Method section: each server's cap and what it said it has, never a
    count no server said passed off as known."""
    if not servers:
        return ""
    if not any(server.has is not None or server.set for server in servers):
        default = sorted({server.cap for server in servers})
        which = "the server" if len(servers) == 1 else f"none of the {len(servers)} servers"
        return (
            f"slots not known: {which} said how many it has, so the provider's default "
            f"({' or '.join(map(str, default))} each) applied"
        )
    total = _slots(sum(server.cap for server in servers))
    if len(servers) == 1:
        note = _note(servers[0], "the server")
        return f"{total} ({note})" if note else total
    parts = []
    for server in servers:
        note = _note(server, "it")
        parts.append(f"{server.cap} at {server.name}" + (f" ({note})" if note else ""))
    return f"{total} on {len(servers)} servers: {', '.join(parts)}"


def _note(server: ServerSlots, subject: str) -> str:
    if server.has is None:
        source = "as set" if server.set else "the provider's default"
        return f"{source}; {subject} did not say how many it has"
    return f"{subject} has {server.has}" if server.has != server.cap else ""
