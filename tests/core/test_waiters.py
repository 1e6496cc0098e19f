"""The shared watch of reply records behind every synchronous waiter of a process."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.keys import Keys
from core.store import connect_redis
from core.waiters import ReplyWatcher


def count_commands(redis: Redis) -> Counter[str]:
    commands: Counter[str] = Counter()
    execute: Any = redis.execute_command

    async def counting(*args: Any, **options: Any) -> Any:
        commands[str(args[0]).upper()] += 1
        return await execute(*args, **options)

    redis.execute_command = counting  # type: ignore[method-assign]
    return commands


async def test_a_reply_stored_by_another_process_is_found_by_the_poll(
    redis: Redis, keys: Keys
) -> None:
    watcher = ReplyWatcher(redis, keys, interval_s=0.05)
    waiting = asyncio.create_task(watcher.wait("T1", 2.0))
    await asyncio.sleep(0.2)
    await redis.set(keys.reply("T1"), '{"r": 1}')  # no notify: another process stored it
    started = time.monotonic()
    assert await waiting == '{"r": 1}'
    assert time.monotonic() - started < 0.5
    assert watcher.waiters == 0


async def test_a_reply_stored_already_is_returned_at_once(redis: Redis, keys: Keys) -> None:
    await redis.set(keys.reply("T1"), "done")
    watcher = ReplyWatcher(redis, keys, interval_s=10.0)
    async with asyncio.timeout(1.0):
        assert await watcher.wait("T1", 5.0) == "done"


async def test_notify_wakes_the_watch_before_its_next_tick(redis: Redis, keys: Keys) -> None:
    watcher = ReplyWatcher(redis, keys, interval_s=10.0)
    waiting = asyncio.create_task(watcher.wait("T1", 5.0))
    await asyncio.sleep(0.1)
    await redis.set(keys.reply("T1"), "done")
    watcher.notify("T1")
    async with asyncio.timeout(1.0):
        assert await waiting == "done"


async def test_many_waiters_cost_one_mget_per_lane_per_tick(redis: Redis) -> None:
    keys = Keys(prefix=f"t{time.time_ns()}", shards=3)
    tickets = [f"T{n}-{n % 3}" for n in range(60)]  # a ticket names its lane
    watcher = ReplyWatcher(redis, keys, interval_s=0.1)
    commands = count_commands(redis)
    waits = await asyncio.gather(*(watcher.wait(t, 0.5) for t in tickets))
    assert waits == [None] * 60
    # About 5 ticks in 0.5 s, one MGET for each of the 3 lanes: not one read per waiter.
    assert set(commands) == {"MGET"} and commands["MGET"] <= 3 * 8, commands


async def test_two_waiters_of_one_ticket_both_see_the_reply(redis: Redis, keys: Keys) -> None:
    watcher = ReplyWatcher(redis, keys, interval_s=0.05)
    waits = asyncio.gather(watcher.wait("T1", 2.0), watcher.wait("T1", 2.0))
    await asyncio.sleep(0.1)
    await redis.set(keys.reply("T1"), "done")
    assert list(await waits) == ["done", "done"]


async def test_over_the_cap_a_waiter_gets_none_at_once(redis: Redis, keys: Keys) -> None:
    watcher = ReplyWatcher(redis, keys, max_waiters=2)
    first = [asyncio.create_task(watcher.wait(f"T{n}", 1.0)) for n in (1, 2)]
    await asyncio.sleep(0.05)
    assert not watcher.can_wait() and watcher.waiters == 2
    started = time.monotonic()
    assert await watcher.wait("T3", 1.0) is None
    assert time.monotonic() - started < 0.1
    await asyncio.gather(*first)
    assert watcher.can_wait() and watcher.waiters == 0


async def test_a_store_error_reaches_the_waiter(keys: Keys) -> None:
    dead = connect_redis("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        watcher = ReplyWatcher(dead, keys)
        with pytest.raises(RedisConnectionError):
            await watcher.wait("T1", 1.0)
    finally:
        await dead.aclose()
    assert watcher.waiters == 0
