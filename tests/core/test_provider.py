"""The provider's limits are one budget for every process, and they adapt to the provider."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core.keys import Keys
from core.llm import HolySheepClient
from core.provider import CUT, RAISE, ProviderLimits
from tests.conftest import REAL_REDIS_URL, real_redis_or_skip
from tests.fakes.openai_server import FakeOpenAI


async def test_two_processes_share_one_requests_per_minute_budget(redis: Redis, keys: Keys) -> None:
    one = ProviderLimits(redis, keys, rpm=600, burst_s=0)  # 10 a second
    two = ProviderLimits(redis, keys, rpm=600, burst_s=0)
    started = time.monotonic()
    for n in range(10):
        lease = await (one if n % 2 else two).acquire(1, timeout=5)
        await (one if n % 2 else two).release(lease, status=200)
    # The 10th request may go out 9 intervals after the first, not before.
    assert time.monotonic() - started >= 0.85


async def test_tokens_per_minute_count_the_estimate_then_the_real_usage(
    redis: Redis, keys: Keys
) -> None:
    limits = ProviderLimits(redis, keys, tpm=60_000, burst_s=0)  # 1,000 tokens a second
    first = await limits.acquire(1000, timeout=5)  # estimated: 1 s of budget
    await limits.release(first, status=200, used_tokens=100)  # used: 0.1 s of it
    started = time.monotonic()
    await limits.acquire(10, timeout=5)
    assert time.monotonic() - started < 0.5  # the unused estimate was given back
    await limits.acquire(5000, timeout=2)  # 5 s of budget taken at once...
    with pytest.raises(TimeoutError):  # ...so nothing more for a while
        await limits.acquire(1, timeout=0.2)


async def test_concurrency_is_a_lease_given_back_after_the_call(redis: Redis, keys: Keys) -> None:
    limits = ProviderLimits(redis, keys, concurrency=2)
    first = await limits.acquire(1, timeout=1)
    await ProviderLimits(redis, keys, concurrency=2).acquire(1, timeout=1)
    with pytest.raises(TimeoutError):
        await limits.acquire(1, timeout=0.1)
    await limits.release(first, status=200)
    await limits.acquire(1, timeout=1)


async def test_a_429_cuts_the_shared_rate_once_and_successes_bring_it_back(
    redis: Redis, keys: Keys
) -> None:
    limits = ProviderLimits(redis, keys, rpm=6000, cooldown_s=60)
    other = ProviderLimits(redis, keys, rpm=6000, cooldown_s=60)
    for _ in range(5):  # a burst of 429s seen by several calls counts once
        lease = await limits.acquire(1, timeout=1)
        await limits.release(lease, status=429)
    assert await other.factor() == pytest.approx(CUT)
    lease = await other.acquire(1, timeout=1)
    assert await other.release(lease, status=200) == pytest.approx(CUT + RAISE)
    # The provider's headers saying little is left also slow everyone down (after cooldown).
    await redis.delete(keys.provider("cut_at"))
    lease = await other.acquire(1, timeout=1)
    low = {"x-ratelimit-limit-requests": "1000", "x-ratelimit-remaining-requests": "4"}
    factor = await other.release(lease, status=200, headers=low)
    assert factor == pytest.approx((CUT + RAISE) * CUT)


@pytest.fixture
async def limited_llm(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> AsyncIterator[tuple[HolySheepClient, ProviderLimits]]:
    limits = ProviderLimits(redis, keys, rpm=6000, tpm=1_000_000, concurrency=5)
    client = HolySheepClient(
        api_key="sk-test", base_url=fake_llm.base_url, backoff_base=0.01, limits=limits
    )
    yield client, limits
    await client.aclose()


async def test_the_llm_client_reports_every_attempt_to_the_shared_limits(
    redis: Redis,
    keys: Keys,
    fake_llm: FakeOpenAI,
    limited_llm: tuple[HolySheepClient, ProviderLimits],
) -> None:
    client, limits = limited_llm
    fake_llm.script(status=429, headers={"retry-after-ms": "10"})
    completion = await client.complete([{"role": "user", "content": "hi"}])
    assert completion.text == "Echo: hi" and fake_llm.calls == 2
    assert await limits.factor() == pytest.approx(CUT + RAISE)  # cut by the 429, then raised
    assert await redis.zcard(keys.provider("leases")) == 0  # every lease given back


_CHILD = """
import asyncio, sys, time
from core.keys import Keys
from core.provider import ProviderLimits
from core.store import connect_redis

async def main(url, prefix, count):
    redis = connect_redis(url)
    limits = ProviderLimits(redis, Keys(prefix), rpm=1200, burst_s=0)  # 20 a second
    for _ in range(count):
        lease = await limits.acquire(1, timeout=30)
        print(time.time(), flush=True)
        await limits.release(lease, status=200)
    await redis.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.redis
async def test_worker_processes_on_one_redis_stay_within_one_limit(keys: Keys) -> None:
    redis = await real_redis_or_skip()
    try:
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                REAL_REDIS_URL,
                keys.prefix,
                "20",
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        outputs = [await asyncio.wait_for(child.communicate(), 60) for child in children]
        stamps = sorted(float(line) for out, _ in outputs for line in out.split())
    finally:
        async for key in redis.scan_iter(match=keys.tag + "*"):
            await redis.delete(key)
        await redis.aclose()
    assert len(stamps) == 40
    # 40 requests at 20 a second: 39 intervals of 50 ms, whichever process made them.
    assert stamps[-1] - stamps[0] >= 1.8
    for i in range(len(stamps) - 21):
        assert stamps[i + 21] - stamps[i] >= 0.95  # never more than 21 in a second


async def test_waiting_for_room_under_the_limits_does_not_use_up_the_calls_deadline(
    redis: Redis, keys: Keys, fake_llm: FakeOpenAI
) -> None:
    # One request a second; a 0.4 s deadline. The second call waits ~1 s for its turn under
    # the shared limit: that wait is queueing, not the provider being slow, so it is answered.
    limits = ProviderLimits(redis, keys, rpm=60, burst_s=0)
    client = HolySheepClient(
        api_key="sk-test", base_url=fake_llm.base_url, deadline=0.4, limits=limits
    )
    try:
        first, second = await asyncio.gather(
            client.complete([{"role": "user", "content": "a"}]),
            client.complete([{"role": "user", "content": "b"}]),
        )
    finally:
        await client.aclose()
    assert first.text and second.text
    assert fake_llm.requests[1].at - fake_llm.requests[0].at >= 0.9


async def test_the_next_room_goes_to_the_most_urgent_waiter(redis: Redis, keys: Keys) -> None:
    limits = ProviderLimits(redis, keys, rpm=120, burst_s=0)  # one call every ~0.5 s
    await limits.acquire(1, timeout=1)
    order: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limits.acquire(1, timeout=5, priority=priority)
        order.append(name)

    # The routine call asked first; the urgent one, asking later, still goes first.
    await asyncio.gather(take("routine", 2), take("urgent", 0))
    assert order == ["urgent", "routine"]
