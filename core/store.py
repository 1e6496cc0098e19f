"""Connecting to the state store: a real Redis server, a Redis Cluster, or the embedded
fakeredis default."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib import resources
from typing import Any, Generic, TypeVar, cast
from urllib.parse import unquote, urlparse

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

# How many times a command on a Redis Cluster is tried again after a lost node, a cluster
# that is down or a slot not covered, each time on a fresh view of the cluster. redis-py 8
# waits 0.25 s before each retry of a pipeline and after CLUSTERDOWN, but tries a single
# command again at once after a connection refused by a killed master: pipelines (admission)
# bridge a failover of up to about 2.5 s, single commands fail within milliseconds. What
# fails is a RedisError like any outage (503 + Retry-After to the sender, the worker and the
# outbox back off and read again).
CLUSTER_RETRIES = 10
# How many times a command on one Redis server is tried again after a connection error (see
# connect_redis): enough for a stale connection, short of stretching an outage's 503s.
STANDALONE_RETRIES = 2


T = TypeVar("T")


class ClusterClientError(RedisError):
    """The Redis Cluster client failed with an error of its own, not a RedisError."""


def lua_script(name: str) -> str:
    """The text of a Lua script shipped in ``core/scripts``."""
    return resources.files("core").joinpath("scripts", name).read_text(encoding="utf-8")


def connect_redis(url: str | None, *, cluster: bool = False, max_connections: int = 200) -> Redis:
    """A Redis client for ``url``; without a URL, an in-process fakeredis (one process only).
    ``cluster``: ``url`` is any node of a Redis Cluster (the client finds the others).

    Responses are decoded to ``str`` everywhere: every value peakdesk stores is UTF-8 text.
    """
    if not url:
        import fakeredis  # the embedded default; the same code paths and Lua scripts run on it

        # Connections to fakeredis are in-process objects: no reason to cap them at 100.
        client: Redis = fakeredis.FakeAsyncRedis(decode_responses=True, max_connections=100_000)
        return client
    if cluster:
        return _connect_cluster(url, max_connections)
    # A blocking pool waits for a free connection instead of failing under a burst; the socket
    # timeout stays above the longest blocking read (XREADGROUP BLOCK) the worker issues.
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=15,
        # After Redis restarts, every pooled connection fails its next command once (its
        # socket belonged to the old server): tried again on a fresh connection, instead of
        # failing a delivery or a message that then waits PEAKDESK_CLAIM_IDLE_S to be retried
        # (found by tests/faults). Also bridges the seconds Redis answers LOADING.
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), STANDALONE_RETRIES),
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its sockets


@contextlib.contextmanager
def _as_redis_errors() -> Iterator[None]:
    """Let RedisErrors through; raise anything else as a ClusterClientError."""
    try:
        yield
    except RedisError:
        raise
    except Exception as exc:
        raise _translated(exc) from exc


def _translated(exc: Exception) -> ClusterClientError:
    return ClusterClientError(f"redis cluster client: {type(exc).__name__}: {exc}")


class _Pipeline(ClusterPipeline):
    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        with _as_redis_errors():
            results = await super().execute(raise_on_error, allow_redirections)
        return [
            _translated(r) if isinstance(r, Exception) and not isinstance(r, RedisError) else r
            for r in results
        ]


class _ClusterClient(RedisCluster):
    """RedisCluster whose every failure is a RedisError, as with one server.

    While the topology changes (a failover) redis-py 8.1's cluster client can also raise
    RedisClusterException (a slot not covered) and, from races in its connection handling,
    AttributeError or TypeError (seen: a connection disconnected by
    ``disconnect_free_connections`` while another task connects it). peakdesk's loops
    (worker, outbox) retry on RedisError; anything else would end them, silently.
    """

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        with _as_redis_errors():
            return await super().initialize(*args, **kwargs)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with _as_redis_errors():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise ClusterClientError("shard_hint is not supported on a cluster")
        # redis-py's own pipeline() makes its ClusterPipeline the same way; its stubs leave
        # an attribute abstract that the base class sets at run time.
        return _Pipeline(self, transaction)  # type: ignore[abstract]


def _connect_cluster(url: str, max_connections: int) -> Redis:
    """``url``: one node, or several separated by commas (the first reachable one is asked
    for the others: a process starting while one seed node is down still connects)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        # Per node; unlike the standalone blocking pool, a node out of connections raises
        # MaxConnectionsError instead of waiting.
        "max_connections": max_connections,
        "socket_connect_timeout": 2.0,
        "socket_timeout": 10.0,  # above the longest XREADGROUP BLOCK, as for one server
        "health_check_interval": 15,
        # redis-py 8 takes only the count from this object (its backoff is not used yet).
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), CLUSTER_RETRIES),
    }
    seeds = [u.strip() for u in url.split(",") if u.strip()]
    if len(seeds) == 1:
        client = _ClusterClient.from_url(seeds[0], **options)
    else:
        first = urlparse(seeds[0])
        nodes = [
            ClusterNode(p.hostname or "127.0.0.1", p.port or 6379) for p in map(urlparse, seeds)
        ]
        client = _ClusterClient(
            startup_nodes=nodes,
            username=unquote(first.username) if first.username else None,
            password=unquote(first.password) if first.password else None,
            ssl=first.scheme == "rediss",
            **options,
        )
    # Every command, script and transaction of ours names keys of one slot (one lane's, or
    # the shared tag's), so RedisCluster runs it as Redis would: core is typed against the
    # Redis command API, which RedisCluster implements for keyed commands.
    return cast(Redis, client)


