"""core.store.GroupCommit: concurrent callers' commands share round trips, each gets its own
reply or error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from core.keys import Keys
from core.store import GroupCommit


async def test_concurrent_commands_share_round_trips_and_each_gets_its_reply(
    redis: Redis, keys: Keys
) -> None:
    batches: list[int] = []
    pipeline = redis.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            batches.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    redis.pipeline = counting_pipeline  # type: ignore[method-assign]
    commit = GroupCommit(redis)
    key = keys.rate("group-commit")
    replies = await asyncio.gather(
        *(commit.call("SET", f"{key}:{n % 10}", "1", "NX", "EX", 60) for n in range(100))
    )
    assert [bool(r) for r in replies] == [True] * 10 + [False] * 90  # in call order
    assert sum(batches) == 100 and len(batches) < 10  # far fewer round trips than commands


async def test_a_failing_command_fails_its_caller_only(redis: Redis, keys: Keys) -> None:
    commit = GroupCommit(redis)
    text, number = keys.rate("a-string"), keys.rate("a-number")
    await redis.set(text, "not a number")
    results = await asyncio.gather(
        commit.call("INCR", text), commit.call("INCR", number), return_exceptions=True
    )
    assert isinstance(results[0], ResponseError) and results[1] == 1


async def test_a_store_out_of_reach_fails_every_caller_with_a_redis_error() -> None:
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        commit = GroupCommit(down)
        results = await asyncio.gather(
            commit.call("GET", "a"), commit.call("GET", "b"), return_exceptions=True
        )
    finally:
        await down.aclose()
    assert all(isinstance(r, RedisError) for r in results)
    with pytest.raises(RedisError):
        await commit.call("GET", "c")  # and it goes on answering
