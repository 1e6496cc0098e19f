"""Hand-over marks are shared through Redis and survive repeated requests."""

from __future__ import annotations

from redis.asyncio import Redis

from core.handover import REQUESTED, HandoverRegistry
from core.keys import Keys


async def test_a_requested_hand_over_is_visible_to_every_process(redis: Redis, keys: Keys) -> None:
    registry = HandoverRegistry(redis, keys, ttl_s=3600)
    assert await registry.status("telegram:1:42") == {}
    await registry.request("telegram:1:42", "customer asked (/human)")
    first = await registry.status("telegram:1:42")
    await registry.request("telegram:1:42", "asked again")
    again = await HandoverRegistry(redis, keys).status("telegram:1:42")
    assert first["status"] == again["status"] == REQUESTED
    assert again["requested_at"] == first["requested_at"]  # the first request's time is kept
    assert again["reason"] == "asked again"
    assert 0 < await redis.ttl(keys.handover("telegram:1:42")) <= 3600
