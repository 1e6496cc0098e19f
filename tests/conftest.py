"""Shared fixtures: Redis (fakeredis, the real server and a Redis Cluster), fakes of the
outside world."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bots.logs import LibrariesAtInfo
from core.keys import Keys
from core.store import connect_redis, delete_prefix
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.openai_server import FakeOpenAI
from tests.logscan import leaks
from tests.redis_cluster import ClusterUnavailable, LocalRedisCluster, cluster_tools_missing

REAL_REDIS_URL = os.environ.get("PEAKDESK_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WEBHOOK_SECRET = "test-webhook-secret"
TEST_SHARDS = int(os.environ.get("PEAKDESK_TEST_SHARDS", "1"))

# The contract tests that also run on a Redis Cluster (tests/redis_cluster.py, one per test
# session) in every run; PEAKDESK_TEST_CLUSTER=all runs every test of the `redis` fixture on
# it too, PEAKDESK_TEST_CLUSTER=0 none.
CLUSTER_CONTRACTS = (
    "tests/core/test_queue.py::",
    "tests/core/test_bursts.py::",
    "tests/core/test_outbox.py::",
    "tests/test_lanes.py::",
    "tests/test_pipeline.py::test_llm_500_three_times_gives_the_fallback_with_ticket_and_code",
    "tests/test_pipeline.py::test_logs_carry_no_secrets_and_no_customer_text",
)
CLUSTER_TESTS = os.environ.get("PEAKDESK_TEST_CLUSTER", "contracts")
REDIS_PARAMS = ["fakeredis", pytest.param("redis", marks=pytest.mark.redis)]
CLUSTER_PARAM = pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The `redis` fixture's stores: fakeredis and the real server, and the cluster for the
    tests CLUSTER_TESTS names."""
    if "redis" not in metafunc.fixturenames:
        return
    nodeid = metafunc.definition.nodeid
    on_cluster = CLUSTER_TESTS == "all" or (
        CLUSTER_TESTS != "0" and nodeid.startswith(CLUSTER_CONTRACTS)
    )
    params = [*REDIS_PARAMS, CLUSTER_PARAM] if on_cluster else REDIS_PARAMS
    metafunc.parametrize("redis", params, indirect=True)


async def real_redis_or_skip() -> Redis:
    client = connect_redis(REAL_REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        skip_or_fail(f"no Redis server at {REAL_REDIS_URL}: {exc}")
    return client


def skip_or_fail(message: str) -> None:
    """A store the tests need is missing: a failure in CI (it must be there), else a skip."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster of 3 masters with a replica each on loopback ports, for the session
    (started on first use, about 2 s). Tests that kill nodes start a cluster of their own."""
    reason = cluster_tools_missing()
    if reason:
        skip_or_fail(f"no Redis Cluster for the cluster tests: {reason}")
    try:
        cluster = LocalRedisCluster().__enter__()
    except ClusterUnavailable:  # a port taken between the check and the start: once more
        cluster = LocalRedisCluster().__enter__()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def redis(request: pytest.FixtureRequest, keys: Keys) -> AsyncIterator[Redis]:
    """The same tests on the embedded fakeredis, on the real Redis server and (for some, see
    CLUSTER_CONTRACTS) on a Redis Cluster through core.store.connect_redis's cluster client."""
    if request.param == "fakeredis":
        # As the embedded store is made (core.store.connect_redis): no cap of 100 connections.
        client: Redis = fakeredis.FakeAsyncRedis(
            server=fakeredis.FakeServer(), decode_responses=True, max_connections=100_000
        )
    elif request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        client = connect_redis(cluster.url, cluster=True)
    else:
        client = await real_redis_or_skip()
    try:
        yield client
    finally:
        if request.param != "fakeredis":
            await delete_prefix(client, keys.prefix)
        await client.aclose()


@dataclass(frozen=True)
class SharedStore:
    """A Redis that processes the test starts can reach too: how they connect, our client."""

    url: str
    cluster: bool
    client: Redis

    @property
    def env(self) -> dict[str, str]:
        """The settings of a peakdesk process on this store."""
        return {"REDIS_URL": self.url, "PEAKDESK_REDIS_CLUSTER": str(self.cluster).lower()}


@pytest.fixture(params=["redis", CLUSTER_PARAM])
async def shared_store(request: pytest.FixtureRequest, keys: Keys) -> AsyncIterator[SharedStore]:
    """The real Redis server, and a Redis Cluster, for tests with processes of their own."""
    if request.param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        store = SharedStore(cluster.url, True, connect_redis(cluster.url, cluster=True))
    else:
        store = SharedStore(REAL_REDIS_URL, False, await real_redis_or_skip())
    try:
        yield store
    finally:
        await delete_prefix(store.client, keys.prefix)
        await store.client.aclose()


@pytest.fixture
def keys() -> Keys:
    """A key prefix of this test's own, so tests on the shared real Redis never collide;
    split into PEAKDESK_TEST_SHARDS lanes (default 1)."""
    return Keys(prefix=f"t{uuid.uuid4().hex[:10]}", shards=TEST_SHARDS)


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
        if record.name == "aiohttp.access":
            # The test servers' access lines (aiohttp's TestServer logs each request line,
            # WeChat's signed query included, whose hex digests can hold a card-like run of
            # digits). peakdesk's listeners log none (bots.connections: access_log=None).
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append((record.name, text))


@pytest.fixture(autouse=True)
def no_secrets_or_customer_data_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test's scenario is also a log-leak test: each line a process at
    PEAKDESK_LOG_LEVEL=DEBUG would write is scanned for the configured secrets, emails, phone
    numbers and card-like numbers (tests/logscan.py). Every logger logs at DEBUG here, and
    the scan keeps what the production handler keeps: our lines at any level, other
    libraries' from INFO (bots.logs.LibrariesAtInfo)."""
    lines = _LogLines()
    lines.addFilter(LibrariesAtInfo())
    root, ours = logging.getLogger(), logging.getLogger("peakdesk")
    levels = root.level, ours.level
    root.addHandler(lines)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(lines)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])
    found = [f"{name}: {leak}" for name, text in lines.lines for leak in leaks(text)]
    assert not found, f"secrets or customer data logged: {found}"