class GroupCommit(Generic[T]):
    """Work items of concurrent callers sent to Redis together: whatever arrives while a batch
    is on the wire goes in the next one, in one pipelined round trip (group commit). On the
    ingest path redis-py's cost of a call of its own (a pooled connection each) is most of the
    work a command does; two batches in flight keep the process busy meanwhile.

    ``send`` sends a batch and returns one result per item, in order, an item's error as its
    value. Each caller gets its own item's result, or its exception (also the whole batch's
    when ``send`` raised, whatever it was: no caller waits forever).
    """

    def __init__(
        self, send: Callable[[list[T]], Awaitable[Sequence[Any]]], *, batches_in_flight: int = 2
    ) -> None:
        self.send = send
        self.batches_in_flight = batches_in_flight
        self._pending: list[tuple[T, asyncio.Future[Any]]] = []
        self._flushers = 0

    async def call(self, item: T) -> Any:
        """``item``'s result (raises its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flushers < self.batches_in_flight:
            self._flushers += 1
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results: Sequence[Any] = await self.send([item for item, _ in batch])
                except Exception as exc:  # every caller hears back, whatever it was
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushers -= 1


def pipelined(redis: Redis) -> Callable[[list[Sequence[Any]]], Awaitable[Sequence[Any]]]:
    """A :class:`GroupCommit` sender of single commands (``("SET", key, "1", "NX", ...)``):
    one pipeline a batch, not a transaction; anything failing is a RedisError."""

    async def send(commands: list[Sequence[Any]]) -> Sequence[Any]:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                return list(await pipe.execute(raise_on_error=False))
        except RedisError:
            raise
        except Exception as exc:
            raise RedisError(repr(exc)) from exc

    return send


async def delete_prefix(client: Redis, prefix: str) -> int:
    """Unlink every key under the hash tags ``{prefix}`` and ``{prefix:<lane>}`` (a test or
    rehearsal run's); returns how many there were."""
    deleted = 0
    for match in ("{" + prefix + "}*", "{" + prefix + ":*"):
        batch: list[str] = []
        async for key in client.scan_iter(match=match, count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                deleted += int(await client.unlink(*batch))  # the cluster client splits by slot
                batch = []
        if batch:
            deleted += int(await client.unlink(*batch))
    return deleted
