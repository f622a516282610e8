"""The channel layer: Redis when web and workers are separate processes, else in memory."""

from __future__ import annotations

from typing import Any

# channels_redis waits for a process's messages with a blocking pop of 5 s. redis-py 8 gives
# every socket read a 5 s timeout by default, so on a quiet socket the read could time out
# just before the pop returned: the receive raised, the consumer died and the messages
# already buffered for it were dropped (the soak bench saw panes lose events). A read may
# take as long as the pop and then some; a Redis that is really gone is still noticed.
REDIS_SOCKET_TIMEOUT_SECONDS = 30.0


def channel_layers(redis_url: str) -> dict[str, Any]:
    if not redis_url:
        # In-process layer: web and worker must share one process (`make run` does that).
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    host = {"address": redis_url, "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS}
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [host], "capacity": 5000, "expiry": 30},
        }
    }
