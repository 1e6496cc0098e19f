"""Shared rate limits (GCRA in Redis), on fakeredis and the real Redis server."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.ratelimit import Rate, RateLimiter


async def test_a_burst_is_allowed_then_the_rate_holds(redis: Redis, keys: Keys) -> None:
    limiter = RateLimiter(redis, keys)
    limit = [("chat:1", Rate(per_second=10, burst=3))]
    assert [await limiter.try_acquire(limit) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await limiter.try_acquire(limit)
    assert 0.05 < wait <= 0.1
    await asyncio.sleep(wait)
    assert await limiter.try_acquire(limit) == 0.0


async def test_the_tightest_of_several_limits_decides_and_a_refusal_uses_no_slot(
    redis: Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys)
    bot = ("bot", Rate(1.0, burst=10))  # slow enough that no slot comes back during the test
    chat_1 = [("chat:1", Rate(1.0)), bot]
    chat_2 = [("chat:2", Rate(1.0)), bot]
    assert await limiter.try_acquire(chat_1) == 0.0
    assert await limiter.try_acquire(chat_1) > 0.9  # this chat waits a second...
    assert await limiter.try_acquire(chat_2) == 0.0  # ...another chat does not
    allowed = sum([await limiter.try_acquire([bot]) == 0.0 for _ in range(20)])
    assert allowed == 8  # two slots went to the two allowed chat messages, none to the refusal


async def test_acquire_waits_for_a_slot_and_gives_up_after_the_timeout(
    redis: Redis, keys: Keys
) -> None:
    limiter = RateLimiter(redis, keys)
    limit = [("chat:9", Rate(per_second=5))]
    started = time.monotonic()
    for _ in range(3):
        await limiter.acquire(limit, timeout=2)
    assert time.monotonic() - started >= 0.35  # 3 sends at 5/s: two intervals of 0.2 s
    with pytest.raises(TimeoutError):
        for _ in range(10):
            await limiter.acquire([("slow", Rate(per_second=0.5))], timeout=0.5)
