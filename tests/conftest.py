"""Shared fixtures: Redis (fakeredis and the real server), fakes of the outside world."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import Keys
from core.store import connect_redis
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI

REAL_REDIS_URL = os.environ.get("PEAKDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WEBHOOK_SECRET = "test-webhook-secret"


async def real_redis_or_skip() -> Redis:
    client = connect_redis(REAL_REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        message = f"no Redis server at {REAL_REDIS_URL}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return client


@pytest.fixture(params=["fakeredis", pytest.param("redis", marks=pytest.mark.redis)])
async def redis(request: pytest.FixtureRequest, keys: Keys) -> AsyncIterator[Redis]:
    """The same tests on the embedded fakeredis and on the real Redis server."""
    if request.param == "fakeredis":
        # As the embedded store is made (core.store.connect_redis): no cap of 100 connections.
        client: Redis = fakeredis.FakeAsyncRedis(
            server=fakeredis.FakeServer(), decode_responses=True, max_connections=100_000
        )
    else:
        client = await real_redis_or_skip()
    try:
        yield client
    finally:
        if request.param == "redis":
            async for key in client.scan_iter(match=keys.tag + "*", count=1000):
                await client.delete(key)
        await client.aclose()


@pytest.fixture
def keys() -> Keys:
    """A key prefix of this test's own, so tests on the shared real Redis never collide."""
    return Keys(prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    async with CallbackReceiver(secret=WEBHOOK_SECRET) as fake:
        yield fake
