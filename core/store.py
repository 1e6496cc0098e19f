"""Connecting to the state store: a real Redis server, or the embedded fakeredis default."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import BlockingConnectionPool, Redis


def lua_script(name: str) -> str:
    """The text of a Lua script shipped in ``core/scripts``."""
    return resources.files("core").joinpath("scripts", name).read_text(encoding="utf-8")


def connect_redis(url: str | None, *, max_connections: int = 200) -> Redis:
    """A Redis client for ``url``; without a URL, an in-process fakeredis (one process only).

    Responses are decoded to ``str`` everywhere: every value peakdesk stores is UTF-8 text.
    """
    if not url:
        import fakeredis  # the embedded default; the same code paths and Lua scripts run on it

        # Connections to fakeredis are in-process objects: no reason to cap them at 100.
        client: Redis = fakeredis.FakeAsyncRedis(decode_responses=True, max_connections=100_000)
        return client
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
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes its sockets


async def delete_prefix(client: Redis, prefix: str) -> int:
    """Unlink every key under the hash tag ``{prefix}`` (a test or rehearsal run's); returns
    how many there were."""
    deleted = 0
    batch: list[str] = []
    async for key in client.scan_iter(match="{" + prefix + "}*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += int(await client.unlink(*batch))
            batch = []
    if batch:
        deleted += int(await client.unlink(*batch))
    return deleted
