"""The Redis channel layer, as web and worker processes use it, against a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from channels_redis.core import RedisChannelLayer

from orchestrator_site.channel_layers import channel_layers

QUIET_SECONDS = 6.5  # longer than channels_redis's 5 s blocking pop and redis-py 8's read timeout


@pytest.fixture
def redis_layer(redis_url: str | None) -> RedisChannelLayer:
    """The Redis channel layer; this file is about Redis, so without one it is skipped."""
    url = redis_url
    if url is None:
        pytest.skip("Redis missing: no Redis on 127.0.0.1:6379 and TEST_REDIS_URL unset")
    config = channel_layers(url)["default"]
    assert config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    return RedisChannelLayer(**config["CONFIG"])


def test_a_quiet_pane_still_gets_the_next_event(redis_layer):
    """A socket with nothing to receive for longer than the blocking pop keeps receiving.

    With redis-py 8's default 5 s socket timeout the receive raised TimeoutError instead,
    which tore the consumer down and dropped the events buffered for it.
    """
    asyncio.run(_quiet_then_one_event(redis_layer))


async def _quiet_then_one_event(layer: RedisChannelLayer) -> None:
    channel = await layer.new_channel()
    await layer.group_add("test-quiet-pane", channel)
    try:

        async def publish_later() -> None:
            await asyncio.sleep(QUIET_SECONDS)
            await layer.group_send("test-quiet-pane", {"type": "run.events", "n": 1})

        started = time.monotonic()
        sender = asyncio.create_task(publish_later())
        message = await asyncio.wait_for(layer.receive(channel), QUIET_SECONDS + 10)
        await sender
        waited = time.monotonic() - started
        print(f"received after {waited:.1f}s of silence")
        assert message == {"type": "run.events", "n": 1}
        assert waited >= QUIET_SECONDS
    finally:
        await layer.group_discard("test-quiet-pane", channel)
        await layer.close_pools()
