"""What llama-server reuses for one architecture, request by request (bench/prefill.py --probe).

Two agents' first turns share a long prefix and differ after it. Where they differ decides what
a server that cannot trim its state (recurrent / sliding-window layers) can reuse:

- `inside the system message`: the orchestrator's layout (the role follows the shared contracts
  in the same system message);
- `at a user message`: the shared text is the whole system message and the role opens the user
  message, where llama.cpp places a context checkpoint;
- `pinned to an idle slot`: the second agent's request carries `id_slot` of the other, empty
  slot (two-slot servers only), against the same request unpinned.

Each line prints the second request's prompt tokens, how many came from the cache, and the share.
"""

from __future__ import annotations

from typing import Any

import httpx

SHARED = "\n".join(
    f"Contract {n}: cite every finding as `path:line` and quote the line; never invent a path; "
    f"report what the tools returned, not what you expect them to return."
    for n in range(60)
)
USER = "Target: shop\nFocus: everything\nExamine the target through your lens."


def turn(client: httpx.Client, root: str, messages: list[dict[str, Any]], **extra: Any) -> Any:
    body = {"messages": messages, "max_tokens": 4, "temperature": 0.0, **extra}
    response = client.post(f"{root}/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["timings"]


def system_layout(role: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": f"{SHARED}\n\n## Your part\nAgent role: {role}"},
        {"role": "user", "content": USER},
    ]


def user_layout(role: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": SHARED},
        {"role": "user", "content": f"## Your part\nAgent role: {role}\n\n{USER}"},
    ]


def probe(root: str, slots: int) -> list[str]:
    lines = []
    with httpx.Client(timeout=600) as client:
        for name, layout in (
            ("inside the system message", system_layout),
            ("at a user message", user_layout),
        ):
            turn(client, root, layout(f"first-{name}"))
            t = turn(client, root, layout(f"second-{name}"))
            lines.append(share(f"second agent, divergence {name}", t))
        if slots >= 2:
            turn(client, root, user_layout("pin-a"), id_slot=0)
            t = turn(client, root, user_layout("pin-b"), id_slot=1)
            lines.append(share("second agent pinned to the idle slot (id_slot)", t))
            turn(client, root, user_layout("free-a"), id_slot=0)
            t = turn(client, root, user_layout("free-b"))
            lines.append(share("second agent unpinned (the server picks by similarity)", t))
    return lines


def share(label: str, timings: dict[str, Any]) -> str:
    cached, evaluated = int(timings.get("cache_n", 0)), int(timings.get("prompt_n", 0))
    total = cached + evaluated
    return f"  {label}: {total} prompt tokens, {cached} from the cache ({cached / total:.0%})"
