"""Shared fixtures: Redis (fakeredis and the real server), fakes of the outside world."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.keys import Keys
from core.store import connect_redis
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.logscan import leaks

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


class _LogLines(logging.Handler):
    """Every log record, as the raw line the code wrote (before any redaction)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append((record.name, text))


@pytest.fixture(autouse=True)
def no_secrets_or_customer_data_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test's scenario is also a log-leak test: each line our code logs (at any level;
    other libraries' from INFO, production's default) is scanned for the configured secrets,
    emails, phone numbers and card-like numbers (tests/logscan.py)."""
    lines = _LogLines()
    root, ours = logging.getLogger(), logging.getLogger("peakdesk")
    levels = root.level, ours.level
    root.addHandler(lines)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(lines)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
    found = [f"{name}: {leak}" for name, text in lines.lines for leak in leaks(text)]
    assert not found, f"secrets or customer data logged: {found}"
