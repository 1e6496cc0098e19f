"""core.store.GroupCommit: concurrent callers' work shares round trips, each caller gets its
own result or error."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from core.keys import Keys
from core.store import GroupCommit, pipelined


async def test_concurrent_commands_share_round_trips_and_each_gets_its_reply(
    redis: Redis, keys: Keys
) -> None:
    batches: list[int] = []
    send = pipelined(redis)

    async def counted(commands: list[Sequence[Any]]) -> Sequence[Any]:
        batches.append(len(commands))
        return await send(commands)

    commit: GroupCommit[Sequence[Any]] = GroupCommit(counted)
    key = keys.rate("group-commit")
    replies = await asyncio.gather(
        *(commit.call(("SET", f"{key}:{n % 10}", "1", "NX", "EX", 60)) for n in range(100))
    )
    assert [bool(r) for r in replies] == [True] * 10 + [False] * 90  # in call order
    assert sum(batches) == 100 and len(batches) < 10  # far fewer round trips than commands


async def test_a_failing_command_fails_its_caller_only(redis: Redis, keys: Keys) -> None:
    commit: GroupCommit[Sequence[Any]] = GroupCommit(pipelined(redis))
    text, number = keys.rate("a-string"), keys.rate("a-number")
    await redis.set(text, "not a number")
    results = await asyncio.gather(
        commit.call(("INCR", text)), commit.call(("INCR", number)), return_exceptions=True
    )
    assert isinstance(results[0], ResponseError) and results[1] == 1


async def test_a_store_out_of_reach_fails_every_caller_with_a_redis_error() -> None:
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    try:
        commit: GroupCommit[Sequence[Any]] = GroupCommit(pipelined(down))
        results = await asyncio.gather(
            commit.call(("GET", "a")), commit.call(("GET", "b")), return_exceptions=True
        )
        assert all(isinstance(r, RedisError) for r in results)
        with pytest.raises(RedisError):
            await commit.call(("GET", "c"))  # and it goes on answering
    finally:
        await down.aclose()


async def test_a_sender_that_breaks_fails_the_batch_and_the_next_one_goes_on() -> None:
    calls = 0

    async def send(items: list[int]) -> Sequence[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TypeError("a bug")
        return [item * 2 for item in items]

    commit: GroupCommit[int] = GroupCommit(send, batches_in_flight=1)
    first = await asyncio.gather(commit.call(1), commit.call(2), return_exceptions=True)
    assert all(isinstance(r, TypeError) for r in first)
    assert await commit.call(3) == 6
